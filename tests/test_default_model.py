"""The built-in default model (preset ``default``) shipped in the package, and the README's main job.

At the top level, not under a package folder: it checks a shipped artefact (its weights, config and
training log) and the whole path from the weights through restore-demo, not one module."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restormer_deploy.restormer.degrade import parse_degradation
from restormer_deploy.restormer.evaluate import evaluate_image
from restormer_deploy.restormer.imageio import list_images, read_image
from restormer_deploy.restormer.presets import ASSETS, PRESETS, load_model

WEIGHTS = ASSETS / "default.safetensors"


def test_shipped_within_budget_with_config_and_log():
    assert WEIGHTS.is_file(), "restormer/assets/default.safetensors is missing"
    assert WEIGHTS.stat().st_size <= 4 * 1024 * 1024
    config = json.loads((ASSETS / "default.json").read_text())
    assert config["model"]["config"] == PRESETS["default"].config
    log = [json.loads(line) for line in (ASSETS / "default_training_log.jsonl").read_text().splitlines() if line.strip()]
    assert any("val_psnr" in r for r in log) and any("loss" in r for r in log)


def test_default_denoises_the_samples():
    net, spec = load_model("default")
    assert sum(p.numel() for p in net.parameters()) < 2_000_000
    assert all(p.dtype == torch.float32 for p in net.parameters())  # stored FP16, computed FP32
    degradation = parse_degradation("noise:25")
    gains = []
    for path in list_images(ASSETS / "samples"):
        _, r = evaluate_image(net, spec, degradation, read_image(path, channels=3), seed=0)
        gains.append(r.psnr - r.input_psnr)
    # noisy input about 20.9 dB; an untrained or broken network does not gain 5 dB
    assert len(gains) == 2 and min(gains) > 5.0


@pytest.mark.slow
def test_demo_exports_restores_and_checks_parity(tmp_path):
    from restormer_deploy.cli.demo import app

    result = CliRunner().invoke(app, ["--out", str(tmp_path), "--threads", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "default_fp16.onnx").is_file()
    for stem in ("astronaut", "coffee"):
        side = read_image(tmp_path / f"{stem}_side_by_side.png")
        restored = read_image(tmp_path / f"{stem}_restored.png")
        assert side.shape[1] == 3 * restored.shape[1]
        np.testing.assert_array_equal(side[:, restored.shape[1]:2 * restored.shape[1]], restored)
