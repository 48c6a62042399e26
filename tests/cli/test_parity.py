"""restore-parity: Comparator-based parity of ONNX artefacts with the PyTorch reference, thresholds, localisation."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from restormer_deploy.cli.parity import app
from restormer_deploy.engines.parity import snr_db
from restormer_deploy.export.contract import PARITY_FLOORS
from restormer_deploy.restormer.imageio import write_image
from restormer_deploy.restormer.metrics import psnr_peak1

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    g = np.random.default_rng(0)
    for i in range(2):  # smooth-ish images: a gradient plus texture
        yy, xx = np.mgrid[0:40, 0:48]
        img = (0.5 + 0.3 * np.sin(xx / (5 + i)) * np.cos(yy / 7) + 0.05 * g.standard_normal((40, 48))).clip(0, 1)
        write_image(root / f"{i}.png", (img * 255).round().astype(np.uint8)[..., None])
    return root


def _parity(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_psnr_peak1_clamps_and_caps():
    a = np.full((4, 4), 0.5, np.float32)
    assert psnr_peak1(a, a) == 200.0
    assert psnr_peak1(np.full((4, 4), 2.0), np.ones((4, 4))) == 200.0  # both clamp to 1
    assert abs(psnr_peak1(a, a + 0.1) - 20.0) < 1e-4
    assert snr_db(a, a) == 200.0 and abs(snr_db(a * 1.1, a) - 20.0) < 1e-4


@pytest.mark.parametrize("key", ["fp32", "fp16"])
def test_parity_passes_with_keys(art, images, tmp_path, key):
    out = tmp_path / "p.json"
    r = _parity(art[key], "--reference", art["ckpt"], "--images", images, "--degrade", "noise:25", "--json", out,
                "--threads", "1", "--localize")
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    for k in ("passed", "min_psnr_vs_reference", "mean_psnr_vs_reference", "task_psnr_reference",
              "task_psnr_artifact", "task_psnr_drop"):
        assert k in data
    assert data["passed"] and data["precision"] == key and data["threshold_psnr"] == PARITY_FLOORS[key]
    assert PARITY_FLOORS[key] <= data["min_psnr_vs_reference"] < 200  # a real difference, not clamped away
    assert abs(data["task_psnr_drop"]) < 0.3 and len(data["images"]) == 2
    assert data["localize"]["first_diverging"] is None and len(data["localize"]["nodes"]) == 2


def test_parity_fails_on_a_different_model_and_localizes(art, images, tmp_path):
    out = tmp_path / "p.json"
    r = _parity(art["fp32"], "--reference", art["other"], "--images", images, "--degrade", "noise:25", "--json", out,
                "--localize")
    assert r.exit_code == 1, r.output
    data = json.loads(out.read_text())
    assert not data["passed"] and data["min_psnr_vs_reference"] < 60
    first = data["localize"]["first_diverging"]
    assert first["op"] == "Converse2D" and first["index"] == 0


def test_threshold_overrides(art, images):
    r = _parity(art["fp16"], "--reference", art["ckpt"], "--images", images, "--degrade", "noise:25", "--min-psnr", "190")
    assert r.exit_code == 1 and "FAILED" in r.output
    r = _parity(art["fp16"], "--reference", art["ckpt"], "--images", images, "--degrade", "noise:25", "--max-drop", "-1")
    assert r.exit_code == 1
    r = _parity(art["fp16"], "--reference", art["ckpt"], "--images", images, "--degrade", "noise:25",
                "--max-ssim-drop", "-1")  # judged only when given: every image's drop (~0) is above -1
    assert r.exit_code == 1 and "max -1, every image" in r.output, r.output


def test_bad_usage_exit_2(art, images, tmp_path):
    assert _parity(art["fp32"], "--reference", "restormer-denoise-color", "--images", images).exit_code == 2  # channels
    assert _parity(art["fp32"], "--reference", art["ckpt"], "--images", tmp_path / "none").exit_code == 2
    assert _parity(tmp_path / "missing.onnx", "--reference", art["ckpt"], "--images", images).exit_code == 2
    assert _parity(art["fp32"], "--reference", art["ckpt"], "--images", images, "--degrade", "bogus:1").exit_code == 2


def test_help_has_examples():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "Examples" in r.output


def test_nan_artifact_fails_cleanly(art, images, tmp_path, monkeypatch):
    from restormer_deploy.engines import backends

    original = backends.OnnxRuntimeRunner._infer

    def nan(self, feed):
        out = original(self, feed)
        return {k: np.full_like(v, np.nan) for k, v in out.items()}

    monkeypatch.setattr(backends.OnnxRuntimeRunner, "_infer", nan)
    out = tmp_path / "p.json"
    r = _parity(art["fp32"], "--reference", art["ckpt"], "--images", images, "--degrade", "noise:25", "--json", out)
    assert r.exit_code == 1, r.output
    data = json.loads(out.read_text())
    assert not data["passed"] and data["min_psnr_vs_reference"] == 0.0
