"""Multi-process training under ``torchrun``: process group, device, DDP wrapping, rank-0 helpers.

Started without torchrun (no WORLD_SIZE in the environment) everything is a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int, low: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"${name}={text!r}: expected a whole number (set by torchrun)") from None
    if value < low:
        raise ValueError(f"${name}={value}: must be at least {low}")
    return value


def setup(device: str = "auto") -> Dist:
    """Join the process group started by torchrun (NCCL on CUDA, gloo on CPU) and pick the device.
    ValueError (naming the variable) for a malformed WORLD_SIZE/RANK/LOCAL_RANK, and for a rank other
    than 0 without a process group (a stray ``RANK=1``: that process would train and write nothing)."""
    world = _env_int("WORLD_SIZE", 1, 1)
    rank, local = _env_int("RANK", 0, 0), _env_int("LOCAL_RANK", 0, 0)
    if rank >= world:
        raise ValueError(f"$RANK={rank} without a process group of that size ($WORLD_SIZE="
                         f"{os.environ.get('WORLD_SIZE', 'unset')}): only rank 0 writes checkpoints, so this run would "
                         f"write nothing; unset RANK or start with torchrun")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but CUDA is not available")
    dev = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world, local, dev)


def wrap(net: nn.Module, d: Dist) -> nn.Module:
    if d.world == 1:
        return net
    return nn.parallel.DistributedDataParallel(net, device_ids=[d.local_rank] if d.device.type == "cuda" else None)


def mean(value: float, d: Dist) -> float:
    """Average of a number over the processes."""
    if d.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return float(t.item()) / d.world


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def broadcast(obj, d: Dist):
    """Rank 0's value of a picklable object, on every rank."""
    if d.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
