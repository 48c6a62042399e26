"""Run a reference model on one image tensor: pad to the model's multiple, forward, crop back."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from restormer_deploy.restormer.presets import ModelSpec
from restormer_deploy.restormer.restormer_arch import crop_to, pad_to_multiple


def restore(model: nn.Module, spec: ModelSpec, x: Tensor, kernel: Tensor | None = None) -> Tensor:
    """x: (B, C, H, W) in [0, 1]; kernel: (B or 1, 1, k, k) for models that take one. Not clamped."""
    if x.shape[1] != spec.in_channels:
        raise ValueError(f"{spec.name} takes {spec.in_channels} channels, the input has {x.shape[1]}")
    if spec.needs_kernel and kernel is None:
        raise ValueError(f"{spec.name} needs a blur kernel (a blur:KERNELFILE degradation)")
    h, w = x.shape[-2:]
    xp, _ = pad_to_multiple(x, spec.pad_multiple) if spec.pad_multiple > 1 else (x, (h, w))
    with torch.inference_mode():
        y = model(xp, kernel) if spec.needs_kernel else model(xp)
    return crop_to(y, h * spec.scale, w * spec.scale)
