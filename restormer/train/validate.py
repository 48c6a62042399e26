"""Validation during training: PSNR/SSIM with test-time padding (``restormer_deploy.restormer.inference.restore``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restormer_deploy.restormer.degrade import Degradation, center_crop, parse_degradation
from restormer_deploy.restormer.evaluate import check_compatible, checked_scores, evaluate_image
from restormer_deploy.restormer.imageio import from_float
from restormer_deploy.restormer.inference import restore
from restormer_deploy.restormer.metrics import task_scores
from restormer_deploy.restormer.presets import ModelSpec
from restormer_deploy.restormer.train.config import Config, ConfigError
from restormer_deploy.restormer.train.data import to_float
from restormer_deploy.restormer.train.sources import load_all, pair_files, source_files


@dataclass
class ValSet:
    names: list[str]
    images: list  # ground truths (synthetic) or (lq, gt) pairs
    degradation: Degradation | None
    files: list[Path]  # held out of the training data


def default_degrade(cfg: Config, spec: ModelSpec) -> str:
    d = cfg.data
    if d.degradation == "noise":
        return f"noise:{(d.sigma[0] + d.sigma[-1]) / 2:g}"
    if d.degradation == "sr":
        return f"sr:{spec.scale}"
    raise ConfigError("set val.degrade (e.g. blur:KERNELFILE:0+noise:2.55) to validate a blur model")


def _crop(img: np.ndarray, size: int | None, scale: int = 1) -> np.ndarray:
    if not size:
        return img
    return center_crop(img, min(size * scale, *img.shape[:2]))


def load_valset(cfg: Config, spec: ModelSpec, warn) -> ValSet | None:
    v = cfg.val
    if not v.data and not v.gt:
        return None
    if v.gt:
        pairs = pair_files(v.lq, v.gt, warn)[: v.limit]
        loaded = load_all(pairs, spec.in_channels, cfg.data.grey_to_rgb, True, warn)
        lp = v.crop // spec.scale if v.crop else None
        images = [(_crop(lq, lp), _crop(gt, lp, spec.scale)) for lq, gt in loaded.images]
        return ValSet(loaded.names, images, None, [g for _, g in pairs])
    files = source_files(v.data)[: v.limit]
    degradation = parse_degradation(v.degrade or default_degrade(cfg, spec))
    try:
        check_compatible(spec, degradation)
    except ValueError as exc:
        raise ConfigError(f"val.degrade: {exc}") from None
    loaded = load_all(files, spec.in_channels, cfg.data.grey_to_rgb, True, warn)
    if not loaded.images:
        raise FileNotFoundError(f"no readable validation images in {v.data}")
    return ValSet(loaded.names, [_crop(g, v.crop) for g in loaded.images], degradation, files)


def _score_pair(net: nn.Module, spec: ModelSpec, lq_img: np.ndarray, gt: np.ndarray) -> tuple[float, float, float | None]:
    x = torch.from_numpy(np.ascontiguousarray(to_float(lq_img).transpose(2, 0, 1)))[None]
    out = from_float(restore(net, spec, x), gt.dtype)
    inp = task_scores(lq_img, gt, with_ssim=False)[0] if lq_img.shape == gt.shape else None
    return (*checked_scores(out, gt), inp)


def validate(net: nn.Module, spec: ModelSpec, valset: ValSet, seed: int = 0) -> dict:
    """Mean PSNR / SSIM of the restored images and the PSNR of the degraded inputs."""
    was_training = net.training
    net.eval()
    scores = []
    for img in valset.images:
        if valset.degradation is None:
            scores.append(_score_pair(net, spec, *img))
        else:
            _, r = evaluate_image(net, spec, valset.degradation, img, seed=seed)
            scores.append((r.psnr, r.ssim, r.input_psnr))
    net.train(was_training)
    inputs = [s[2] for s in scores if s[2] is not None]
    return {
        "val_psnr": float(np.mean([s[0] for s in scores])),
        "val_ssim": float(np.mean([s[1] for s in scores])),
        "val_input_psnr": float(np.mean(inputs)) if len(inputs) == len(scores) else None,
    }
