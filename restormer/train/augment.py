"""Random crops, the 8 flip/rotate modes (dihedral group of the square) and mixup."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

MODES = 8


def augment(img: np.ndarray, mode: int) -> np.ndarray:
    """Mode m in 0..7 of an HxW(xC) array: rotate by 90°·(m % 4) counter-clockwise, then flip
    vertically when m >= 4. Mode 0 is the identity."""
    out = np.rot90(img, mode % 4, axes=(0, 1))
    if mode >= 4:
        out = out[::-1]
    return np.ascontiguousarray(out)


def inverse(img: np.ndarray, mode: int) -> np.ndarray:
    """Undo ``augment(., mode)``."""
    out = img[::-1] if mode >= 4 else img
    return np.ascontiguousarray(np.rot90(out, -(mode % 4), axes=(0, 1)))


def pad_to(img: np.ndarray, size: int) -> np.ndarray:
    """Mirror-pad the bottom/right of an image smaller than ``size`` x ``size``."""
    h, w = img.shape[:2]
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph == 0 and pw == 0:
        return img
    return np.pad(img, ((0, ph), (0, pw)) + ((0, 0),) * (img.ndim - 2), mode="symmetric")


def crop_origin(h: int, w: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a uniformly random size x size crop of an h x w image."""
    return int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))


def mixup(lq: Tensor, gt: Tensor, rng: np.random.Generator, beta: float) -> tuple[Tensor, Tensor]:
    """Restormer's mixing augmentation: blend every pair with a shuffled partner, lam ~ Beta(b, b)."""
    lam = float(rng.beta(beta, beta))
    perm = torch.from_numpy(rng.permutation(lq.shape[0]))
    return lam * lq + (1 - lam) * lq[perm], lam * gt + (1 - lam) * gt[perm]
