"""restore-info: metadata, runtime compatibility, bad input."""

import json

import pytest
from typer.testing import CliRunner

from restormer_deploy.cli.info import app as info_app

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


def test_info_onnx(art, tmp_path):
    out = tmp_path / "i.json"
    r = runner.invoke(info_app, [str(art["fp16"]), "--json", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    for key in ("architecture", "preset", "task", "scale", "in_channels", "out_channels", "value_range", "pad_multiple",
                "precision", "tool_version", "source_sha256"):
        assert key in data
    assert data["precision"] == "fp16" and data["compatible"] and "ort-cpu" in data["backends"]
    assert "CPUExecutionProvider" in data["runtimes"]["onnxruntime_providers"]


def test_info_engine_without_tensorrt(tmp_path):
    (tmp_path / "m.engine").write_bytes(b"x")
    (tmp_path / "m.engine.json").write_text(json.dumps({"preset": "converse-dncnn", "in_channels": 1, "out_channels": 1,
                                                 "scale": 1, "pad_multiple": 1, "precision": "fp16",
                                                 "tensorrt_version": "10.3.0"}))
    r = runner.invoke(info_app, [str(tmp_path / "m.engine")], catch_exceptions=False)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert r.exit_code == 1 and "TensorRT is not installed" in r.output
        return
    pytest.skip("TensorRT installed: the no-TensorRT path is not testable here")


def test_info_bad_input(tmp_path):
    assert runner.invoke(info_app, ["nothing.bin"]).exit_code == 2
    (tmp_path / "bad.onnx").write_text("nope")
    assert runner.invoke(info_app, [str(tmp_path / "bad.onnx")]).exit_code == 2
    (tmp_path / "e.plan").write_bytes(b"x")
    assert runner.invoke(info_app, [str(tmp_path / "e.plan")]).exit_code == 2  # no sidecar
