"""``--shard I/N``: the I-th of N disjoint, contiguous slices of a sorted work list.

Every worker of a Slurm array or a Kubernetes Indexed Job gets the same command line and its own
index; the slices depend only on the list and N, so the workers never overlap and together cover
every item once (docs/SCALE_OUT.md).
"""

from __future__ import annotations

import re
from typing import Sequence, TypeVar

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """'3/8' -> (3, 8); ValueError with one clear message otherwise."""
    m = re.fullmatch(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*", str(text))
    if not m:
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 0/4 (slice I of N, counted from 0)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1:
        raise ValueError(f"--shard {text!r}: N must be at least 1")
    if not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: I must be in [0, {count}) (slices are counted from 0)")
    return index, count


def shard_slice(items: Sequence[T], index: int, count: int, key=str) -> list[T]:
    """Slice ``index`` of ``count`` of ``sorted(items, key=key)``; sizes differ by at most one."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count} is out of range")
    ordered = sorted(items, key=key)
    return ordered[index * len(ordered) // count:(index + 1) * len(ordered) // count]
