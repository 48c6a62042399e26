"""Tiny training set-ups shared by the training tests (seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

TINY_MODEL = {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 0, "heads": [1, 1, 1, 1]}


def smooth_images(folder: Path, n: int = 6, size: int = 48, seed: int = 0) -> Path:
    """Smooth colour images (sums of low-frequency waves): easy to denoise, so PSNR rises fast."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        f = rng.uniform(0.5, 3, (3, 2))
        ph = rng.uniform(0, 6, 3)
        img = np.stack([np.sin(2 * f[c, 0] * yy + ph[c]) * np.cos(2 * f[c, 1] * xx) for c in range(3)], -1)
        Image.fromarray((img * 0.4 * 255 + 127.5).round().astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


def tiny_config(tmp: Path, images: Path, **sections) -> dict:
    """A config dict for a tiny Restormer: 2 progressive stages, cosine restarts, validation."""
    cfg = {
        "model": "default",
        "model_config": dict(TINY_MODEL),
        "run_dir": str(tmp / "run"),
        "seed": 3,
        "data": {"clean": [str(images)], "sigma": [10, 30], "mixup": 0.5},
        "train": {"iterations": 8, "lr": 2e-3, "lr_periods": [3, 5], "lr_mins": [1e-3, 1e-5],
                  "patch_sizes": [16, 24], "batch_sizes": [3, 2], "stage_iters": [5, 3], "log_every": 1},
        "val": {"data": [str(images / "img0.png")], "degrade": "noise:25", "every": 4},
        "checkpoint": {"every": 4},
    }
    for name, values in sections.items():
        if name in ("data", "train", "val", "checkpoint"):
            cfg[name].update(values)
        else:
            cfg[name] = values
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path
