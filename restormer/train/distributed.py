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


def setup(device: str = "auto") -> Dist:
    """Join the process group started by torchrun (NCCL on CUDA, gloo on CPU) and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
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
