"""restore-run --backend auto on a checkpoint: the verified ONNX export, made once in $RESTORE_CACHE_DIR,
reused on later runs, giving PyTorch's pixels (within 1 LSB); PyTorch with one notice when the cache
cannot be written; --backend torch-cpu never touches the cache."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restormer_deploy.cli.run import app
from restormer_deploy.export import onnx_export
from restormer_deploy.restormer.checkpoints import save_checkpoint
from restormer_deploy.restormer.imageio import read_image, write_image

pytestmark = pytest.mark.usefixtures("one_thread", "fast_path")

runner = CliRunner()


@pytest.fixture(scope="module")
def grey_ckpt(tmp_path_factory, small_checkpoint):
    """A small random Converse-DnCNN whose outputs sit inside [0, 1] (clamping would hide differences)."""
    root = tmp_path_factory.mktemp("m")
    _, net, spec = small_checkpoint(root, "converse-dncnn")
    with torch.no_grad():
        net.m_tail[0].bias += 0.5 - net(torch.rand(1, 1, 32, 32)).mean()
    return str(save_checkpoint(root / "dncnn.safetensors", net, {"model": spec.to_json()}))


@pytest.fixture
def photo(tmp_path):
    """A smooth grey image with texture (a random model on pure noise would saturate)."""
    yy, xx = np.mgrid[0:45, 0:61]
    img = 128 + 60 * np.sin(xx / 7.0) * np.cos(yy / 5.0) + np.random.default_rng(0).normal(0, 12, (45, 61))
    write_image(tmp_path / "photo.png", np.clip(img, 0, 255).round().astype(np.uint8)[..., None])
    write_image(tmp_path / "pixel.png", np.array([[[200]]], np.uint8))  # a corner case of the dynamic shapes
    return tmp_path / "photo.png"


def _run(*args, cache=None):
    env = {"RESTORE_CACHE_DIR": str(cache)} if cache is not None else None
    return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


def _backend(json_path):
    return json.loads(json_path.read_text())["backend"]


def test_auto_exports_once_then_reuses_and_matches_pytorch(grey_ckpt, photo, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    exports = []
    real_export = onnx_export.export
    monkeypatch.setattr(onnx_export, "export", lambda *a, **k: exports.append(a) or real_export(*a, **k))

    first = _run(grey_ckpt, photo, "-o", tmp_path / "a", "--json", tmp_path / "a.json", cache=cache)
    assert first.exit_code == 0, first.output
    assert "exported converse-dncnn-small to ONNX and verified it" in first.output and str(cache) in first.output
    assert _backend(tmp_path / "a.json") == "ort-cpu" and len(exports) == 1
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".onnx"]  # $RESTORE_CACHE_DIR honoured

    second = _run(grey_ckpt, photo, "-o", tmp_path / "b", "--json", tmp_path / "b.json", cache=cache)
    assert second.exit_code == 0, second.output
    assert "using the verified ONNX export cached at" in second.output and "exported" not in second.output
    assert _backend(tmp_path / "b.json") == "ort-cpu" and len(exports) == 1

    ref = _run(grey_ckpt, photo, "-o", tmp_path / "t", "--backend", "torch-cpu", cache=cache)
    assert ref.exit_code == 0, ref.output
    want = read_image(tmp_path / "t" / "photo.png").astype(int)
    for folder in ("a", "b"):
        got = read_image(tmp_path / folder / "photo.png").astype(int)
        assert np.abs(got - want).max() <= 1
    pixel = _run(grey_ckpt, photo.with_name("pixel.png"), "-o", tmp_path / "a", cache=cache)
    assert pixel.exit_code == 0, pixel.output
    ref = _run(grey_ckpt, photo.with_name("pixel.png"), "-o", tmp_path / "t", "--backend", "torch-cpu", cache=cache)
    assert ref.exit_code == 0 and "using the verified" in pixel.output
    assert abs(int(read_image(tmp_path / "a" / "pixel.png")[0, 0, 0]) - int(read_image(tmp_path / "t" / "pixel.png")[0, 0, 0])) <= 1
    assert (want == 0).mean() < 0.01 and (want == 255).mean() < 0.01 and want.std() > 5  # not clamped flat


def test_unwritable_cache_runs_pytorch_with_one_notice(grey_ckpt, photo, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    r = _run(grey_ckpt, photo, "-o", tmp_path / "a", "--json", tmp_path / "a.json", cache=tmp_path / "file" / "cache")
    assert r.exit_code == 0, r.output
    assert r.output.count("using PyTorch") == 1 and "Traceback" not in r.output
    assert _backend(tmp_path / "a.json") == "torch-cpu"
    ref = _run(grey_ckpt, photo, "-o", tmp_path / "t", "--backend", "torch-cpu", cache=tmp_path / "unused")
    np.testing.assert_array_equal(read_image(tmp_path / "a" / "photo.png"), read_image(tmp_path / "t" / "photo.png"))
    assert ref.exit_code == 0 and not (tmp_path / "unused").exists()  # --backend torch-cpu: no cache


def test_bad_model_is_still_bad_usage(tmp_path, photo):
    r = _run(tmp_path / "missing.safetensors", photo, "-o", tmp_path / "o", cache=tmp_path / "cache")
    assert r.exit_code == 2 and "not found" in r.output and not (tmp_path / "cache").exists()


@pytest.mark.slow  # the tiny Restormer's export takes about 40 s
def test_colour_restormer_matches_pytorch(tmp_path, small_checkpoint, random_image):
    ckpt = small_checkpoint(tmp_path, "restormer-denoise-color")[0]
    write_image(tmp_path / "c.png", random_image((37, 50, 3)))
    write_image(tmp_path / "p.png", np.array([[[200, 10, 90]]], np.uint8))  # one pixel: padded to the model's multiple
    fast = _run(ckpt, tmp_path / "c.png", tmp_path / "p.png", "-o", tmp_path / "a", "--json", tmp_path / "a.json",
                cache=tmp_path / "cache")
    ref = _run(ckpt, tmp_path / "c.png", tmp_path / "p.png", "-o", tmp_path / "t", "--backend", "torch-cpu")
    assert fast.exit_code == ref.exit_code == 0, fast.output + ref.output
    assert _backend(tmp_path / "a.json") == "ort-cpu"
    for name in ("c.png", "p.png"):
        got, want = (read_image(tmp_path / d / name).astype(int) for d in ("a", "t"))
        assert got.shape == want.shape and np.abs(got - want).max() <= 1
