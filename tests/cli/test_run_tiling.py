"""restore-run's tiling: the model's recommendation by default, --tile 0 for whole images, automatic tiles
(with a notice) when an image would not fit in memory, absurd tile/overlap pairs refused."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restormer_deploy.cli.eval import app as eval_app
from restormer_deploy.cli.run import app
from restormer_deploy.restormer import tiling
from restormer_deploy.restormer.imageio import read_image, write_image
from restormer_deploy.restormer.presets import load_model, resolve

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


def _run(*args, app=app):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _items(path):
    return json.loads(path.read_text())["images"]


def test_default_model_tiles_256_unless_tile_0(tmp_path, random_image):
    """24x304: two 256-wide tiles. The default equals an explicit --tile 256 --tile-overlap 32; --tile 0
    equals the network on the whole image (no padding needed: multiples of 8), computed here."""
    img = random_image((24, 304, 3))
    img[:, :48] = 0  # statistics that differ between the tiles and the whole image (attention normalises over its input)
    img[:, 256:] = 255 - img[:, 256:] // 4
    write_image(tmp_path / "p.png", img)
    common = ["--backend", "torch-cpu", "--threads", "1"]
    r = _run("default", tmp_path / "p.png", "-o", tmp_path / "d", "--json", tmp_path / "d.json", *common)
    assert r.exit_code == 0, r.output
    assert "tiles 256 overlap 32" in " ".join(r.output.split()) and "notice" not in r.output  # unwrapped
    (item,) = _items(tmp_path / "d.json")
    assert (item["tile"], item["tile_overlap"], item["tiling"]) == (256, 32, "model")
    r = _run("default", tmp_path / "p.png", "-o", tmp_path / "e", "--tile", "256", "--tile-overlap", "32", *common)
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(read_image(tmp_path / "d" / "p.png"), read_image(tmp_path / "e" / "p.png"))
    r = _run("default", tmp_path / "p.png", "-o", tmp_path / "w", "--tile", "0", "--json", tmp_path / "w.json", *common)
    assert r.exit_code == 0, r.output
    (item,) = _items(tmp_path / "w.json")
    assert item["tile"] is None and item["tiling"] == "whole"
    net, _ = load_model("default")
    with torch.inference_mode():
        ref = net(torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32) / 255))[0].numpy()
    ref = np.rint(np.clip(ref, 0, 1) * 255).transpose(1, 2, 0)
    whole = read_image(tmp_path / "w" / "p.png").astype(np.float64)
    assert np.abs(whole - ref).max() <= 1
    assert np.abs(read_image(tmp_path / "d" / "p.png").astype(np.float64) - ref).max() > 1  # tiled differs


@pytest.fixture(scope="module")
def dncnn(tmp_path_factory, small_checkpoint):
    """A small random Converse-DnCNN checkpoint: no recommended tile."""
    return str(small_checkpoint(tmp_path_factory.mktemp("m"), "converse-dncnn")[0])


def test_auto_tiling_when_the_image_does_not_fit(dncnn, tmp_path, random_image, monkeypatch):
    spec = resolve(dncnn)
    assert spec.tile is None
    write_image(tmp_path / "a.png", random_image((64, 80, 1)))
    write_image(tmp_path / "b.png", random_image((64, 80, 1), seed=1))
    budget = int(tiling.estimate_bytes(spec, 64, 80, 32) * tiling.SAFETY) + 1  # 32 fits, 64 does not
    assert tiling.estimate_bytes(spec, 64, 80, 64) * tiling.SAFETY > budget
    monkeypatch.setattr(tiling, "available_memory", lambda: budget)
    r = _run(dncnn, tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "o", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    notices = [line for line in r.output.splitlines() if line.startswith("notice:")]
    assert len(notices) == 1, r.output  # same size twice: one line
    assert "80x64 needs ~" in notices[0] and "tiling 32 overlap 8 (pass --tile to choose)" in notices[0]
    assert [(i["tile"], i["tile_overlap"], i["tiling"]) for i in _items(tmp_path / "r.json")] == [(32, 8, "auto")] * 2
    r = _run(dncnn, tmp_path / "a.png", "-o", tmp_path / "x", "--tile", "32", "--tile-overlap", "8")
    assert r.exit_code == 0 and "notice" not in r.output
    np.testing.assert_array_equal(read_image(tmp_path / "o" / "a.png"), read_image(tmp_path / "x" / "a.png"))
    # --tile 0: whole, with a warning only
    r = _run(dncnn, tmp_path / "a.png", "-o", tmp_path / "w", "--tile", "0", "--json", tmp_path / "w.json")
    assert r.exit_code == 0, r.output
    assert "warning: 80x64 needs ~" in r.output
    assert _items(tmp_path / "w.json")[0]["tile"] is None


def test_whole_image_when_it_fits(dncnn, tmp_path, random_image, monkeypatch):
    write_image(tmp_path / "a.png", random_image((64, 80, 1)))
    monkeypatch.setattr(tiling, "available_memory", lambda: 10**12)
    r = _run(dncnn, tmp_path / "a.png", "-o", tmp_path / "o", "--json", tmp_path / "r.json")
    assert r.exit_code == 0 and "notice" not in r.output and "warning" not in r.output
    assert _items(tmp_path / "r.json")[0]["tiling"] == "whole"


@pytest.mark.parametrize("args, words", [
    (["--tile", "20", "--tile-overlap", "16"], "more than half of tile 20"),
    (["--tile", "64", "--tile-overlap", "64"], "more than half"),
    (["--tile", "12"], "outside [16,"),
])
def test_absurd_pairs_refused(dncnn, tmp_path, random_image, args, words):
    write_image(tmp_path / "a.png", random_image((64, 80, 1)))
    r = _run(dncnn, tmp_path / "a.png", "-o", tmp_path / "o", *args)
    text = " ".join(r.output.split())  # unwrapped
    assert r.exit_code == 2 and "error:" in text and words in text, r.output
    assert "e.g. tile" in text  # a valid pair is suggested
    assert not (tmp_path / "o").exists()


def test_tiles_smaller_than_the_model_allows_refused(tmp_path, random_image, small_checkpoint):
    """A Restormer pads to multiples of 8: tiles from 32. Checked once the model is known, before any output."""
    ckpt = small_checkpoint(tmp_path, "restormer-denoise-color")[0]
    write_image(tmp_path / "a.png", random_image((40, 40, 3)))
    r = _run(ckpt, tmp_path / "a.png", "-o", tmp_path / "o", "--tile", "16", "--tile-overlap", "4")
    assert r.exit_code == 2 and "outside [32," in " ".join(r.output.split()), r.output
    assert not (tmp_path / "o").exists()
    r = _run("default", tmp_path / "a.png", "-o", tmp_path / "o", "--tile-overlap", "200", "--backend", "torch-cpu")
    assert r.exit_code == 2 and "with the model tile 256" in " ".join(r.output.split()), r.output
    assert not (tmp_path / "o").exists()


def test_eval_refuses_absurd_pairs_too(dncnn, tmp_path, random_image):
    data = tmp_path / "data"
    data.mkdir()
    write_image(data / "a.png", random_image((40, 40, 1)))
    r = _run(dncnn, "--data", data, "--degrade", "noise:25", "--tile", "20", "--tile-overlap", "16", app=eval_app)
    assert r.exit_code == 2 and "more than half" in " ".join(r.output.split()), r.output


def test_onnx_file_carries_the_recommendation(tmp_path, random_image):
    """A checkpoint recommending 48/8, exported: restore-run of the ONNX file tiles 48/8 without --tile."""
    from restormer_deploy.export.onnx_export import ExportOptions, export
    from restormer_deploy.restormer.checkpoints import save_checkpoint
    from restormer_deploy.restormer.presets import PRESETS, ModelSpec, build

    base = PRESETS["converse-dncnn"]
    spec = ModelSpec(**{**base.to_json(), "name": "mine", "weights": None, "tile": 48, "tile_overlap": 8,
                        "config": {**base.config, "num_blocks": 1, "num_features": 4}})
    ckpt = save_checkpoint(tmp_path / "mine.safetensors", build(spec), {"model": spec.to_json()})
    export(str(ckpt), tmp_path / "mine.onnx", options=ExportOptions(verify_size=24))
    write_image(tmp_path / "a.png", random_image((64, 80, 1)))
    r = _run(tmp_path / "mine.onnx", tmp_path / "a.png", "-o", tmp_path / "o", "--backend", "ort-cpu",
             "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert [(i["tile"], i["tile_overlap"], i["tiling"]) for i in _items(tmp_path / "r.json")] == [(48, 8, "model")]
