"""restore-eval end to end on a tiny checkpoint of ours: output, JSON, exit codes, bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from restormer_deploy.cli.eval import app
from restormer_deploy.restormer.checkpoints import save_checkpoint
from restormer_deploy.restormer.metrics import psnr
from restormer_deploy.restormer.presets import PRESETS, ModelSpec, build

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-block Converse-DnCNN whose tail is the identity map of the head: it returns its input."""
    root = tmp_path_factory.mktemp("tiny")
    spec = ModelSpec(**{**PRESETS["converse-dncnn"].to_json(), "name": "tiny", "weights": None,
                        "config": {**PRESETS["converse-dncnn"].config, "num_blocks": 2, "num_features": 4}})
    model = build(spec)
    with torch.no_grad():
        for block in model.m_body:  # zero both residual branches
            block.conv1[-1].weight.zero_(); block.conv1[-1].bias.zero_()
            block.conv2[-1].weight.zero_(); block.conv2[-1].bias.zero_()
        model.m_head[0].weight.fill_(1.0); model.m_head[0].bias.zero_()
        model.m_tail[0].weight.fill_(0.25); model.m_tail[0].bias.zero_()
    ckpt = save_checkpoint(root / "tiny.safetensors", model, {"model": spec.to_json()})
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 20), dtype=np.uint8)).save(data / f"img{i}.png")
    return ckpt, data


def test_tiled_scores_like_restore_run(tiny, tmp_path):
    """--tile cuts the 24x20 images into overlapping 16x16 tiles; the identity model must still score the noisy input."""
    ckpt, data = tiny
    out = tmp_path / "t.json"
    r = runner.invoke(app, [str(ckpt), "--data", str(data), "--degrade", "noise:25", "--tile", "16",
                            "--tile-overlap", "4", "--json", str(out)])
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    assert result["tile"] == 16 and result["tile_overlap"] == 4
    gt = np.array(Image.open(data / "img1.png"))[..., None]
    noisy = np.float32(gt / 255.0) + np.random.RandomState(0).normal(0, 25 / 255.0, gt.shape)
    expected = psnr(np.uint8((np.float32(noisy).clip(0, 1) * 255).round()), gt)
    assert result["images"][1]["psnr"] == pytest.approx(expected, abs=1e-3)
    bad = runner.invoke(app, [str(ckpt), "--data", str(data), "--degrade", "noise:25", "--tile", "16", "--tile-overlap", "16"])
    assert bad.exit_code == 2 and "--tile-overlap" in bad.output


def test_help_teaches():
    r = runner.invoke(app, ["--help"], terminal_width=200)
    assert r.exit_code == 0
    assert "Examples" in r.output and "noise:SIGMA" in r.output and "converse-dncnn" in r.output


def test_scores_and_json(tiny, tmp_path):
    ckpt, data = tiny
    out = tmp_path / "r.json"
    r = runner.invoke(app, [str(ckpt), "--data", str(data), "--degrade", "noise:25", "--json", str(out)])
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    assert {"psnr", "ssim", "images"} <= set(result)
    assert [i["name"] for i in result["images"]] == ["img0.png", "img1.png", "img2.png"]
    # The identity model returns the noisy input, so its PSNR is the noisy image's, computed here by hand.
    gt = np.array(Image.open(data / "img0.png"))[..., None]
    noisy = np.float32(gt / 255.0) + np.random.RandomState(0).normal(0, 25 / 255.0, gt.shape)
    expected = psnr(np.uint8((np.float32(noisy).clip(0, 1) * 255).round()), gt)
    assert result["images"][0]["psnr"] == pytest.approx(expected, abs=1e-3)


def test_unreadable_image_fails_that_item_only(tiny, tmp_path):
    ckpt, data = tiny
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in data.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"this is text")
    out = tmp_path / "r.json"
    r = runner.invoke(app, [str(ckpt), "--data", str(folder), "--degrade", "noise:5", "--json", str(out)])
    assert r.exit_code == 2
    result = json.loads(out.read_text())
    assert result["count"] == 3 and result["failed"] == 1
    assert "broken.png" in r.output


def test_min_psnr_check_fails_with_1(tiny):
    ckpt, data = tiny
    r = runner.invoke(app, [str(ckpt), "--data", str(data), "--degrade", "noise:25", "--min-psnr", "99"])
    assert r.exit_code == 1


@pytest.mark.parametrize(
    "args,needle",
    [
        (["no-such-preset", "--degrade", "noise:25"], "unknown model"),
        (["{ckpt}", "--degrade", "noise:-3"], "SIGMA"),
        (["{ckpt}", "--degrade", "sr:4"], "upscales x1"),
        (["{ckpt}", "--degrade", "blur"], "expected noise:SIGMA"),
        (["{ckpt}", "--degrade", "noise:25", "--json", "/no/such/dir/r.json"], "does not exist"),
        (["{ckpt}", "--degrade", "noise:25", "--weights", "/no/such.pth"], "not found"),
    ],
)
def test_bad_input_one_line_exit_2(tiny, args, needle):
    ckpt, data = tiny
    args = [a.replace("{ckpt}", str(ckpt)) for a in args]
    r = runner.invoke(app, [args[0], "--data", str(data), *args[1:]])
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert "Traceback" not in r.output


def test_missing_data_folder(tiny, tmp_path):
    ckpt, _ = tiny
    r = runner.invoke(app, [str(ckpt), "--data", str(tmp_path / "absent"), "--degrade", "noise:25"])
    assert r.exit_code == 2 and "Traceback" not in r.output
