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
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from restormer_deploy.restormer.presets import ModelSpec

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
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
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


def tile_count(h: int, w: int, tile: int | None, overlap: int, pad_multiple: int = 1) -> int:
    if tile is None:
        return 1
    tile = _round_up(tile, max(pad_multiple, 1))
    if h <= tile and w <= tile:
        return 1
    return len(tile_starts(h, tile, overlap)) * len(tile_starts(w, tile, overlap))
