"""Words a newcomer reads (issue 19): rates that do not round to 0.0, mean SSIM, missing inputs,
what a checkpoint is, init_weights=PRESET, where official weights come from, 16-bit colour PNG,
colour photos through a grey model."""

import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from restormer_deploy.restormer.checkpoints import save_checkpoint
from restormer_deploy.restormer.imageio import read_image, write_image
from restormer_deploy.restormer.metrics import task_scores

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
WIDE = {"COLUMNS": "200"}  # rich tables unwrapped


def _flat(text: str) -> str:
    return " ".join(text.split())


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def models(tmp_path_factory, small_checkpoint):
    root = tmp_path_factory.mktemp("models")
    return {"grey": str(small_checkpoint(root, "converse-dncnn")[0]),
            "rgb": str(small_checkpoint(root, "restormer-denoise-color")[0])}


def _run(*args, env=WIDE):
    from restormer_deploy.cli.run import app

    return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


# --------------------------------------------------------------------------- restore-bench: MP/s


def test_bench_rates_keep_three_significant_figures():
    from restormer_deploy.engines.bench import BenchRow, markdown

    # a slow model: 42.7 s for a 128x128 image (the converse-dncnn with function lowering)
    seconds, pixels = 42.7, 128 * 128
    row = BenchRow("m.onnx", "ort-cpu", "fp32", "128x128", 1, seconds * 1000, seconds * 1000, 1 / seconds,
                   pixels / 1e6 / seconds, 10.0, 1.0, 1.0 / seconds)
    cells = markdown([row]).splitlines()[2].split(" | ")
    assert cells[7] == "0.0234" and cells[8] == "0.000384" and cells[11].startswith("0.0234"), cells  # img/s, MP/s, GFLOP/s
    assert row.to_json()["mpix_per_s"] == pixels / 1e6 / seconds  # --json: unrounded


# --------------------------------------------------------------------------- restore-run: mean SSIM


def test_run_gt_mean_row_has_ssim(models, tmp_path, random_image):
    (tmp_path / "gt").mkdir()
    for i in range(2):
        write_image(tmp_path / "gt" / f"a{i}.png", random_image((24, 24, 1), seed=i))
        write_image(tmp_path / f"a{i}.png", random_image((24, 24, 1), seed=10 + i))
    r = _run(models["grey"], tmp_path / "a0.png", tmp_path / "a1.png", "-o", tmp_path / "out", "--gt", tmp_path / "gt",
             "--backend", "torch-cpu", "--json", tmp_path / "j.json")
    assert r.exit_code == 0, r.output
    items = json.loads((tmp_path / "j.json").read_text())["images"]
    scores = [task_scores(read_image(i["output"]), read_image(tmp_path / "gt" / Path(i["input"]).name)) for i in items]
    mean_psnr, mean_ssim = np.mean([p for p, _ in scores]), np.mean([s for _, s in scores])
    mean_row = next(line for line in r.output.splitlines() if re.match(r"^\W*mean\b", line))
    assert f"{mean_psnr:.2f}" in mean_row and f"{mean_ssim:.4f}" in mean_row, mean_row


# --------------------------------------------------------------------------- restore-run: missing inputs


def test_run_nothing_exists_is_one_line_before_the_model(tmp_path):
    # the model does not exist either: the inputs are checked first, and nothing is created
    r = _run("no-such-model", f"{tmp_path / 'photos'}/", "-o", tmp_path / "out")
    assert r.exit_code == 2
    assert _errors(r.output) == [f"error: no such folder: {tmp_path / 'photos'}/"], r.output
    assert not (tmp_path / "out").exists()
    r = _run("no-such-model", tmp_path / "nowhere", tmp_path / "gone.png", "-o", tmp_path / "out")
    assert r.exit_code == 2 and len(_errors(r.output)) == 1, r.output
    assert "no such file or folder: " in r.output and "no such file: " in r.output and "unknown model" not in r.output


def test_run_a_missing_input_among_others_fails_as_itself(models, tmp_path, random_image):
    write_image(tmp_path / "good.png", random_image((16, 16, 1)))
    r = _run(models["grey"], tmp_path / "good.png", tmp_path / "gone.png", tmp_path / "nowhere", "-o", tmp_path / "out",
             "--backend", "torch-cpu", "--json", tmp_path / "j.json")
    assert r.exit_code == 2
    assert "1 image(s) and 2 missing" in r.output, r.output
    items = {Path(i["input"]).name: i for i in json.loads((tmp_path / "j.json").read_text())["images"]}
    assert items["good.png"]["status"] == "ok"
    assert items["gone.png"]["error"] == "no such file" and items["nowhere"]["error"] == "no such file or folder"
    assert "not an image file type" not in r.output


# --------------------------------------------------------------------------- restore-info: what a checkpoint is


def test_info_names_a_user_checkpoint_by_its_training(tmp_path):
    from restormer_deploy.cli.info import app
    from restormer_deploy.restormer.presets import ASSETS, PRESETS, build

    spec = PRESETS["default"]
    assert "trained by this project" in spec.description  # what the config copies into every checkpoint
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "best.safetensors", build(spec),
                           {"model": {**spec.to_json(), "weights": None}, "iteration": 20,
                            "val": {"val_psnr": 24.3141, "val_ssim": 0.61234}})
    r = runner.invoke(app, [str(ckpt), "--json", str(tmp_path / "i.json")], env=WIDE)
    description = json.loads((tmp_path / "i.json").read_text())["description"]
    assert "trained by this project" not in description and "trained by this project" not in r.output
    assert description.startswith("checkpoint of preset default") and "iteration 20" in description
    assert "24.31 dB" in description and "0.6123" in description
    shipped = ASSETS / "default.safetensors"
    if shipped.is_file():  # the shipped weights keep the preset's words
        runner.invoke(app, [str(shipped), "--json", str(tmp_path / "s.json")])
        assert json.loads((tmp_path / "s.json").read_text())["description"] == spec.description


