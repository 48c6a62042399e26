"""Tiled inference with feathered blending, so that peak memory follows the tile, not the image.

``restore_array(fn, spec, x, tile=256, overlap=32)`` cuts the (C, H, W) image into ``tile`` x
``tile`` tiles that overlap by at least ``overlap`` pixels (the last tile of a row/column is moved
back to end at the border, so it may overlap more), runs ``fn`` on each (``batch`` tiles per call),
and blends the outputs:

* every tile is padded bottom/right by reflection to the model's ``pad_multiple`` (and to at least
  ``min_size``, for tiny images and models with large circular padding) and cropped back;
* with ``scale`` s > 1 (super-resolution) an input tile of t x t gives an s·t x s·t output tile and
  the blending works at the output resolution;
* blend weights are separable: 1 in the tile, a linear ramp over the overlap on each side that
  has a neighbouring tile (none at the image border). The outer quarter of the overlap, where a
  tile sees its own cut edge, gets a tiny weight (``EDGE_WEIGHT``) instead of the ramp, and the
  ramp rises over the middle half; weights are accumulated and the sum of the weighted tiles is
  divided by the sum of weights, so any partition of unity is exact (a constant stays constant).

The whole-image buffers are only the input, the output accumulator and the weight sum.
``tile=None`` (or a tile not smaller than the image) runs the whole image in one call.

``choose_tiling`` picks the tiling of one image: the user's tile, else the model's recommendation
(``ModelSpec.tile``), else the whole image when its estimated memory fits in the available memory
(``available_memory``), else an automatic tile with a notice.
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple

import numpy as np

from restormer_deploy.restormer.presets import ModelSpec, min_tile, tiling_error

EDGE_WEIGHT = 1e-4
DEFAULT_MIN_SIZE = 16


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis: stride tile - overlap, the last tile ending at the border."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def ramp_weights(n: int, overlap: int, before: bool, after: bool) -> np.ndarray:
    """1-D blend weights of a tile of n output pixels with ramps of ``overlap`` on the sides that have neighbours."""
    w = np.ones(n, np.float32)
    if overlap <= 0:
        return w
    overlap = min(overlap, n)
    margin = overlap // 4
    span = max(overlap - 2 * margin, 1)
    i = np.arange(overlap, dtype=np.float64)
    r = np.clip((i + 0.5 - margin) / span, EDGE_WEIGHT, 1.0).astype(np.float32)
    if before:
        w[:overlap] = np.minimum(w[:overlap], r)
    if after:
        w[n - overlap:] = np.minimum(w[n - overlap:], r[::-1])
    return w


def pad_reflect(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """(B, C, h0, w0) -> (B, C, h, w), reflected bottom/right (repeated reflection for tiny inputs)."""
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect" if min(x.shape[-2:]) > 1 else "edge")


def padded_size(n: int, multiple: int, min_size: int) -> int:
    return _round_up(max(n, min_size), multiple)


def restore_array(
    fn: Callable[[np.ndarray], np.ndarray],
    spec: ModelSpec,
    x: np.ndarray,
    tile: int | None = None,
    overlap: int = 32,
    batch: int = 1,
    min_size: int = DEFAULT_MIN_SIZE,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run ``fn`` ((B, C, h, w) float32 -> (B, C', s·h, s·w)) over x ((C, H, W) or (1, C, H, W)).

    Returns (C', s·H, s·W) float32, not clamped. ``on_tile(done, total)`` is called after every call of fn.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"restore_array takes one image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {x.shape}")
    c, h, w = x.shape
    if h < 1 or w < 1:
        raise ValueError(f"empty image {h}x{w}")
    s, m = spec.scale, max(spec.pad_multiple, 1)
    min_size = max(min_size, spec.min_size)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if spec.max_batch:
        batch = min(batch, spec.max_batch)
    if tile is not None:
        if tile < 1:
            raise ValueError(f"tile must be >= 1, got {tile}")
        tile = _round_up(tile, m)
        if not 0 <= overlap < tile:
            raise ValueError(f"tile overlap must be in [0, tile) = [0, {tile}), got {overlap}")
    if tile is None or (h <= tile and w <= tile):
        th, tw = h, w
        ys, xs = [0], [0]
    else:
        th, tw = min(tile, h), min(tile, w)
        ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    ph, pw = padded_size(th, m, min_size), padded_size(tw, m, min_size)
    if spec.square:
        ph = pw = max(ph, pw)
    single = len(ys) == 1 and len(xs) == 1

    out = None
    wsum = None if single else np.zeros((h * s, w * s), np.float32)
    wy = {y0: ramp_weights(th * s, overlap * s, y0 > 0, y0 + th < h) for y0 in ys}
    wx = {x0: ramp_weights(tw * s, overlap * s, x0 > 0, x0 + tw < w) for x0 in xs}
    positions = [(y0, x0) for y0 in ys for x0 in xs]
    total = -(-len(positions) // batch)
    for call, i in enumerate(range(0, len(positions), batch)):
        group = positions[i:i + batch]
        tiles = np.stack([x[:, y0:y0 + th, x0:x0 + tw] for y0, x0 in group])
        y = np.asarray(fn(pad_reflect(tiles, ph, pw)), dtype=np.float32)
        if y.ndim != 4 or y.shape[0] != len(group) or y.shape[-2:] != (ph * s, pw * s):
            raise RuntimeError(f"the model returned shape {tuple(y.shape)} for tiles of {tuple(tiles.shape)} "
                               f"padded to {ph}x{pw} (expected (B, C, {ph * s}, {pw * s}) with scale {s})")
        y = y[:, :, : th * s, : tw * s]
        if single:
            out = np.ascontiguousarray(y[0])
        else:
            if out is None:
                out = np.zeros((y.shape[1], h * s, w * s), np.float32)
            for (y0, x0), yt in zip(group, y):
                wt = np.outer(wy[y0], wx[x0])
                sl = (slice(y0 * s, (y0 + th) * s), slice(x0 * s, (x0 + tw) * s))
                out[(slice(None),) + sl] += yt * wt
                wsum[sl] += wt
        if on_tile:
            on_tile(call + 1, total)
    if not single:
        out /= wsum
    return out


def effective_tile(spec: ModelSpec, tile: int) -> int:
    """The tile that runs for a requested one: rounded up to the model's multiple and at least its
    minimum size (what reports say ran is what ran)."""
    m = max(spec.pad_multiple, 1)
    return max(_round_up(tile, m), _round_up(spec.min_size, m))


def tile_count(h: int, w: int, tile: int | None, overlap: int, pad_multiple: int = 1) -> int:
    if tile is None:
        return 1
    tile = _round_up(tile, max(pad_multiple, 1))
    if h <= tile and w <= tile:
        return 1
    return len(tile_starts(h, tile, overlap)) * len(tile_starts(w, tile, overlap))


# --------------------------------------------------------------------------- choosing the tiling

# Peak memory of a whole-image restore-run per input pixel, beyond the image buffers
# (``buffer_bytes_per_pixel``), per channel of the model's width (Restormer's dim, the Converse models'
# feature channels): the slope of peak RSS between two image sizes (benchmarks/memory_per_pixel.py;
# 256²-512², and 512²-1024² for the default model), rounded up. Restormer: 175-184 with PyTorch at
# dims 16 and 48, 212 with ONNX Runtime (its arena) at 512²-1024². The Converse figures are PyTorch's
# times 1.2 (ONNX Runtime not measured) and cover their FFT sizes' spread (dncnn 47-81). The networks'
# temporaries grow with the width, not the depth: a block's are freed before the next block runs.
WIDTH = {"restormer": ("dim", 48), "converse-dncnn": ("num_features", 64), "converse-srresnet": ("num_features", 64),
         "conversenet": ("in_channels", 64), "converse-usrnet": ("in_channels", 64)}
BYTES_PER_PIXEL_PER_CHANNEL = {"restormer": 220, "converse-dncnn": 95, "converse-srresnet": 690,
                               "conversenet": 48, "converse-usrnet": 51}
# Below ~0.2 MP the allocator keeps up to ~135 MB more than the per-pixel figures (measured with one
# forward of the default model after a warm-up)
FIXED_BYTES = 256 * 2**20
SAFETY = 1.5  # an estimate times this must fit in the available memory
AUTO_TILES = (1024, 512, 256, 128, 64, 32, 16)  # the largest that fits is chosen


def buffer_bytes_per_pixel(spec: ModelSpec) -> int:
    """The whole-image buffers per input pixel: decoded input, float input, float output and blend
    weights, and the converted result."""
    out = spec.out_channels * spec.scale ** 2
    return spec.in_channels * (1 + 4) + out * (4 + 1) + 4 * spec.scale ** 2


def bytes_per_pixel(spec: ModelSpec) -> float:
    """The network's peak memory per pixel of the tile it runs on (an unknown architecture counts as a
    full-size Restormer)."""
    arch = spec.architecture if spec.architecture in WIDTH else "restormer"
    key, default = WIDTH[arch]
    width = spec.config.get(key, default) if spec.architecture in WIDTH else default
    return BYTES_PER_PIXEL_PER_CHANNEL[arch] * width


def estimate_bytes(spec: ModelSpec, height: int, width: int, tile: int | None = None) -> int:
    """Memory that restoring a height x width image needs beyond the loaded model (and the libraries),
    whole (``tile`` None) or in tiles of ``tile``."""
    m = max(spec.pad_multiple, 1)
    th, tw = (height, width) if tile is None else (min(tile, height), min(tile, width))
    network = bytes_per_pixel(spec) * padded_size(th, m, DEFAULT_MIN_SIZE) * padded_size(tw, m, DEFAULT_MIN_SIZE)
    return int(FIXED_BYTES + network + buffer_bytes_per_pixel(spec) * height * width)


def available_memory() -> int | None:
    """Bytes the system can give without swapping: MemAvailable of /proc/meminfo (Linux), else the
    free physical pages; None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


