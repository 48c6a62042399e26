"""ONNX in, ONNX out (``restormer_deploy.calibration.onnx_in``) on a small hand-written FP32 graph with
this project's metadata: no torch in the graph's making, and the path runs with torch unimportable."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from restormer_deploy.calibration.data import CalibrationError, pad_to_multiple
from restormer_deploy.calibration.onnx_in import HELD_OUT_FLOOR_DB, MAX_TASK_DROP_DB, VerifyError, quantize_file
from restormer_deploy.calibration.options import Int8Options
from restormer_deploy.calibration.speed import slower_note
from restormer_deploy.restormer.imageio import write_image

FAST = {"calib_count": 3, "calib_size": 32, "search_size": 32, "mac_size": 32, "degrade": "noise:25", "speed_check": False}


def fp32_file(path: Path, dim: int = 8, seed: int = 0, **meta) -> Path:
    """input -> conv -> conv/relu -> 1x1 conv (+ residual) -> conv, + input: near identity, so INT8
    noise stays well below the 35 dB floor; metadata as restore-export writes it."""
    g = np.random.default_rng(seed)

    def w(name, *shape, scale=0.3):
        return numpy_helper.from_array((g.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [w("w0", dim, 3, 3, 3), w("b0", dim), w("w1", dim, dim, 3, 3, scale=0.1), w("b1", dim),
             w("w2", dim, dim, 1, 1), w("b2", dim), w("w3", 3, dim, 3, 3, scale=0.05), w("b3", 3, scale=0.01)]
    n = helper.make_node
    nodes = [n("Conv", ["input", "w0", "b0"], ["c0"], name="conv_first", pads=[1, 1, 1, 1]),
             n("Conv", ["c0", "w1", "b1"], ["c1"], name="body_conv/a", pads=[1, 1, 1, 1]),
             n("Relu", ["c1"], ["r1"], name="relu"),
             n("Conv", ["r1", "w2", "b2"], ["c2"], name="body_pw"),
             n("Add", ["c2", "c0"], ["s"], name="res"),
             n("Conv", ["s", "w3", "b3"], ["c3"], name="conv_last", pads=[1, 1, 1, 1]),
             n("Add", ["c3", "input"], ["output"], name="out_add")]
    dims = ["N", 3, "H", "W"]
    graph = helper.make_graph(nodes, "fp32", [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    props = {"architecture": "restormer", "preset": "handmade", "task": "denoise", "scale": "1", "in_channels": "3",
             "out_channels": "3", "value_range": "0,1", "pad_multiple": "8", "precision": "fp32",
             "tool_version": "0.0.0", "source_sha256": "abc", **meta}
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def images(folder: Path, n: int, size: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(1)
    for i in range(n):
        write_image(folder / f"{i:02d}.png", g.integers(0, 256, (size, size + 8, 3), dtype=np.uint8))
    return folder


def test_quantized_file_is_int8_verified_per_held_out_image_and_keeps_the_metadata(tmp_path):
    src, out, cache = fp32_file(tmp_path / "m.onnx"), tmp_path / "q.onnx", tmp_path / "ranges.json"
    calib = images(tmp_path / "c", 6)
    result = quantize_file(src, out, Int8Options(calib_dir=calib, calib_cache=cache, **FAST), verify_count=2,
                           verify_size=None, log=lambda *_: None)
    split = result["split"]
    assert split["calibration"] == ["00.png", "01.png", "02.png"] and split["held_out"] == ["03.png", "04.png"]
    assert out.is_file() and cache.is_file() and result["verify"]["passed"]
    q = onnx.load(str(out))
    props = {p.key: p.value for p in q.metadata_props}
    assert props["precision"] == "int8" and props["preset"] == "handmade" and props["source_sha256"] == "abc"
    assert props["int8_fallback"] == "fp32" and len(props["int8_source_sha256"]) == 64
    # the middle two convs are INT8 (first and last stay FP32): int8 weights, per output channel
    int8_weights = [i for i in q.graph.initializer if i.data_type == TensorProto.INT8 and len(i.dims) == 4]
    assert sorted(tuple(i.dims) for i in int8_weights) == [(8, 8, 1, 1), (8, 8, 3, 3)]
    # independently of the code: both files in ONNX Runtime on a held-out-sized input
    x = np.random.default_rng(5).random((1, 3, 40, 48), dtype=np.float32)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert not np.array_equal(got, ref)
    assert 10 * np.log10(1 / np.mean((np.clip(got, 0, 1) - np.clip(ref, 0, 1)) ** 2)) > HELD_OUT_FLOOR_DB
    rows = result["verify"]["images"]
    assert [r["name"] for r in rows] == ["03.png", "04.png"] and all(r["psnr_vs_fp32"] >= HELD_OUT_FLOOR_DB for r in rows)


def test_failed_verification_writes_neither_file_nor_cache(tmp_path, monkeypatch):
    import restormer_deploy.calibration.onnx_in as onnx_in

    monkeypatch.setattr(onnx_in, "HELD_OUT_FLOOR_DB", 1000.0)  # no INT8 file can pass
    src, out, cache = fp32_file(tmp_path / "m.onnx"), tmp_path / "q.onnx", tmp_path / "ranges.json"
    with pytest.raises(VerifyError, match="held-out"):
        quantize_file(src, out, Int8Options(calib_dir=images(tmp_path / "c", 5), calib_cache=cache, **FAST),
                      verify_count=1, verify_size=None, log=lambda *_: None)
    assert not out.exists() and not cache.exists() and not list(tmp_path.glob(".q.onnx*"))


@pytest.mark.parametrize("case", ["int8_input", "fp16_metadata", "no_held_out", "not_onnx", "overlap"])
def test_bad_input_is_refused_before_any_work(tmp_path, case):
    src, out = fp32_file(tmp_path / "m.onnx"), tmp_path / "q.onnx"
    calib = images(tmp_path / "c", 4)
    kwargs = {"verify_count": 1, "verify_size": None}
    if case == "int8_input":
        quantize_file(src, tmp_path / "first.onnx", Int8Options(calib_dir=calib, **FAST), **kwargs, log=lambda *_: None)
        src = tmp_path / "first.onnx"
    elif case == "fp16_metadata":
        src = fp32_file(tmp_path / "h.onnx", precision="fp16")
    elif case == "no_held_out":
        calib = images(tmp_path / "c3", 3)
    elif case == "not_onnx":
        src.write_bytes(b"\x00garbage")
    elif case == "overlap":
        kwargs["verify_dir"] = calib
    with pytest.raises(CalibrationError):
        quantize_file(src, out, Int8Options(calib_dir=calib, **FAST), **kwargs, log=lambda *_: None)
    assert not out.exists()


def test_quantize_runs_with_torch_unimportable(tmp_path):
    """The whole ONNX-in path, CLI included, in a process where ``import torch`` fails."""
    src, out, report = fp32_file(tmp_path / "m.onnx"), tmp_path / "q.onnx", tmp_path / "q.json"
    calib = images(tmp_path / "c", 5)
    code = (
        "import sys\nsys.modules['torch'] = None\n"
        "from restormer_deploy.cli.quantize import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n"
        "    assert sys.modules.get('torch') is None\n    raise\n"
    )
    args = [str(src), "--calib-dir", str(calib), "--calib-count", "3", "--calib-size", "32", "--search-size", "32",
            "--verify-count", "2", "--verify-size", "0", "--no-speed-check", "--out", str(out), "--json", str(report)]
    done = subprocess.run([sys.executable, "-c", code, *args, "--degrade", "noise:25"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.is_file() and json.loads(report.read_text())["verify"]["passed"]
    # without torch the preset registry is unknown, so the degradation must be given: one line, exit 2
    again = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--degrade" in again.stderr and "Traceback" not in again.stderr


def test_floors_agree_with_the_contract():
    from restormer_deploy.export.contract import MAX_TASK_DROP_DB as contract_drop
    from restormer_deploy.export.contract import PARITY_FLOORS

    assert HELD_OUT_FLOOR_DB == PARITY_FLOORS["int8"] and MAX_TASK_DROP_DB == contract_drop


@pytest.mark.parametrize("shape", [(1, 3, 17, 30), (1, 6, 8, 8), (1, 3, 3, 5)])
def test_numpy_padding_matches_the_model_padding(shape):
    import torch

    from restormer_deploy.restormer.restormer_arch import pad_to_multiple as torch_pad

    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    ref, _ = torch_pad(torch.from_numpy(x), 8)
    assert np.array_equal(pad_to_multiple(x, 8), ref.numpy())


def test_slower_note_only_when_int8_is_slower():
    assert slower_note(None) is None
    assert slower_note({"speedup": 1.4, "slower": False, "size": 256}) is None
    note = slower_note({"speedup": 0.88, "slower": True, "size": 256})
    assert "0.88x" in note and "FP32" in note
