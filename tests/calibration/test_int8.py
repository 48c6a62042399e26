"""INT8 export: bad calibration input, the range cache, Q/DQ structure on a tiny model."""

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from restormer_deploy.calibration.data import CalibrationError, load_images, select_paths
from restormer_deploy.calibration.ranges import load_cache, save_cache
from restormer_deploy.cli.export import app
from restormer_deploy.restormer.imageio import write_image
from restormer_deploy.restormer.presets import PRESETS, build

TINY = {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1}


def _images(folder: Path, n: int, size: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    for i in range(n):
        write_image(folder / f"{i:02d}.png", g.integers(0, 256, (size, size + 8, 3), dtype=np.uint8))
    return folder


@pytest.mark.parametrize("case", ["missing", "empty", "unreadable", "too_small"])
def test_bad_calibration_folder_exits_2_and_writes_nothing(tmp_path, case):
    calib = tmp_path / "calib"
    if case == "empty":
        calib.mkdir()
    elif case == "unreadable":
        calib.mkdir()
        (calib / "a.png").write_bytes(b"not a png")
    elif case == "too_small":
        _images(calib, 2, size=16)
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["default", "--precision", "int8", "--calib-dir", str(calib),
                                      "--calib-size", "32", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert not out.exists() and not list(tmp_path.glob(".m.onnx*"))


def test_fewer_images_than_asked_warns_and_crops_are_seeded(tmp_path):
    calib = _images(tmp_path / "c", 3)
    spec = PRESETS["default"]
    with pytest.warns(UserWarning, match="asked for 5"):
        a = load_images(select_paths(calib, 5), spec, crop=32, seed=1, asked=5)
    b = load_images(select_paths(calib, 5), spec, crop=32, seed=1)
    c = load_images(select_paths(calib, 5), spec, crop=32, seed=2)
    assert len(a.inputs) == 3 and all(x[0].shape == (1, 3, 32, 32) for x in a.inputs)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a.inputs, b.inputs))
    assert not np.array_equal(a.inputs[0][0], c.inputs[0][0])
    with pytest.raises(CalibrationError):
        select_paths(tmp_path / "nope")


def test_range_cache_round_trip(tmp_path):
    path = tmp_path / "ranges.json"
    ranges = {"a": [-1.5, 2.25], "b/c": [0.0, 0.125]}
    settings = {"method": "minmax", "images": ["x.png"], "crop": 32, "degrade": "noise:25", "seed": 0}
    save_cache(path, "fp", settings, ranges)
    assert load_cache(path, "fp", settings) == (ranges, "")
    assert load_cache(path, "other", settings)[0] is None
    assert load_cache(path, "fp", {**settings, "seed": 1})[0] is None
    path.write_text("{")
    with pytest.raises(CalibrationError):
        load_cache(path, "fp", settings)


@pytest.mark.slow
@pytest.mark.parametrize("fallback", ["fp16", "fp32"])
def test_tiny_int8_structure_and_parity(tmp_path, fallback, int8_file):
    from restormer_deploy.calibration.int8 import Int8Options
    from restormer_deploy.export.ort_session import cpu_session

    spec = dataclasses.replace(PRESETS["default"], name="tiny", config={**PRESETS["default"].config, **TINY}, weights=None)
    torch.manual_seed(0)
    net = build(spec).eval()
    calib = _images(tmp_path / "c", 3)
    opts = Int8Options(calib_dir=calib, calib_count=3, calib_size=32, search_size=32, mac_size=32, fallback=fallback)
    model, report = int8_file(net, spec, opts)
    nodes = model.graph.node
    assert sum(n.op_type == "TransposedAttention" and n.domain == "restormer" for n in nodes) == 8
    inits = {i.name: i for i in model.graph.initializer}
    prod = {o: n for n in nodes for o in n.output}
    for n in nodes:
        if n.domain == "restormer":  # no DQ directly into a custom node
            assert all(prod.get(i) is None or prod[i].op_type != "DequantizeLinear" for i in n.input)
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = numpy_helper.to_array(inits[n.input[2]])
            if zp.ndim == 1:  # per-channel weight: int8, zero point 0, axis 0
                assert zp.dtype == np.int8 and not zp.any()
            elif fallback == "fp16":
                assert zp.dtype == np.int8 and int(zp) == 0
    first, last = report["layers"][0], report["layers"][-1]
    assert first["precision"] != "int8" and last["precision"] != "int8"
    assert report["int8_mac_share"] >= 0.8 and report["qdq"]["per_channel_dequantize"] > 0
    assert report["psnr"]["int8_vs_fp32"] > 30
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    y = cpu_session(model).run(None, {"input": x})[0]
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert 10 * np.log10(1 / np.mean((np.clip(y, 0, 1) - np.clip(ref, 0, 1)) ** 2)) > 30


