"""Everything a run needs before its first step, checked up front: model spec, data, validation set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from restormer_deploy.restormer.presets import ModelSpec
from restormer_deploy.restormer.train.config import Config, ConfigError
from restormer_deploy.restormer.train.data import Synthetic, TrainSet, load_kernels
from restormer_deploy.restormer.train.model import model_spec
from restormer_deploy.restormer.train.schedule import Stages
from restormer_deploy.restormer.train.sources import load_all, pair_files, source_files
from restormer_deploy.restormer.train.validate import ValSet, load_valset


@dataclass
class Plan:
    spec: ModelSpec
    trainset: TrainSet
    valset: ValSet | None
    stages: Stages
    summary: dict  # image counts for the log
    sizes: list[tuple[str, int, int]]  # (name, height, width) of every training (ground-truth) image


def _check_model_data(cfg: Config, spec: ModelSpec) -> None:
    d, t = cfg.data, cfg.train
    paired = bool(d.gt)
    if spec.needs_kernel and (paired or d.degradation != "blur"):
        raise ConfigError(f"{spec.name} takes the blur kernel as an input: train it on data.clean with data.degradation=blur")
    if spec.needs_kernel and d.mixup:
        raise ConfigError(f"data.mixup would mix images blurred by different kernels: not for {spec.name}")
    if not paired and (spec.scale > 1) != (d.degradation == "sr"):
        raise ConfigError(f"{spec.name} upscales x{spec.scale}: data.degradation must be "
                          + ("sr" if spec.scale > 1 else f"noise or blur, not {d.degradation}"))
    for p in t.patch_sizes:
        if p % spec.scale or (p // spec.scale) % spec.pad_multiple:
            raise ConfigError(f"train.patch_sizes: {p} must give inputs (patch / scale {spec.scale}) "
                              f"that are multiples of {spec.pad_multiple} for {spec.name}")


def check_patches(patch_sizes: list[int], plan: Plan) -> None:
    """Small images are mirror-padded to the patch, but a patch larger than every image is a typo (and memory)."""
    fits = max(min(h, w) for _, h, w in plan.sizes)
    name, h, w = min(plan.sizes, key=lambda s: min(s[1:]))
    for p in patch_sizes:
        if p > fits:
            raise ConfigError(f"train.patch_sizes: {p} is larger than every training image "
                              f"(at most {fits}; the smallest image is {name}, {h}x{w})")


def prepare(cfg: Config, warn: Callable[[str], None]) -> Plan:
    """Resolve and load everything; bad input raises ConfigError / FileNotFoundError / ValueError."""
    spec = model_spec(cfg)
    _check_model_data(cfg, spec)
    d = cfg.data
    synthetic = None
    if d.clean:
        kernels = load_kernels(d.kernels) if d.degradation == "blur" else []
        if spec.needs_kernel:
            size = spec.config.get("kernel_size", 7)
            odd = [k.shape for k in kernels if k.shape != (size, size)]
            if odd:
                raise ConfigError(f"{spec.name} takes {size}x{size} kernels; data.kernels has {odd[0][0]}x{odd[0][1]}")
        synthetic = Synthetic(d.degradation, d.sigma, kernels, spec.scale)
    valset = load_valset(cfg, spec, warn)
    held_out = {f.resolve() for f in valset.files} if valset else set()
    if d.clean:
        files = source_files(d.clean)
        items = [f for f in files if f.resolve() not in held_out]
    else:
        items = [p for p in pair_files(d.lq, d.gt, warn) if p[1].resolve() not in held_out]
    loaded = load_all(items, spec.in_channels, d.grey_to_rgb, d.cache, warn)
    if not loaded.images:
        raise FileNotFoundError("no readable training images in " + ", ".join(d.clean or d.gt))
    summary = {"train_images": len(loaded.images), "held_out": len(held_out), "unreadable": loaded.unreadable,
               "grey_skipped": loaded.grey_skipped, "val_images": len(valset.images) if valset else 0}
    trainset = TrainSet(loaded.images, d, cfg.seed, spec.in_channels, spec.scale, synthetic)
    stages = Stages(cfg.train.patch_sizes, cfg.train.batch_sizes, cfg.train.stage_iters)
    sizes = [(name, h, w) for name, (h, w) in zip(loaded.names, loaded.sizes)]
    return Plan(spec, trainset, valset, stages, summary, sizes)
