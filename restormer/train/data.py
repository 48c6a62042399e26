"""Training samples: random crop -> flip/rotate -> synthetic degradation, or crops of LQ/GT pairs.

Every sample is a pure function of (seed, global sample number, patch size): the image and the
random draws come from ``np.random.default_rng([seed, tag, epoch, position])``, so the data do not
depend on the number of DataLoader workers or of processes, and resuming needs no data state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from restormer_deploy.restormer.degrade import blur_wrap, imresize, load_kernel
from restormer_deploy.restormer.train.augment import MODES, augment, crop_origin, pad_to
from restormer_deploy.restormer.train.config import DataConfig
from restormer_deploy.restormer.train.schedule import Stages
from restormer_deploy.restormer.train.sources import load

SAMPLE, PERMUTATION, BATCH = 0, 1, 2  # RNG stream tags


KERNEL_FILES = (".npy", ".mat", ".png")


def load_kernels(specs: list[str]) -> list[np.ndarray]:
    """Every kernel of every file or folder of kernel files (``FILE:INDEX`` for one), as float32."""
    kernels = []
    for spec in specs:
        if Path(spec).is_dir():
            files = sorted(p for p in Path(spec).iterdir() if p.suffix.lower() in KERNEL_FILES)
            if not files:
                raise FileNotFoundError(f"no kernel files (.npy/.mat/.png) in {spec}")
            kernels += load_kernels([str(f) for f in files])
            continue
        path, colon, idx = spec.rpartition(":")
        if colon and idx.isdigit():
            kernels.append(load_kernel(path, int(idx)))
            continue
        found = []
        while True:
            try:
                found.append(load_kernel(spec, len(found)))
            except ValueError as exc:
                if found and "out of range" in str(exc):
                    break
                raise
        kernels += found
    return [k.astype(np.float32) for k in kernels]


def to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 65535.0)


class Synthetic:
    """Degrade a float HxWxC ground-truth patch: blur (wrap), bicubic downsampling, then Gaussian noise."""

    def __init__(self, kind: str, sigma: list[float], kernels: list[np.ndarray], scale: int):
        self.kind, self.sigma, self.kernels, self.scale = kind, (sigma[0], sigma[-1]), kernels, scale

    def __call__(self, gt: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        kernel = None
        lq = gt
        if self.kind == "blur":
            kernel = self.kernels[int(rng.integers(len(self.kernels)))]
            lq = blur_wrap(gt, kernel)
        elif self.kind == "sr":
            lq = imresize(gt, 1 / self.scale)
        lo, hi = self.sigma
        sigma = lo if lo == hi else float(rng.uniform(lo, hi))
        if sigma > 0:
            lq = lq + rng.standard_normal(lq.shape, dtype=np.float32) * np.float32(sigma / 255.0)
        return lq.astype(np.float32), kernel


def _chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


class TrainSet(Dataset):
    """Item ``(k, patch)``: sample number k (over the whole run) with a patch x patch ground truth."""

    def __init__(self, images: list, cfg: DataConfig, seed: int, channels: int, scale: int = 1,
                 synthetic: Synthetic | None = None):
        self.images, self.cfg, self.seed = images, cfg, seed
        self.channels, self.scale, self.synthetic = channels, scale, synthetic
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.images)

    def _image(self, i: int):
        item = self.images[i]
        if isinstance(item, (str, Path)):
            return load(Path(item), self.channels, self.cfg.grey_to_rgb)
        if isinstance(item, tuple) and isinstance(item[0], (str, Path)):
            return tuple(load(Path(p), self.channels, self.cfg.grey_to_rgb) for p in item)
        return item

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, PERMUTATION, epoch]).permutation(len(self))}
        return self._perms[epoch]

    def __getitem__(self, key: tuple[int, int]):
        k, patch = key
        epoch, pos = divmod(k, len(self))
        rng = np.random.default_rng([self.seed, SAMPLE, epoch, pos])
        img = self._image(int(self._order(epoch)[pos]))
        mode = int(rng.integers(MODES)) if self.cfg.augment else 0
        if self.synthetic is None:  # (lq, gt) pair: the same crop at both resolutions
            lq_img, gt_img = img
            s, lp = self.scale, patch // self.scale
            lq_img, gt_img = pad_to(lq_img, lp), pad_to(gt_img, patch)
            y, x = crop_origin(*lq_img.shape[:2], lp, rng)
            lq = augment(to_float(lq_img[y:y + lp, x:x + lp]), mode)
            gt = augment(to_float(gt_img[y * s:y * s + patch, x * s:x * s + patch]), mode)
            kernel = None
        else:
            img = pad_to(img, patch)
            y, x = crop_origin(*img.shape[:2], patch, rng)
            gt = augment(to_float(img[y:y + patch, x:x + patch]), mode)
            lq, kernel = self.synthetic(gt, rng)
        k_t = torch.from_numpy(kernel)[None] if kernel is not None else torch.zeros(0)
        return _chw(lq), _chw(gt), k_t


class IterationBatches(Sampler):
    """This process's batches of ``(k, patch)`` for iterations ``start .. end-1``.

    Iteration ``it`` draws ``world * batch`` consecutive sample numbers; process ``rank`` takes
    its own slice of them (the per-rank sharding of a DistributedSampler).
    """

    def __init__(self, stages: Stages, start: int, end: int, rank: int = 0, world: int = 1):
        self.stages, self.start, self.end, self.rank, self.world = stages, start, end, rank, world

    def __len__(self) -> int:
        return max(self.end - self.start, 0)

    def __iter__(self):
        done = self.stages.samples_before(self.start) * self.world
        for it in range(self.start, self.end):
            patch, batch = self.stages.at(it)
            first = done + self.rank * batch
            yield [(first + j, patch) for j in range(batch)]
            done += self.world * batch


def batch_rng(seed: int, it: int, rank: int) -> np.random.Generator:
    """Random draws made on a whole batch (mixup) at iteration ``it``."""
    return np.random.default_rng([seed, BATCH, it, rank])
