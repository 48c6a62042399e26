"""The ONNX Runtime CPU file computes the same with and without VNNI: without it, MLAS's U8S8 kernels
(vpmaddubsw) add two uint8 x int8 products in int16 with saturation, so every weight that meets
another in such a pair must keep 255 * (|w0| + |w1|) <= 32767 (7 bits); depthwise convs and the
TensorRT file keep 8 bits."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from restormer_deploy.calibration.qdq import find_layers, insert_qdq

INT16_MAX = 32767
AMAX = {"input": 1.0, "a": 4.0, "b": 30.0, "output": 30.0}


def graph() -> onnx.ModelProto:
    g = np.random.default_rng(0)
    w_dense = g.standard_normal((16, 16, 1, 1)).astype(np.float32)
    w_dense[:, :2] = 3.0  # two neighbouring input channels with the largest weight of every output channel
    inits = [numpy_helper.from_array(w_dense, "w_dense"), numpy_helper.from_array(np.zeros(16, np.float32), "b_dense"),
             numpy_helper.from_array(g.standard_normal((16, 16, 3, 3)).astype(np.float32), "w_dense3"),
             numpy_helper.from_array(np.zeros(16, np.float32), "b_dense3"),
             numpy_helper.from_array(g.standard_normal((16, 1, 3, 3)).astype(np.float32), "w_dw"),
             numpy_helper.from_array(np.zeros(16, np.float32), "b_dw")]
    nodes = [helper.make_node("Conv", ["input", "w_dense", "b_dense"], ["a"], name="dense"),
             helper.make_node("Conv", ["a", "w_dense3", "b_dense3"], ["b"], name="dense3", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["b", "w_dw", "b_dw"], ["output"], name="dw", group=16, pads=[1, 1, 1, 1])]
    dims = [1, 16, 8, 8]
    model = helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
                                                [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)], inits),
                              opset_imports=[helper.make_opsetid("", 20)])
    return model


def int8_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    inits = {i.name: i for i in model.graph.initializer}
    return {n.name.split("__")[0]: numpy_helper.to_array(inits[n.input[0]]).astype(np.int32)
            for n in model.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
            and inits[n.input[0]].data_type == TensorProto.INT8 and len(inits[n.input[0]].dims) == 4}


def worst_pair(q: np.ndarray) -> int:
    """The largest |uint8 x w0 + uint8 x w1| over neighbouring input channels (MLAS's pairs)."""
    a = np.abs(q.reshape(q.shape[0], q.shape[1], -1))
    return int(255 * (a[:, 0::2] + a[:, 1::2]).max())


def test_ort_file_weights_never_overflow_an_int16_pair_and_trt_file_keeps_8_bits():
    model = graph()
    layers = find_layers(model)
    amax = AMAX
    ort = int8_weights(insert_qdq(model, layers, amax, int32_bias=True, uint8_activations=True, saturation_safe=True))
    trt = int8_weights(insert_qdq(model, layers, amax))
    assert set(ort) == set(trt) == {"dense", "dense3", "dw"}
    assert worst_pair(trt["dense"]) > INT16_MAX            # 8 bits would saturate without VNNI
    assert worst_pair(ort["dense"]) <= INT16_MAX and np.abs(ort["dense"]).max() == 63
    assert np.abs(ort["dw"]).max() == 127 and np.abs(trt["dw"]).max() == 127  # depthwise: no pairs, 8 bits


def _u8s8_accumulators(model: onnx.ModelProto, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exact int32, without-VNNI) accumulators of the dense 1x1 conv: MLAS adds raw uint8 x int8 products
    of neighbouring input channels in int16 with saturation, then removes the zero point's share."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q_in = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    scale, zero = float(inits[q_in.input[1]]), int(inits[q_in.input[2]])
    a = np.clip(np.round(x / scale) + zero, 0, 255).astype(np.int64)[0].reshape(16, -1)  # (C, pixels)
    w = int8_weights(model)["dense"].reshape(16, 16).astype(np.int64)                    # (O, C)
    exact = w @ (a - zero)
    pairs = w[:, 0::2, None] * a[None, 0::2] + w[:, 1::2, None] * a[None, 1::2]          # (O, C/2, pixels)
    emulated = np.clip(pairs, -32768, 32767).sum(axis=1) - zero * w.sum(axis=1, keepdims=True)
    return exact, emulated


def test_without_vnni_the_ort_file_computes_exactly_and_8_bits_would_not():
    model = graph()
    layers = find_layers(model)
    amax = AMAX
    x = np.random.default_rng(1).random((1, 16, 8, 8), dtype=np.float32)  # positive: raw uint8 above 128
    safe = insert_qdq(model, layers, amax, int32_bias=True, uint8_activations=True, saturation_safe=True)
    unsafe = insert_qdq(model, layers, amax, int32_bias=True, uint8_activations=True)
    exact, emulated = _u8s8_accumulators(safe, x)
    assert np.array_equal(exact, emulated)
    exact, emulated = _u8s8_accumulators(unsafe, x)
    assert (exact != emulated).mean() > 0.5


def test_emulated_cpu_without_vnni_gives_the_same_output_for_the_ort_file_only():
    """``calibration.u8s8`` (the diagnosis of issue 30) on both files, checked against the numpy
    accumulators above for its exact mode."""
    import onnxruntime as ort

    from restormer_deploy.calibration.u8s8 import emulate_without_vnni

    model = graph()
    layers = find_layers(model)
    x = np.random.default_rng(1).random((1, 16, 8, 8), dtype=np.float32)

    def run(m, level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        return ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]

    for safe in (True, False):
        q = insert_qdq(model, layers, AMAX, int32_bias=True, uint8_activations=True, saturation_safe=safe)
        exact_model, count = emulate_without_vnni(q, saturate=False)
        assert count == 2  # the two dense convs; the depthwise one is left alone
        exact, without = run(exact_model), run(emulate_without_vnni(q)[0])
        peak = np.abs(exact).max()
        assert np.abs(exact - run(q)).max() < 0.01 * peak  # the rewrite is exact (up to a rounding flip)
        if safe:
            assert np.array_equal(exact, without)
        else:  # 8-bit weights: the saturated sums change the output
            assert np.abs(exact - without).max() > 0.1 * peak