class Tiling(NamedTuple):
    """The tiling of one image: ``tile`` None for the whole image; ``reason`` one of requested, model,
    whole, auto; ``notice`` a line for the user (automatic tiling, or a whole image that may not fit)."""

    tile: int | None
    overlap: int
    reason: str
    notice: str | None = None


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def choose_tiling(spec: ModelSpec, height: int, width: int, tile: int | None = None, overlap: int | None = None,
                  available_bytes: int | None = None) -> Tiling:
    """The tiling of a height x width image. ``tile``: None for the model's recommendation, 0 for the
    whole image, N for tiles of N; ``overlap`` None for the model's. Without a recommendation the whole
    image runs when ``SAFETY`` x its estimate fits in ``available_bytes`` (default: ``available_memory()``),
    else the largest of ``AUTO_TILES`` that fits. ``--tile 0`` always runs whole (warned when it may not fit)."""
    if tile is not None and tile < 0:
        raise ValueError(f"tile must be >= 0, got {tile}")
    ov = spec.tile_overlap if overlap is None else overlap
    if tile:
        if overlap is None and 2 * ov > tile:  # the model's overlap, too large for the user's small tile
            ov = tile // 4
        return Tiling(effective_tile(spec, tile), ov, "requested")
    if tile is None and spec.tile:
        return Tiling(effective_tile(spec, spec.tile), ov, "model")
    need = estimate_bytes(spec, height, width)
    available = available_memory() if available_bytes is None else available_bytes
    if available is None or need * SAFETY <= available:
        return Tiling(None, ov, "whole")
    size = f"{width}x{height} needs ~{_size(need)} whole, {_size(available)} available"
    if tile == 0:
        return Tiling(None, ov, "whole", f"warning: {size}; it may run out of memory (omit --tile 0 to tile)")
    smallest = min_tile(spec.pad_multiple)
    fits = [t for t in AUTO_TILES if t >= smallest and estimate_bytes(spec, height, width, t) * SAFETY <= available]
    auto = fits[0] if fits else smallest
    if tiling_error(auto, ov, spec.pad_multiple):
        ov = auto // 4
    return Tiling(auto, ov, "auto", f"notice: {size}; tiling {auto} overlap {ov} (pass --tile to choose)")
