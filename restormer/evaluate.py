"""PSNR/SSIM of a model on a folder of clean images under a synthetic degradation."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from restormer_deploy.restormer.degrade import BicubicSR, BlurNoise, Degradation, center_crop
from restormer_deploy.restormer.errors import one_line
from restormer_deploy.restormer.imageio import from_float, read_image
from restormer_deploy.restormer.inference import restore
from restormer_deploy.restormer.metrics import task_scores
from restormer_deploy.restormer.presets import ModelSpec


@dataclass
class ImageResult:
    name: str
    psnr: float | None = None
    ssim: float | None = None
    input_psnr: float | None = None
    seconds: float = 0.0
    error: str | None = None


def check_compatible(spec: ModelSpec, degradation: Degradation) -> None:
    """Refuse pairings that cannot produce a meaningful score, before any work is done."""
    if spec.in_channels != spec.out_channels:
        raise ValueError(f"{spec.name} maps {spec.in_channels} to {spec.out_channels} channels; synthetic evaluation needs a model that outputs what it takes")
    sr = degradation.scale if isinstance(degradation, BicubicSR) else 1
    if sr != spec.scale:
        raise ValueError(f"{spec.name} upscales x{spec.scale} but the degradation {degradation.describe()!r} needs x{sr}")
    if spec.needs_kernel and not isinstance(degradation, BlurNoise):
        raise ValueError(f"{spec.name} needs the blur kernel: use --degrade blur:KERNELFILE[:INDEX]+noise:SIGMA")


def checked_scores(out: np.ndarray, gt: np.ndarray, *, border: int = 0, y_channel: bool = False) -> tuple[float, float]:
    """``task_scores``, refusing (ValueError) an image smaller than the SSIM window, which fails that
    image: a mean over the images must stay a number (JSON has no NaN)."""
    p, s = task_scores(out, gt, border=border, y_channel=y_channel)
    if math.isnan(s):
        h, w = out.shape[:2]
        raise ValueError(f"{w}x{h} with {border} pixels shaved is smaller than the 7x7 SSIM window")
    return p, s


def evaluate_image(model: nn.Module, spec: ModelSpec, degradation: Degradation, gt: np.ndarray, *, seed: int = 0,
                   tile: int | None = None, overlap: int = 32) -> tuple[np.ndarray, ImageResult]:
    """Degrade one clean image, restore it (whole, or in ``tile`` x ``tile`` tiles), and score it.

    Returns the uint8 output and the scores."""
    sample = degradation.apply(gt, seed)
    x = torch.from_numpy(np.ascontiguousarray(sample.lq.transpose(2, 0, 1)))[None].float()
    kernel = torch.from_numpy(sample.kernel)[None, None] if spec.needs_kernel else None
    t0 = time.perf_counter()
    if tile:
        from restormer_deploy.restormer.tiling import restore_array  # the runtime's tiling, so eval scores what restore-run does

        y = torch.from_numpy(restore_array(lambda t: restore(model, spec, torch.from_numpy(t), kernel).numpy(),
                                           spec, x.numpy(), tile=tile, overlap=overlap))[None]
    else:
        y = restore(model, spec, x, kernel)
    seconds = time.perf_counter() - t0
    if not torch.isfinite(y).all():
        raise ValueError("the model produced NaN or Inf")
    out = from_float(y[0].permute(1, 2, 0).numpy())
    p, s = checked_scores(out, sample.gt, border=sample.border, y_channel=sample.y_channel)
    input_psnr = None
    if sample.lq.shape == sample.gt.shape:
        input_psnr = task_scores(from_float(sample.lq), sample.gt, border=sample.border, y_channel=sample.y_channel,
                                 with_ssim=False)[0]
    return out, ImageResult(name="", psnr=p, ssim=s, input_psnr=input_psnr, seconds=seconds)


def evaluate(
    model: nn.Module,
    spec: ModelSpec,
    paths: Iterable[Path],
    degradation: Degradation,
    *,
    seed: int = 0,
    crop: int | None = None,
    on_image: Callable[[ImageResult], None] | None = None,
    tile: int | None = None,
    overlap: int = 32,
) -> list[ImageResult]:
    """Score every image; an image that fails gets ``error`` set and the rest go on."""
    check_compatible(spec, degradation)
    results = []
    for path in paths:
        try:
            gt = read_image(path, channels=spec.in_channels)
            if gt.dtype != np.uint8:
                raise ValueError(f"{path.name}: the evaluation protocols are defined on 8-bit images, got {gt.dtype}")
            if crop:
                gt = center_crop(gt, crop)
            _, result = evaluate_image(model, spec, degradation, gt, seed=seed, tile=tile, overlap=overlap)
            result.name = path.name
        except (ValueError, OSError) as exc:
            result = ImageResult(name=path.name, error=one_line(exc))
        results.append(result)
        if on_image:
            on_image(result)
    return results


def summarise(results: list[ImageResult]) -> dict:
    """The JSON of ``restore-eval``: means over the images that succeeded, and every image."""
    ok = [r for r in results if r.error is None]
    mean = lambda key: float(np.mean([getattr(r, key) for r in ok])) if ok and all(getattr(r, key) is not None for r in ok) else None  # noqa: E731
    return {
        "psnr": mean("psnr"),
        "ssim": mean("ssim"),
        "input_psnr": mean("input_psnr"),
        "count": len(ok),
        "failed": len(results) - len(ok),
        "images": [asdict(r) for r in results],
    }
