"""FP16 arithmetic emulation and measured FP32 islands (export/islands.py), against numpy float16."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from restormer_deploy.export.fp16 import convert_to_fp16
from restormer_deploy.export.islands import (activation_ranges, emulate_fp16, fp16_with_islands, image_independent,
                                             initial_islands, name_nodes, run_emulated)


def _chain(gain: float) -> onnx.ModelProto:
    """x -> x*gain -> relu -> *gain -> *1e-6 -> Conv(1x1, weight 1): overflows FP16 when gain² > 65504."""
    nodes = [helper.make_node("Mul", ["x", "a"], ["y1"], name="mul1"), helper.make_node("Relu", ["y1"], ["y1r"], name="relu"),
             helper.make_node("Mul", ["y1r", "a"], ["y2"], name="mul2"), helper.make_node("Mul", ["y2", "b"], ["y3"], name="mul3"),
             helper.make_node("Conv", ["y3", "w"], ["out"], name="conv")]
    inits = [numpy_helper.from_array(np.array(gain, np.float32), "a"), numpy_helper.from_array(np.array(1e-6, np.float32), "b"),
             numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 4, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _numpy_fp16(x: np.ndarray, gain: float) -> np.ndarray:
    """The same chain in numpy float16, rounding after every operation (the independent reference)."""
    with np.errstate(over="ignore"):
        h = x.astype(np.float16) * np.float16(gain)
        h = np.maximum(h, np.float16(0)) * np.float16(gain)
        return (h * np.float16(1e-6)).astype(np.float32)


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("gain", [100.0, 1000.0])
def test_emulated_fp16_matches_numpy_float16_where_ort_cpu_does_not(gain):
    x = np.full((1, 1, 4, 4), 1.001, np.float32)
    fp16 = convert_to_fp16(_chain(gain))
    emulated = run_emulated(emulate_fp16(fp16), [{"x": x}])[0]
    want = _numpy_fp16(x, gain)
    np.testing.assert_allclose(emulated, want, rtol=2e-3)
    if gain == 1000.0:  # 1e6 overflows binary16: numpy gives inf; ONNX Runtime's CPU provider hides it
        assert np.isinf(want).all() and np.isinf(emulated).all()
        assert np.isfinite(_ort(fp16, x)).all()


def test_islands_keep_large_activations_fp32_and_pass():
    model = _chain(1000.0)
    name_nodes(model)
    x = np.full((1, 1, 4, 4), 1.001, np.float32)
    ranges = activation_ranges(model, [{"x": x}])
    assert ranges["y2"] == pytest.approx(1.001e6, rel=1e-3)
    islands = initial_islands(model, ranges)
    assert {"mul2", "mul3"} <= set(islands) and "conv" not in islands  # |x| > 512 at their input or output
    ref = _ort(model, x)  # FP32
    result = fp16_with_islands(model, [{"x": x}], [ref],
                               convert=lambda m, isl: convert_to_fp16(m, islands=isl), floor=45)
    assert result.psnr_fp16_arithmetic >= 45
    types = {o: t for o, t in ((vi.name, vi.type.tensor_type.elem_type) for vi in result.model.graph.value_info)}
    assert types.get("y2") == TensorProto.FLOAT


def test_localiser_adds_the_diverging_node_when_thresholds_miss_it():
    model = _chain(1000.0)
    name_nodes(model)
    x = np.full((1, 1, 4, 4), 1.001, np.float32)
    ref = _ort(model, x)
    result = fp16_with_islands(model, [{"x": x}], [ref], convert=lambda m, isl: convert_to_fp16(m, islands=isl),
                               floor=45, data_max=1e9)  # no magnitude islands: only the localiser can fix it
    assert result.added and result.added[0] in ("mul1", "relu", "mul2")
    assert result.psnr_fp16_arithmetic >= 45


def test_shape_arithmetic_is_image_independent():
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"), helper.make_node("Cast", ["s"], ["sf"], to=1, name="cast"),
             helper.make_node("Mul", ["sf", "k"], ["sk"], name="scale"), helper.make_node("Relu", ["x"], ["out"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.array(3.0, np.float32), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert image_independent(model) == {"shape", "cast", "scale"}
