"""Learning-rate schedule (cosine annealing with restarts) and progressive patch/batch stages.

Iterations count from 0: iteration ``it`` is the (it+1)-th optimiser step.
"""

from __future__ import annotations

import bisect
import math
from itertools import accumulate

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def lr_at(it: int, base_lr: float, periods: list[int], eta_mins: list[float], weights: list[float] | None = None) -> float:
    """Cosine annealing with restarts: in cycle i (``periods[i]`` iterations), the LR goes from
    ``weights[i] * base_lr`` to ``eta_mins[i]`` along half a cosine. After the last cycle it stays
    at the last minimum. The Restormer recipe: periods [92000, 208000], minima [3e-4, 1e-6]."""
    weights = weights or [1.0] * len(periods)
    ends = list(accumulate(periods))
    i = bisect.bisect_right(ends, it)
    if i == len(periods):
        return eta_mins[-1]
    start = ends[i] - periods[i]
    top = weights[i] * base_lr
    return eta_mins[i] + 0.5 * (top - eta_mins[i]) * (1 + math.cos(math.pi * (it - start) / periods[i]))


class CosineRestarts(LRScheduler):
    """``lr_at`` as a torch scheduler (its state_dict holds plain numbers and lists only)."""

    def __init__(self, optimizer: Optimizer, periods, eta_mins, weights=None, last_epoch: int = -1):
        self.periods, self.eta_mins = list(periods), list(eta_mins)
        self.weights = list(weights) if weights else [1.0] * len(self.periods)
        super().__init__(optimizer, last_epoch)

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the position (iteration, base LRs) but keep this scheduler's periods, minima and
        weights, so a resumed run may be extended with a longer schedule (new cycles)."""
        keep = {"periods": self.periods, "eta_mins": self.eta_mins, "weights": self.weights}
        super().load_state_dict(state_dict)
        self.__dict__.update(keep)

    def get_lr(self) -> list[float]:
        return [lr_at(self.last_epoch, base, self.periods, self.eta_mins, self.weights) for base in self.base_lrs]


class Stages:
    """Progressive learning: ``patch_sizes[i]`` and ``batch_sizes[i]`` for ``stage_iters[i]`` iterations
    (the last stage goes on past its end)."""

    def __init__(self, patch_sizes: list[int], batch_sizes: list[int], stage_iters: list[int]):
        self.patches, self.batches, self.lengths = list(patch_sizes), list(batch_sizes), list(stage_iters)
        self.starts = [0, *accumulate(self.lengths)][:-1]

    def index(self, it: int) -> int:
        return bisect.bisect_right(self.starts, it) - 1

    def at(self, it: int) -> tuple[int, int]:
        """(patch size, batch size) of iteration ``it``."""
        i = self.index(it)
        return self.patches[i], self.batches[i]

    def samples_before(self, it: int) -> int:
        """Samples drawn (per process) by iterations 0 .. it-1."""
        total = 0
        for start, length, batch in zip(self.starts, self.lengths, self.batches):
            if it <= start:
                break
            last = start + length if start != self.starts[-1] else it
            total += (min(it, last) - start) * batch
        return total
