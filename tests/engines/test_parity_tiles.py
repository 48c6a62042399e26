"""restore-parity runs what restore-run runs: restore-run's tiles, the cached export of a preset or
checkpoint, no comparison of PyTorch with itself, and a verdict on every image.

The broken files are graph edits of a correct export (a Where on the input height), judged
against the PyTorch network run directly (the independent reference), not against parity itself."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from restormer_deploy.cli.parity import app
from restormer_deploy.restormer.imageio import write_image

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


def _wrong_at_height(src, dst, height: int, *, shift: float = 0.05, tile: str | None = None, overlap: str = "8"):
    """``src`` with ``shift`` added to its output whenever the input is ``height`` pixels high (and,
    with ``tile``, that tile recommended in its metadata, as restore-run reads it)."""
    model = onnx.load(str(src))
    g = model.graph
    out = g.output[0].name
    for node in g.node:
        node.output[:] = [f"{o}__right" if o == out else o for o in node.output]
    g.initializer.extend([numpy_helper.from_array(np.array([2], np.int64), "h_index"),
                          numpy_helper.from_array(np.array([height], np.int64), "h_wrong"),
                          numpy_helper.from_array(np.array(shift, np.float32), "h_shift")])
    g.node.extend([
        helper.make_node("Shape", ["input"], ["h_shape"]),
        helper.make_node("Gather", ["h_shape", "h_index"], ["h_value"], axis=0),
        helper.make_node("Equal", ["h_value", "h_wrong"], ["h_is"]),
        helper.make_node("Add", [f"{out}__right", "h_shift"], ["h_shifted"]),
        helper.make_node("Where", ["h_is", "h_shifted", f"{out}__right"], [out]),
    ])
    if tile is not None:
        for prop in model.metadata_props:
            if prop.key == "tile":
                prop.value = tile
            if prop.key == "tile_overlap":
                prop.value = overlap
    del g.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


def _images(root, sizes):
    root.mkdir()
    g = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        img = (0.5 + 0.3 * np.sin(xx / (5 + i)) * np.cos(yy / 7) + 0.05 * g.standard_normal((h, w))).clip(0, 1)
        write_image(root / f"{i}.png", (img * 255).round().astype(np.uint8)[..., None])
    return root


def _parity(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _psnr(a, b):
    return float(10 * np.log10(1 / np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2)))


def test_a_file_wrong_only_at_the_tile_size_fails(art, tmp_path):
    import onnxruntime as ort

    bad = _wrong_at_height(art["fp32"], tmp_path / "bad.onnx", 32, tile="32")
    images = _images(tmp_path / "imgs", [(40, 48), (40, 48)])
    # independently: right on the whole image, wrong on a 32-high tile (ONNX Runtime vs the network itself)
    session = ort.InferenceSession(str(bad), providers=["CPUExecutionProvider"])
    for h, w in ((40, 48), (32, 32)):
        x = np.random.default_rng(1).random((1, 1, h, w), dtype=np.float32)
        with torch.no_grad():
            want = art["net"](torch.from_numpy(x)).numpy()
        got = session.run(None, {"input": x})[0]
        assert (_psnr(got, want) > 60) == (h != 32)

    out = tmp_path / "p.json"
    r = _parity(bad, "--reference", art["ckpt"], "--images", images, "--degrade", "noise:25", "--json", out)
    assert r.exit_code == 1, r.output
    data = json.loads(out.read_text())
    assert [i["tile"] for i in data["images"]] == [32, 32]  # the file's recommended tile, as restore-run
    assert not any(i["passed"] for i in data["images"]) and data["worst"]["psnr_vs_reference"] < 40
    assert "tiles 32 overlap 8" in data["tiling"]
    # the same file whole (--tile 0, what parity used to run) passes: the tile is what catches it
    r = _parity(bad, "--reference", art["ckpt"], "--images", images, "--degrade", "noise:25", "--tile", "0")
    assert r.exit_code == 0, r.output
    # the clean export on the same tiles passes, and the tiling's own cost is reported apart
    r = _parity(art["fp32"], "--reference", art["ckpt"], "--images", images, "--degrade", "noise:25", "--tile", "32",
                "--tile-overlap", "8", "--json", out)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["worst"]["psnr_vs_reference"] >= 60 and data["worst"]["psnr_tiled_vs_whole"] < 60
    assert "tiled vs PyTorch whole" in r.output


def test_every_verdict_is_per_image(art, tmp_path):
    bad = _wrong_at_height(art["fp32"], tmp_path / "bad.onnx", 40, shift=-1.0)  # black: a task drop
    images = _images(tmp_path / "imgs", [(40, 48), (24, 48), (24, 40)])  # only 0.png is 40 high
    out = tmp_path / "p.json"
    r = _parity(bad, "--reference", art["ckpt"], "--images", images, "--degrade", "noise:25", "--json", out,
                "--min-psnr", "0")  # the PSNR floor out of the way: the task drop alone decides
    assert r.exit_code == 1, r.output
    data = json.loads(out.read_text())
    rows = {i["name"]: i for i in data["images"]}
    assert [rows[n]["passed"] for n in ("0.png", "1.png", "2.png")] == [False, True, True]
    drops = [i["task_psnr_drop"] for i in data["images"]]
    assert drops[0] > 0.3 and data["worst"]["task_psnr_drop"] == pytest.approx(max(drops))
    assert data["mean"]["task_psnr_drop"] == pytest.approx(np.mean(drops))
    assert all("ssim_drop" in i for i in data["images"]) and data["worst"]["ssim_drop"] == max(
        i["ssim_drop"] for i in data["images"])
    assert "FAILED" in r.output and "worst" in r.output


def test_a_preset_or_checkpoint_is_its_cached_export_and_never_itself(art, tmp_path, monkeypatch):
    images = _images(tmp_path / "imgs", [(40, 48)])
    args = ("--reference", art["ckpt"], "--images", images, "--degrade", "noise:25")
    for backend in ("torch", "torch-cpu"):  # PyTorch against itself: refused, one line
        r = _parity(art["ckpt"], *args, "--backend", backend)
        assert r.exit_code == 2 and "itself" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = _parity(art["ckpt"], *args)  # no fast path on this machine (conftest): restore-run runs PyTorch
    assert r.exit_code == 2 and "itself" in r.output, r.output


def test_the_cached_export_is_what_is_checked(art, tmp_path, fast_path):
    import os

    images = _images(tmp_path / "imgs", [(40, 48)])
    out = tmp_path / "p.json"
    r = _parity(art["ckpt"], "--reference", art["ckpt"], "--images", images, "--degrade", "noise:25", "--json", out)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    path = data["artifact_file"]
    assert path.endswith(".onnx") and path.startswith(os.environ["RESTORE_CACHE_DIR"])  # restore-run's cache
    meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    assert meta["precision"] == "fp32" and data["backend"] == "ort-cpu" and data["arithmetic"] == "FP32"
    assert 60 <= data["worst"]["psnr_vs_reference"] < 200  # a real ONNX Runtime run, not PyTorch twice


def test_restore_run_verify_checks_tiles_of_the_users_images(art, tmp_path):
    from restormer_deploy.cli.run import app as run_app

    bad = _wrong_at_height(art["fp32"], tmp_path / "bad.onnx", 32, tile="32")
    images = _images(tmp_path / "imgs", [(40, 48), (40, 48)])  # 4 tiles of 32 each, every one wrong in bad.onnx

    def run(model, *extra):
        out = tmp_path / f"run{len(list(tmp_path.glob('run*.json')))}.json"
        r = runner.invoke(run_app, [str(model), str(images), "-o", str(tmp_path / "out"), "--overwrite", "--json", str(out),
                                    "--verify", "3", *extra], catch_exceptions=False)
        return r, (json.loads(out.read_text()) if out.exists() else None)

    r, data = run(bad, "--verify-reference", art["ckpt"])
    assert r.exit_code == 1 and "verified 3 of 8 tiles" in r.output, r.output
    assert data["verify"]["worst_psnr"] < 40 and not data["verify"]["passed"]
    r, data = run(art["fp32"], "--verify-reference", art["ckpt"], "--tile", "32", "--tile-overlap", "8")
    assert r.exit_code == 0, r.output
    assert data["verify"]["tiles"] == 3 and 60 <= data["verify"]["worst_psnr"] < 200 and data["verify"]["passed"]
    r, _ = run(art["ckpt"], "--backend", "torch")  # PyTorch is the reference itself: refused
    assert r.exit_code == 2 and "nothing to verify" in r.output