# --------------------------------------------------------------------------- restore-train: init_weights=PRESET


def test_init_weights_takes_a_preset_name(tmp_path):
    from restormer_deploy.restormer.presets import ASSETS
    from restormer_deploy.restormer.train.config import ConfigError, load_config

    if not (ASSETS / "default.safetensors").is_file():
        pytest.skip("the default model's shipped weights are not installed")
    data = f"data.clean=[{tmp_path}]"
    cfg = load_config(None, [data, "init_weights=default"])
    assert Path(cfg.init_weights) == ASSETS / "default.safetensors"
    from restormer_deploy.restormer.train.model import build_model, model_spec

    build_model(model_spec(cfg), cfg.init_weights)  # the shipped weights fit the preset's model
    with pytest.raises(ConfigError, match=r"init_weights=defualt: not a preset name.*presets with weights: default"):
        load_config(None, [data, "init_weights=defualt"])
    with pytest.raises(ConfigError, match=r"restormer-derain.*github.com/swz30/Restormer/releases"):
        load_config(None, [data, "init_weights=restormer-derain"])


def test_train_cli_refuses_an_unknown_init_weights_in_one_line(tmp_path):
    from restormer_deploy.cli.train import app

    (tmp_path / "c.yaml").write_text(f"init_weights: nosuchpreset\ndata: {{clean: [{tmp_path}]}}\n")
    r = runner.invoke(app, ["--config", str(tmp_path / "c.yaml"), "--print-config"])
    assert r.exit_code == 2 and len(_errors(r.output)) == 1 and "nosuchpreset" in r.output, r.output


# --------------------------------------------------------------------------- missing official weights


def test_missing_official_weights_say_where_they_come_from(tmp_path, monkeypatch):
    from restormer_deploy.cli.eval import app

    monkeypatch.setenv("RESTORMER_SHARED", str(tmp_path / "shared"))
    (tmp_path / "data").mkdir()
    write_image(tmp_path / "data" / "a.png", np.zeros((16, 16, 1), np.uint8))
    r = runner.invoke(app, ["converse-dncnn", "--data", str(tmp_path / "data")])
    assert r.exit_code == 2 and len(_errors(r.output)) == 1, r.output
    line = _flat(r.output)
    assert "https://github.com/cszn/ConverseNet" in line and "converse_dncnn.pth" in line
    assert str(tmp_path / "shared" / "weights" / "conversenet") in line and "RESTORMER_SHARED" in line and "--weights" in line
    r = runner.invoke(app, ["restormer-denoise-color", "--data", str(tmp_path / "data"), "--degrade", "noise:25"])
    assert r.exit_code == 2 and "https://github.com/swz30/Restormer/releases" in _flat(r.output) and "--weights" in r.output


# --------------------------------------------------------------------------- 16-bit colour: help and behaviour agree


def _png_rgb16(path: Path, img: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot): IHDR bit depth 16, colour type 2."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_help_on_16_bit_colour_matches_what_restore_run_does(models, tmp_path, random_image):
    from restormer_deploy.cli.run import app

    help_text = _flat(runner.invoke(app, ["--help"], terminal_width=200).output)
    assert "8 or 16 bit, grey or RGB" not in help_text
    assert "a 16-bit colour PNG is refused" in help_text and "grey or RGB TIFF" in help_text
    img = random_image((12, 14, 3), np.uint16)
    _png_rgb16(tmp_path / "c16.png", img)
    tifffile.imwrite(tmp_path / "c16.tif", img, photometric="rgb")
    r = _run(models["rgb"], tmp_path / "c16.png", tmp_path / "c16.tif", "-o", tmp_path / "out", "--backend", "torch-cpu",
             "--json", tmp_path / "j.json")
    assert r.exit_code == 2  # one image failed
    items = {Path(i["input"]).name: i for i in json.loads((tmp_path / "j.json").read_text())["images"]}
    assert items["c16.png"]["status"] == "error" and "TIFF" in items["c16.png"]["error"]
    assert not (tmp_path / "out" / "c16.png").exists()
    assert items["c16.tif"]["status"] == "ok"
    out = tifffile.imread(tmp_path / "out" / "c16.tif")
    assert out.dtype == np.uint16 and out.shape == img.shape


# --------------------------------------------------------------------------- grey model, colour photo


def test_colour_through_a_grey_model_is_noted(models, tmp_path, random_image):
    write_image(tmp_path / "colour.png", random_image((16, 16, 3)))
    write_image(tmp_path / "grey.png", random_image((16, 16, 1)))
    r = _run(models["grey"], tmp_path / "colour.png", tmp_path / "grey.png", "-o", tmp_path / "out",
             "--backend", "torch-cpu", "--json", tmp_path / "j.json")
    assert r.exit_code == 0, r.output
    items = {Path(i["input"]).name: i for i in json.loads((tmp_path / "j.json").read_text())["images"]}
    assert items["colour.png"]["note"] == "grey model: colour input converted to luma (BT.601)"
    assert "note" not in items["grey.png"]
    row = next(line for line in r.output.splitlines() if "colour.png" in line)
    assert "colour input converted to luma (BT.601)" in row
    assert read_image(tmp_path / "out" / "colour.png").shape[2] == 1
