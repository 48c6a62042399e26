"""The evaluation protocol is labelled, and the real-file variant exists: SPEC+quantize clips and
rounds the degraded input to the image's bit depth (as a saved noisy file is); restore-run --degrade
restores exactly the NAME_degraded file it saves, so re-running on that file reproduces its scores."""

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restormer_deploy.restormer.degrade import GaussianNoise, parse_degradation
from restormer_deploy.restormer.imageio import write_image

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def _noisy_file(gt: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """A real noisy 8-bit file, written out by hand: float noise, clipped, rounded."""
    noisy = np.float32(gt / 255.0) + np.random.RandomState(seed).normal(0, sigma / 255.0, gt.shape)
    return np.rint(np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def test_quantize_suffix_gives_the_saved_file_input(random_image):
    gt = random_image((20, 24, 3))
    papers = parse_degradation("noise:25")
    saved = parse_degradation("noise:25+quantize")
    assert papers == GaussianNoise(25.0) and saved == GaussianNoise(25.0, quantize=True)
    lq = saved.apply(gt, 3).lq
    assert np.array_equal(np.rint(lq * 255).astype(np.uint8), _noisy_file(gt, 25, 3))
    assert papers.apply(gt, 3).lq.min() < 0  # the papers' input stays unclipped
    assert "unclipped float input (the papers' protocol" in papers.protocol("noise:25")
    assert saved.protocol("noise:25+quantize").startswith("noise:25+quantize, input clipped and rounded")
    assert parse_degradation("sr:2+quantize").quantize and not parse_degradation("sr:2").quantize
    with pytest.raises(ValueError, match="bad degradation"):
        parse_degradation("noise:+quantize")


@pytest.fixture(scope="module")
def grey(tmp_path_factory, random_image):
    """A 2-block Converse-DnCNN computing 0.5 * x + 0.25: its output never clips, so the clipping of
    its input shows in the score; and clean 8-bit images."""
    from restormer_deploy.restormer.checkpoints import save_checkpoint
    from restormer_deploy.restormer.presets import PRESETS, ModelSpec, build

    root = tmp_path_factory.mktemp("proto")
    base = PRESETS["converse-dncnn"]
    spec = ModelSpec(**{**base.to_json(), "name": "affine", "weights": None,
                        "config": {**base.config, "num_blocks": 2, "num_features": 4}})
    model = build(spec)
    with torch.no_grad():
        for block in model.m_body:  # zero both residual branches
            for conv in (block.conv1[-1], block.conv2[-1]):
                conv.weight.zero_()
                conv.bias.zero_()
        model.m_head[0].weight.fill_(1.0)
        model.m_head[0].bias.zero_()
        model.m_tail[0].weight.fill_(0.5 / 4)
        model.m_tail[0].bias.fill_(0.25)
    ckpt = str(save_checkpoint(root / "affine.safetensors", model, {"model": spec.to_json()}))
    clean = root / "clean"
    clean.mkdir()
    for i in range(2):
        write_image(clean / f"img{i}.png", random_image((24, 28, 1), seed=i))
    return ckpt, clean


def test_eval_labels_the_protocol_and_quantize_scores_real_files(grey, tmp_path):
    from restormer_deploy.cli.eval import app as eval_app
    from restormer_deploy.cli.run import app as run_app
    from restormer_deploy.restormer.imageio import read_image

    ckpt, clean = grey
    r = runner.invoke(eval_app, [ckpt, "--data", str(clean), "--degrade", "noise:25", "--json", str(tmp_path / "p.json")],
                      env=WIDE)
    assert r.exit_code == 0, r.output
    assert "protocol: noise:25, unclipped float input (the papers' protocol" in " ".join(r.output.split())
    papers = json.loads((tmp_path / "p.json").read_text())
    assert papers["quantize"] is False and papers["protocol"].startswith("noise:25, unclipped")

    r = runner.invoke(eval_app, [ckpt, "--data", str(clean), "--degrade", "noise:25+quantize", "--json",
                                 str(tmp_path / "q.json")], env=WIDE)
    assert r.exit_code == 0, r.output
    assert "protocol: noise:25+quantize, input clipped and rounded" in " ".join(r.output.split())
    quantized = json.loads((tmp_path / "q.json").read_text())
    assert quantized["quantize"] is True

    # the same noise, saved as real 8-bit files by this test, restored by restore-run against the clean images
    files = tmp_path / "noisy"
    files.mkdir()
    for p in sorted(clean.iterdir()):
        write_image(files / p.name, _noisy_file(read_image(p), 25, 0))
    r = runner.invoke(run_app, [ckpt, str(files), "-o", str(tmp_path / "out"), "--gt", str(clean), "--backend", "torch-cpu",
                                "--json", str(tmp_path / "r.json")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    from_files = [i["psnr"] for i in json.loads((tmp_path / "r.json").read_text())["images"]]
    assert [i["psnr"] for i in quantized["images"]] == pytest.approx(from_files, abs=0.01)
    assert [i["psnr"] for i in papers["images"]] != pytest.approx(from_files, abs=0.01)


def test_run_degrade_restores_what_it_saved(grey, tmp_path):
    from restormer_deploy.cli.run import app

    ckpt, clean = grey
    r = runner.invoke(app, [ckpt, str(clean), "-o", str(tmp_path / "demo"), "--degrade", "noise:25", "--backend", "torch-cpu",
                            "--json", str(tmp_path / "d.json")], env=WIDE, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "protocol: noise:25+quantize, input clipped and rounded" in " ".join(r.output.split())
    demo = json.loads((tmp_path / "d.json").read_text())["images"]
    saved = tmp_path / "saved"  # the degraded files under the originals' names, for --gt
    saved.mkdir()
    for item in demo:
        shutil.copy(item["degraded"], saved / item["input"].rsplit("/", 1)[1])
    r = runner.invoke(app, [ckpt, str(saved), "-o", str(tmp_path / "again"), "--gt", str(clean), "--backend", "torch-cpu",
                            "--json", str(tmp_path / "a.json")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "a.json").read_text())["images"]
    assert [i["psnr"] for i in again] == pytest.approx([i["psnr"] for i in demo], abs=0.01)
    assert [i["ssim"] for i in again] == pytest.approx([i["ssim"] for i in demo], abs=1e-4)
