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


def _portable(value):
    """Paths under the shared data folder, written as absolute paths of the machine that trained."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and "/data/" in value:
        return value[value.index("/data/") + 1:]
    return value


def test_shipped_weights_come_from_the_shipped_config(repo_root):
    """One restore-train command on configs/default.yaml is the recipe of the shipped weights: the
    config resolves to the one recorded with them, it stops at their iteration, its init weights are
    the bytes the run started from, and the shipped log ends at a validation that picked them."""
    import hashlib

    from restormer_deploy.restormer.train.config import load_config

    shipped = json.loads((ASSETS / "default.json").read_text())
    recipe = load_config(repo_root / "configs" / "default.yaml").to_dict()
    recorded = dict(shipped["train_config"])
    for cfg in (recipe, recorded):
        cfg.pop("resume")
    assert _portable(recipe) == _portable(recorded)
    assert recipe["train"]["iterations"] == shipped["iteration"]
    init = repo_root / recipe["init_weights"]
    assert hashlib.sha256(init.read_bytes()).hexdigest() == shipped["source_run"]["init_sha256"]
    assert recipe["data"]["grey_to_rgb"] is False and not any("CBSD68" in p for p in recipe["data"]["clean"])
    log = [json.loads(line) for line in (ASSETS / "default_training_log.jsonl").read_text().splitlines() if line.strip()]
    vals = [r for r in log if "val_psnr" in r]
    assert vals[-1]["iter"] == shipped["iteration"] and vals[-1]["best_iter"] == shipped["iteration"]
    assert abs(vals[-1]["val_psnr"] - shipped["val"]["val_psnr"]) < 1e-9
    assert max(r["val_psnr"] for r in vals) == vals[-1]["val_psnr"]


def test_config_readme_and_training_doc_ship_the_same_way(repo_root):
    """The shipped config, the README and docs/TRAINING.md name the same way to ship new weights
    (they once disagreed: the config said to copy files by hand)."""
    config = (repo_root / "configs" / "default.yaml").read_text()
    readme = (repo_root / "README.md").read_text()
    training = (repo_root / "docs" / "TRAINING.md").read_text()
    for text in (config, readme, training):
        assert "scripts/ship_default.py" in text
    assert "copy runs/" not in config
    assert "restore-train --config configs/default.yaml" in config and "restore-train --config configs/default.yaml" in training
    assert (repo_root / "scripts" / "ship_default.py").is_file()