@pytest.mark.slow
def test_fp32_file_lets_onnx_runtime_fuse_every_int8_conv(tmp_path, int8_file):
    """In the ONNX Runtime file every INT8 Conv becomes a QLinearConv: none is left as a float Conv
    on dequantized weights (that is slower than plain FP32)."""
    import onnxruntime as ort

    from restormer_deploy.calibration.int8 import Int8Options

    spec = dataclasses.replace(PRESETS["default"], name="tiny", config={**PRESETS["default"].config, **TINY}, weights=None)
    torch.manual_seed(0)
    net = build(spec).eval()
    opts = Int8Options(calib_dir=_images(tmp_path / "c", 2), calib_count=2, calib_size=32, search_size=32,
                       mac_size=32, fallback="fp32", sensitivity=False)
    model, report = int8_file(net, spec, opts)
    assert report["int8_mac_share"] >= 0.8
    reasons = " ".join(report["excluded"].values())
    assert "custom node" in reasons  # the q/k/v depthwise convs that feed TransposedAttention
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    fused = onnx.load(str(tmp_path / "opt.onnx"))
    produced_by = {o: n.op_type for n in fused.graph.node for o in n.output}
    float_on_dq = [n.name for n in fused.graph.node
                   if n.op_type in ("Conv", "FusedConv") and produced_by.get(n.input[1]) == "DequantizeLinear"]
    int8_convs = sum(l["nodes"] for l in report["layers"] if l["precision"] == "int8" and l["op"] == "Conv")
    assert int8_convs > 0 and sum(n.op_type == "QLinearConv" for n in fused.graph.node) == int8_convs
    assert float_on_dq == []


@pytest.mark.slow
def test_range_cache_is_written_only_after_the_self_check(tmp_path, monkeypatch):
    import restormer_deploy.export.onnx_export as onnx_export
    from restormer_deploy.calibration.int8 import Int8Options, Int8Quantizer
    from restormer_deploy.export.contract import PARITY_FLOORS

    spec = dataclasses.replace(PRESETS["default"], name="tiny", config={**PRESETS["default"].config, **TINY}, weights=None)
    torch.manual_seed(0)
    net = build(spec).eval()
    monkeypatch.setattr(onnx_export, "load_model", lambda *a, **k: (net, spec))
    cache, out = tmp_path / "ranges.json", tmp_path / "m.onnx"
    opts = Int8Options(calib_dir=_images(tmp_path / "c", 2), calib_count=2, calib_size=32, search_size=32, mac_size=32,
                       calib_cache=cache, sensitivity=False)
    options = onnx_export.ExportOptions(precision="int8")
    monkeypatch.setitem(PARITY_FLOORS, "int8", 1000.0)  # no INT8 file can pass
    with pytest.raises(onnx_export.ExportError, match="self-check"):
        onnx_export.export("tiny", out, options=options, quantizer=Int8Quantizer(opts))
    assert not out.exists() and not cache.exists()
    monkeypatch.setitem(PARITY_FLOORS, "int8", 20.0)
    onnx_export.export("tiny", out, options=options, quantizer=Int8Quantizer(opts))
    assert out.is_file() and cache.is_file()
