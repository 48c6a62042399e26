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


def test_info_says_what_the_file_is_for(art, tmp_path):
    import onnx

    out = tmp_path / "i.json"
    r = runner.invoke(info_app, [str(art["fp16"]), "--json", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    record = json.loads(out.read_text())["record"]
    meta = {p.key: p.value for p in onnx.load(str(art["fp16"]), load_external_data=False).metadata_props}
    assert record["precision"] == "fp16" and record["fp32_islands"]["count"] == len(json.loads(meta["fp32_islands"]))
    assert record["arithmetic_on_ort_cpu"] == "FP16 weights and activations stored, arithmetic in FP32"
    assert record["tiling"].startswith("whole images") and "target_runtime" in record and "verification" in record
    assert "fp32 islands:" in r.output and "target runtime:" in r.output


@pytest.mark.parametrize("zero_point, runtime", [("uint8", "ONNX Runtime"), ("int8", "TensorRT")])
def test_an_int8_files_target_is_read_from_its_activations(tmp_path, zero_point, runtime):
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from restormer_deploy.engines.info import target_runtime

    zp = numpy_helper.from_array(np.array(128 if zero_point == "uint8" else 0, getattr(np, zero_point)), "zp")
    scale = numpy_helper.from_array(np.array(0.01, np.float32), "s")
    graph = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
                               helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])], [zp, scale])
    path = tmp_path / "q.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert target_runtime(str(path), "onnx", {}, "int8").startswith(runtime)
    assert target_runtime(str(path), "engine", {}, "int8").startswith("TensorRT")
