"""Image <-> network tensor conversion shared by the Triton Python-backend models and restore-client.

numpy only: this file is copied verbatim next to the generated ``model.py`` in the model repository
(the Triton container has numpy, not this project). Same conventions as restore-run:

- values scaled to [0, 1] by the integer type's peak (255 or 65535);
- a grey image fed to a colour model is replicated to RGB (and its output reduced to grey again), a
  colour image fed to a grey model is reduced with BT.601 luma (rounded);
- height and width reflected bottom/right up to ``max(size, min_size)`` rounded up to
  ``pad_multiple`` (``restormer_deploy.restormer.tiling``), the output cropped back to ``scale`` times the input.
"""

from __future__ import annotations

import numpy as np

LUMA_601 = np.array([0.299, 0.587, 0.114])
MIN_SIZE = 16  # restormer_deploy.restormer.tiling.DEFAULT_MIN_SIZE


def _peak(dtype) -> float:
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"images must be uint8 or uint16, got {dtype}")
    return float(np.iinfo(dtype).max)


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """(..., H, W, C) with C in {1, 3} -> (..., H, W, channels), same dtype."""
    have = images.shape[-1]
    if have not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {have}")
    if have == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    if channels == 1:
        return np.round(images.astype(np.float64) @ LUMA_601).astype(images.dtype)[..., None]
    raise ValueError(f"the model takes {channels} channels; only 1 and 3 are supported here")


def padded_size(n: int, multiple: int, min_size: int = MIN_SIZE) -> int:
    n = max(n, min_size)
    return -(-n // multiple) * multiple


def preprocess(images: np.ndarray, in_channels: int, pad_multiple: int = 1, min_size: int = MIN_SIZE,
               dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, C) or (H, W, C) integer images -> ((N, in_channels, H', W') ``dtype``, (N, 3) int32 [H, W, C])."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or min(images.shape[1:3]) < 1:
        raise ValueError(f"expected (N, H, W, C) or (H, W, C) images, got shape {images.shape}")
    peak = _peak(images.dtype)
    n, h, w, c = images.shape
    x = to_channels(images, in_channels).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(peak)
    ph, pw = padded_size(h, pad_multiple, min_size) - h, padded_size(w, pad_multiple, min_size) - w
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge")
    shape = np.tile(np.array([h, w, c], np.int32), (n, 1))
    return np.ascontiguousarray(x, dtype=dtype), shape


def postprocess(y: np.ndarray, original_shape: np.ndarray, scale: int = 1, dtype=np.uint8) -> np.ndarray:
    """(N, C', sH', sW') network output + (N, 3) [H, W, C] -> (N, sH, sW, C') ``dtype``, clipped and rounded
    (C' = 1 when the input was grey)."""
    y = np.asarray(y, dtype=np.float32)
    shape = np.asarray(original_shape).reshape(-1, 3)
    if y.ndim != 4:
        raise ValueError(f"expected an (N, C, H, W) network output, got shape {y.shape}")
    h, w, c = (int(v) for v in shape[0])
    if (shape != shape[0]).any():
        raise ValueError("all images of one request must have the same shape")
    if y.shape[2] < h * scale or y.shape[3] < w * scale:
        raise ValueError(f"network output {y.shape[2]}x{y.shape[3]} is smaller than {scale} x the input {h}x{w}")
    out = y[:, :, :h * scale, :w * scale].transpose(0, 2, 3, 1)
    out = (np.clip(out, 0.0, 1.0) * _peak(dtype)).round().astype(dtype)
    return np.ascontiguousarray(to_channels(out, 1) if c == 1 else out)
