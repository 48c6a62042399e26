"""restore-quantize on an FP32 file as restore-export writes it (a tiny Restormer: custom attention
nodes, their functions, metadata): exit codes, what it prints, what it writes."""

import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from restormer_deploy.cli.quantize import app
from restormer_deploy.restormer.imageio import write_image
from restormer_deploy.restormer.presets import PRESETS, build

TINY = {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1}
FAST = ["--calib-count", "3", "--calib-size", "32", "--search-size", "32", "--verify-count", "2", "--verify-size", "0"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(the FP32 file of a tiny default-architecture model, a folder of 6 images)."""
    from restormer_deploy.export.stages import ExportOptions, finish, prepare, trace

    root = tmp_path_factory.mktemp("quantize")
    spec = dataclasses.replace(PRESETS["default"], name="default", config={**PRESETS["default"].config, **TINY})
    torch.manual_seed(0)
    net = build(spec).eval()
    path = root / "tiny_fp32.onnx"
    onnx.save(finish(prepare(trace(net, spec)), spec, ExportOptions()), str(path))
    folder = root / "images"
    folder.mkdir()
    g = np.random.default_rng(0)
    for i in range(6):
        write_image(folder / f"{i:02d}.png", g.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    return path, folder


@pytest.mark.slow  # the tiny model's trace and search (about 35 s in all); tests/calibration/test_onnx_in.py is the fast twin
def test_quantizes_an_exported_file_and_reports_the_held_out_check(tmp_path, exported, monkeypatch):
    import restormer_deploy.calibration.int8 as int8

    measured = {"size": 32, "threads": 1, "fp32_ms": 10.0, "int8_ms": 12.5, "speedup": 0.8, "slower": True}
    monkeypatch.setattr(int8, "cpu_speed", lambda *a, **k: measured)  # the timing itself is not under test
    src, images = exported
    out, report = tmp_path / "q.onnx", tmp_path / "q.json"
    result = CliRunner().invoke(app, [str(src), "--calib-dir", str(images), *FAST, "--out", str(out), "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "held-out image" in result.output and "04.png" in result.output
    assert "0.80x the speed of FP32" in result.output  # the user is told INT8 is slower here
    data = json.loads(report.read_text())
    assert data["split"]["held_out"] == ["03.png", "04.png"] and data["verify"]["passed"]
    assert data["int8"]["layers_int8"] > 0 and data["int8"]["cpu_speed"] == measured
    q = onnx.load(str(out))
    props = {p.key: p.value for p in q.metadata_props}
    assert props["precision"] == "int8" and props["preset"] == "default"
    ops = [n.op_type for n in q.graph.node]
    assert "QuantizeLinear" in ops and sum(n.op_type == "TransposedAttention" for n in q.graph.node) == 8


@pytest.mark.slow
def test_failed_verification_exits_1_and_writes_nothing(tmp_path, exported, monkeypatch):
    import restormer_deploy.calibration.onnx_in as onnx_in

    monkeypatch.setattr(onnx_in, "HELD_OUT_FLOOR_DB", 1000.0)
    src, images = exported
    out = tmp_path / "q.onnx"
    result = CliRunner().invoke(app, [str(src), "--calib-dir", str(images), *FAST, "--no-speed-check", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "verification failed" in result.output and not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing_input", "missing_calib", "bad_suffix", "all_calibrated", "fp16_file"])
def test_bad_input_exits_2_with_one_line(tmp_path, exported, case):
    src, images = exported
    args = {"src": str(src), "calib": str(images), "out": str(tmp_path / "q.onnx"), "extra": []}
    if case == "missing_input":
        args["src"] = str(tmp_path / "nope.onnx")
    elif case == "missing_calib":
        args["calib"] = str(tmp_path / "nope")
    elif case == "bad_suffix":
        args["out"] = str(tmp_path / "q.bin")
    elif case == "all_calibrated":
        args["extra"] = ["--calib-count", "6"]
    elif case == "fp16_file":
        model = onnx.load(str(src))
        for p in model.metadata_props:
            if p.key == "precision":
                p.value = "fp16"
        args["src"] = str(tmp_path / "fp16.onnx")
        onnx.save(model, args["src"])
    result = CliRunner().invoke(app, [args["src"], "--calib-dir", args["calib"], *FAST, *args["extra"],
                                      "--no-speed-check", "--out", args["out"]])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    assert not list(tmp_path.glob("q.*"))


def test_restore_export_points_an_onnx_file_to_restore_quantize(tmp_path):
    from restormer_deploy.cli.export import app as export_app

    src = tmp_path / "m.onnx"
    src.write_bytes(b"")
    result = CliRunner().invoke(export_app, [str(src), "--precision", "int8", "--calib-dir", str(tmp_path),
                                             "--out", str(tmp_path / "q.onnx")])
    assert result.exit_code == 2 and "restore-quantize" in result.output, result.output
