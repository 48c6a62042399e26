"""Calibration and search images: a folder of clean images -> the model's own inputs.

Each image is read in the model's channels, optionally cut to a seeded random ``crop`` x ``crop``
window, degraded as the model is evaluated (``--degrade`` SPEC, default the preset's ``degrade``;
clean images when the preset has none) and padded to the model's multiple exactly as
``restormer_deploy.restormer.inference.restore`` pads. The degradation seed of image ``i`` is ``seed + i`` (so equal
crops do not share one noise pattern); the crop positions come from ``numpy.random.default_rng(seed)``.
Same folder, count, crop, degradation and seed -> bit-identical inputs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from restormer_deploy.restormer.degrade import parse_degradation
from restormer_deploy.restormer.errors import BadInput
from restormer_deploy.restormer.imageio import ImageReadError, list_images, read_image

if TYPE_CHECKING:  # no torch at import: ``restore-quantize`` runs without it (spec: a ModelSpec or an OnnxSpec)
    from restormer_deploy.restormer.presets import ModelSpec


class CalibrationError(BadInput):
    """Bad calibration input (folder, counts, sizes, cache); nothing was written."""


@dataclass
class ImageSet:
    """Model inputs (each a tuple of float32 NCHW arrays), their ground truths (uint8 HxWxC) and names."""

    inputs: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # unpadded output (h, w)
    scoring: list[tuple[int, bool]] = field(default_factory=list)  # (border, y_channel) of each target
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {"count": len(self.names), "names": list(self.names), "notes": list(self.notes)}


def _warn(notes: list[str], message: str) -> None:
    notes.append(message)
    warnings.warn(message, stacklevel=3)


def pad_to_multiple(x: np.ndarray, multiple: int) -> np.ndarray:
    """NumPy twin of ``restormer_deploy.restormer.restormer_arch.pad_to_multiple`` (which needs torch):
    pad bottom/right to multiples of ``multiple``, reflecting, or replicating the edge when the pad is
    not smaller than the image."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "edge"
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, pad_h), (0, pad_w)], mode=mode)


def select_paths(folder, count: int | None = None, start: int = 0) -> list[Path]:
    """Sorted image files of ``folder``, ``[start : start + count]``; errors for an unusable folder."""
    folder = Path(folder)
    try:
        paths = list_images(folder)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise CalibrationError(str(exc)) from None
    except PermissionError:
        raise CalibrationError(f"cannot read folder {folder}: permission denied") from None
    if not paths:
        raise CalibrationError(f"no images in {folder} (looked for .png .jpg .jpeg .bmp .tif .tiff)")
    if count is not None and count < 1:
        raise CalibrationError(f"the image count must be >= 1, got {count}")
    return paths[start:start + count] if count else paths[start:]


def load_images(
    paths: list[Path],
    spec: ModelSpec,
    crop: int | None = None,
    degrade: str | None = None,
    seed: int = 0,
    asked: int | None = None,
    what: str = "calibration",
    same_seed: bool = False,
) -> ImageSet:
    """Read, crop, degrade and pad ``paths``. Unreadable or too-small images are skipped with a warning;
    none left is an error. ``asked`` > found is a warning. ``same_seed``: every image gets ``seed``
    (the ``restore-eval`` protocol) instead of ``seed + i``."""
    if crop is not None and crop < max(8, spec.pad_multiple):
        raise CalibrationError(f"the {what} crop size must be >= {max(8, spec.pad_multiple)}, got {crop}")
    spec_text = degrade if degrade is not None else spec.degrade
    degradation = parse_degradation(spec_text) if spec_text and spec_text != "none" else None
    if spec.needs_kernel and degradation is None:
        raise CalibrationError(f"{spec.name} needs a blur kernel: pass --degrade blur:KERNELFILE[:INDEX]+noise:SIGMA")
    rng = np.random.default_rng(seed)
    out = ImageSet()
    if asked is not None and len(paths) < asked:
        _warn(out.notes, f"{what}: asked for {asked} images, the folder has {len(paths)}; using {len(paths)}")
    channels = min(spec.in_channels, 3)
    for i, path in enumerate(paths):
        try:
            gt = read_image(path, channels=channels)
        except (ImageReadError, OSError) as exc:
            _warn(out.notes, f"{what}: skipped {path.name}: {str(exc).splitlines()[0]}")
            continue
        if gt.dtype != np.uint8:
            gt = (gt.astype(np.float64) / 257.0).round().astype(np.uint8)
        h, w = gt.shape[:2]
        if crop:
            if h < crop or w < crop:
                _warn(out.notes, f"{what}: skipped {path.name}: {h}x{w} is smaller than the {crop}x{crop} crop")
                continue
            top = int(rng.integers(0, h - crop + 1))
            left = int(rng.integers(0, w - crop + 1))
            gt = gt[top:top + crop, left:left + crop]
        if degradation is not None:
            sample = degradation.apply(gt, seed if same_seed else seed + i)
            lq, target, kernel, scoring = sample.lq, sample.gt, sample.kernel, (sample.border, sample.y_channel)
        else:
            lq, target, kernel, scoring = gt.astype(np.float32) / 255.0, gt, None, (0, False)
        x = np.asarray(lq, dtype=np.float32).transpose(2, 0, 1)[None]
        if spec.in_channels == 6:  # dual-pixel: two views
            x = np.concatenate([x, x[..., ::-1]], axis=1)
        oh, ow = x.shape[-2] * spec.scale, x.shape[-1] * spec.scale
        arrays = (np.ascontiguousarray(pad_to_multiple(x, spec.pad_multiple), dtype=np.float32),)
        if spec.needs_kernel:
            arrays += (np.asarray(kernel, dtype=np.float32)[None, None],)
        out.inputs.append(arrays)
        out.targets.append(target)
        out.names.append(path.name)
        out.sizes.append((oh, ow))
        out.scoring.append(scoring)
    if not out.inputs:
        raise CalibrationError(f"{what}: none of the {len(paths)} images in {paths[0].parent if paths else '?'} is usable"
                               + (f" ({out.notes[-1]})" if out.notes else ""))
    return out
