"""The ONNX reference functions of the custom ops (export/functions.py) run in ONNX Runtime and
match the PyTorch reference (restormer_deploy.restormer.ops), with dynamic shapes, in FP32 and FP16."""

import numpy as np
import onnx
import onnx.inliner
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from restormer_deploy.export.functions import (
    DOMAIN,
    ONNX_OPSET,
    OPSET_VERSION,
    attach_functions,
    converse2d_function,
    transposed_attention_function,
)
from restormer_deploy.restormer.ops import PADDING_MODES, converse2d, transposed_attention

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
NP = {FLOAT: np.float32, FLOAT16: np.float16}
IR_VERSION = 10  # onnx 1.23 writes IR 14; onnxruntime 1.31 reads up to 13


def _model(nodes, inputs, outputs, opset=ONNX_OPSET):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    return model


def _vi(name, dtype, dims):
    return helper.make_tensor_value_info(name, dtype, dims)


def _session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def attention_model(heads, dtype=FLOAT, temp_dtype=None):
    node = helper.make_node(
        "TransposedAttention", ["q", "k", "v", "temperature"], ["out"], domain=DOMAIN, heads=heads
    )
    dims = ["B", "C", "H", "W"]
    inputs = [_vi(n, dtype, dims) for n in "qkv"] + [_vi("temperature", temp_dtype or dtype, [heads, 1, 1])]
    return attach_functions(_model([node], inputs, [_vi("out", dtype, dims)]))


def converse_model(scale, padding, mode, dtype=FLOAT, plugin_attrs=True):
    extra = {"plugin_namespace": "restormer", "plugin_version": "1"} if plugin_attrs else {}
    node = helper.make_node(
        "Converse2D",
        ["x", "kernel", "lam"],
        ["out"],
        domain=DOMAIN,
        scale=scale,
        padding=padding,
        padding_mode=mode,
        **extra,
    )
    inputs = [
        _vi("x", dtype, ["B", "C", "H", "W"]),
        _vi("kernel", dtype, ["KB", "C", "kh", "kw"]),
        _vi("lam", dtype, ["LB", "C", 1, 1]),
    ]
    return attach_functions(_model([node], inputs, [_vi("out", dtype, ["B", "C", "Hs", "Ws"])]))


def _custom_nodes(graph):
    found = []
    for node in graph.node:
        if node.domain == DOMAIN:
            found.append(node.op_type)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found += _custom_nodes(attr.g)
    return found


# ---------------------------------------------------------------- TransposedAttention


def _attention_inputs(gen, b, c, h, w, heads):
    q, k, v = (torch.randn(b, c, h, w, generator=gen, dtype=torch.float64) for _ in range(3))
    temperature = torch.rand(heads, 1, 1, generator=gen, dtype=torch.float64) * 2 + 0.5
    return q, k, v, temperature


def _feed_attention(q, k, v, t, dtype=FLOAT, temp_dtype=None):
    return {
        "q": q.numpy().astype(NP[dtype]),
        "k": k.numpy().astype(NP[dtype]),
        "v": v.numpy().astype(NP[dtype]),
        "temperature": t.numpy().astype(NP[temp_dtype or dtype]),
    }


@pytest.mark.parametrize("heads,channels", [(1, 4), (2, 6), (4, 8)])
def test_attention_fp32_dynamic_shapes(heads, channels):
    gen = torch.Generator().manual_seed(heads)
    sess = _session(attention_model(heads))
    worst = 0.0
    for b, h, w in [(2, 5, 7), (1, 8, 4)]:  # two sizes through the same session
        q, k, v, t = _attention_inputs(gen, b, channels, h, w, heads)
        q[0, 0] = 0  # a zero row of q (one channel of one head): must not give NaN
        k[-1, -1] = 0
        q, k, v, t = (x.float().double() for x in (q, k, v, t))  # exactly representable in FP32
        ref = transposed_attention(q, k, v, t, heads).numpy()
        (out,) = sess.run(None, _feed_attention(q, k, v, t))
        assert out.shape == ref.shape and out.dtype == np.float32
        assert np.isfinite(out).all()
        worst = max(worst, float(np.abs(out - ref).max()))
    print(f"TransposedAttention fp32 heads={heads} C={channels}: max abs err {worst:.2e}")
    assert worst <= 1e-5


@pytest.mark.parametrize("temp_dtype", [FLOAT16, FLOAT])
def test_attention_fp16(temp_dtype):
    heads, c = 2, 8
    gen = torch.Generator().manual_seed(7)
    sess = _session(attention_model(heads, FLOAT16, temp_dtype))
    for b, h, w in [(1, 6, 5), (2, 4, 4)]:
        q, k, v, t = _attention_inputs(gen, b, c, h, w, heads)
        q[0, 1] = 0
        (out,) = sess.run(None, _feed_attention(q, k, v, t, FLOAT16, temp_dtype))
        assert out.dtype == np.float16 and np.isfinite(out).all()
        out = out.astype(np.float64)
        # Same (FP16-rounded) inputs in float64: only the FP16 rounding of the output remains.
        rounded = [torch.from_numpy(a.astype(np.float64)) for a in _feed_attention(q, k, v, t, FLOAT16, temp_dtype).values()]
        ref16 = transposed_attention(*rounded, heads).numpy()
        scale = np.abs(ref16).max()
        assert np.abs(out - ref16).max() <= 2**-10 * scale  # ≤ 1 ulp at the largest magnitude
        # Against the FP32 reference on the unrounded inputs: input rounding (2⁻¹¹ relative) too.
        ref32 = transposed_attention(q.float(), k.float(), v.float(), t.float(), heads).double().numpy()
        err = np.abs(out - ref32).max()
        print(f"TransposedAttention fp16 (temperature {NP[temp_dtype].__name__}): max abs err {err:.2e} vs fp32 ref")
        assert err <= 4e-3 * scale


# ---------------------------------------------------------------- Converse2D


def _converse_inputs(gen, b, c, h, w, kb, ksize, lb):
    x = torch.rand(b, c, h, w, generator=gen, dtype=torch.float64)
    kernel = torch.rand(kb, c, ksize, ksize, generator=gen, dtype=torch.float64)
    kernel = kernel / kernel.sum((-2, -1), keepdim=True)
    lam = torch.rand(lb, c, 1, 1, generator=gen, dtype=torch.float64) * 0.1 + 0.005
    return x, kernel, lam


def _feed_converse(x, kernel, lam, dtype=FLOAT):
    return {"x": x.numpy().astype(NP[dtype]), "kernel": kernel.numpy().astype(NP[dtype]), "lam": lam.numpy().astype(NP[dtype])}


# Two calls through one session: odd×even size with a shared odd kernel and per-channel λ, then
# even×odd size with a per-sample even kernel and per-sample λ.
CASES = [(2, 3, 7, 8, 1, 5, 1), (2, 3, 10, 9, 2, 4, 2)]


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("scale", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 2])
def test_converse2d_fp32(scale, padding, mode):
    gen = torch.Generator().manual_seed(100 * scale + 10 * padding + PADDING_MODES.index(mode))
    sess = _session(converse_model(scale, padding, mode))
    worst = 0.0
    for b, c, h, w, kb, ksize, lb in CASES:
        x, kernel, lam = (t.float().double() for t in _converse_inputs(gen, b, c, h, w, kb, ksize, lb))
        ref = converse2d(x, kernel, lam, scale, padding, mode).numpy()
        (out,) = sess.run(None, _feed_converse(x, kernel, lam))
        assert out.shape == (b, c, h * scale, w * scale) and out.dtype == np.float32
        worst = max(worst, float(np.abs(out - ref).max() / np.abs(ref).max()))
    print(f"Converse2D fp32 s={scale} p={padding} {mode}: max abs err / max|ref| {worst:.2e}")
    assert worst <= 1e-4


def test_converse2d_fp32_badly_factoring_grid():
    """Grid 146×112 = (67+2·3)·2 × (50+2·3)·2: ORT's DFT on non-power-of-two lengths is a little
    less precise in FP32 (about 1e-5 relative here), still well within 1e-4."""
    gen = torch.Generator().manual_seed(11)
    sess = _session(converse_model(2, 3, "reflect"))
    x, kernel, lam = (t.float().double() for t in _converse_inputs(gen, 1, 2, 67, 50, 1, 5, 1))
    ref = converse2d(x, kernel, lam, 2, 3, "reflect").numpy()
    (out,) = sess.run(None, _feed_converse(x, kernel, lam))
    err = float(np.abs(out - ref).max() / np.abs(ref).max())
    print(f"Converse2D fp32 67x50 s=2 p=3 reflect: max abs err / max|ref| {err:.2e}")
    assert err <= 1e-4


@pytest.mark.parametrize("scale,padding,mode", [(2, 1, "reflect"), (1, 0, "circular")])
def test_converse2d_fp16(scale, padding, mode):
    gen = torch.Generator().manual_seed(5)
    sess = _session(converse_model(scale, padding, mode, FLOAT16, plugin_attrs=False))
    for b, c, h, w, kb, ksize, lb in CASES:
        feed = _feed_converse(*_converse_inputs(gen, b, c, h, w, kb, ksize, lb), FLOAT16)
        (out,) = sess.run(None, feed)
        assert out.dtype == np.float16 and out.shape == (b, c, h * scale, w * scale)
        assert np.isfinite(out).all()
        ref = converse2d(*(torch.from_numpy(a.astype(np.float64)) for a in feed.values()), scale, padding, mode)
        ref = ref.numpy()
        err = float(np.abs(out.astype(np.float64) - ref).max() / np.abs(ref).max())
        print(f"Converse2D fp16 s={scale} p={padding} {mode}: max abs err / max|ref| {err:.2e}")
        assert err <= 2e-3  # FP16 output rounding (2⁻¹¹) plus the FP32 solve


def test_models_pass_full_check():
    for model in (converse_model(2, 1, "replicate"), converse_model(3, 0, "constant", FLOAT16), attention_model(2)):
        onnx.checker.check_model(model, full_check=True)


def test_function_protos():
    for fn, attrs in (
        (transposed_attention_function(), {"heads"}),
        (converse2d_function(), {"scale", "padding", "padding_mode", "plugin_namespace", "plugin_version",
                                 "constant_kernel"}),
    ):
        assert fn.domain == DOMAIN
        assert {(o.domain, o.version) for o in fn.opset_import} >= {("", ONNX_OPSET)}
        assert set(fn.attribute) | {a.name for a in fn.attribute_proto} == attrs


def test_attach_functions_only_used_and_idempotent():
    model = attention_model(2)
    assert [f.name for f in model.functions] == ["TransposedAttention"]
    attach_functions(model)
    assert [f.name for f in model.functions] == ["TransposedAttention"]
    assert [(o.domain, o.version) for o in model.opset_import].count((DOMAIN, OPSET_VERSION)) == 1


def test_attach_functions_refuses_old_opset():
    node = helper.make_node("Converse2D", ["x", "kernel", "lam"], ["out"], domain=DOMAIN, scale=2)
    inputs = [_vi(n, FLOAT, None) for n in ("x", "kernel", "lam")]
    model = _model([node], inputs, [_vi("out", FLOAT, None)], opset=18)
    with pytest.raises(ValueError, match=r"(?i)opset.*DFT|DFT.*opset"):
        attach_functions(model)


def test_inlined_model_matches():
    """--inline: no custom nodes left, same result in ORT."""
    scale, padding, mode, heads = 2, 1, "reflect", 3
    nodes = [
        helper.make_node(
            "Converse2D", ["x", "kernel", "lam"], ["y"], domain=DOMAIN,
            scale=scale, padding=padding, padding_mode=mode, plugin_namespace="restormer", plugin_version="1",
        ),
        helper.make_node("TransposedAttention", ["y", "y", "y", "temperature"], ["out"], domain=DOMAIN, heads=heads),
    ]
    inputs = [
        _vi("x", FLOAT, ["B", 6, "H", "W"]),
        _vi("kernel", FLOAT, [1, 6, 3, 3]),
        _vi("lam", FLOAT, [1, 6, 1, 1]),
        _vi("temperature", FLOAT, [heads, 1, 1]),
    ]
    model = attach_functions(_model(nodes, inputs, [_vi("out", FLOAT, ["B", 6, "Hs", "Ws"])]))
    inlined = onnx.inliner.inline_local_functions(model)
    assert _custom_nodes(inlined.graph) == []
    onnx.checker.check_model(inlined, full_check=True)
    gen = torch.Generator().manual_seed(3)
    with_functions, plain = _session(model), _session(inlined)
    for b, h, w in [(1, 6, 7), (2, 9, 8)]:
        x, kernel, lam = (t.float().double() for t in _converse_inputs(gen, b, 6, h, w, 1, 3, 1))
        temperature = torch.rand(heads, 1, 1, generator=gen, dtype=torch.float32).double() + 0.5
        feed = {**_feed_converse(x, kernel, lam), "temperature": temperature.numpy().astype(np.float32)}
        (a,) = with_functions.run(None, feed)
        (c,) = plain.run(None, feed)
        np.testing.assert_allclose(c, a, rtol=0, atol=1e-6)
        y = converse2d(x, kernel, lam, scale, padding, mode)
        ref = transposed_attention(y, y, y, temperature, heads).numpy()
        assert np.abs(c - ref).max() <= 1e-4 * np.abs(ref).max()


def test_mark_constant_kernels():
    """constant_kernel=1 exactly where the kernel is an initializer or a Constant (the plugin then caches
    its spectrum); the function ignores the attribute (same output)."""
    from restormer_deploy.export.functions import mark_constant_kernels

    nodes = [helper.make_node("Constant", [], ["kc"], value=onnx.numpy_helper.from_array(np.full((1, 2, 3, 3), 1 / 9, np.float32))),
             helper.make_node("Converse2D", ["x", "k", "lam"], ["a"], domain=DOMAIN, name="init"),
             helper.make_node("Converse2D", ["a", "kc", "lam"], ["b"], domain=DOMAIN, name="const"),
             helper.make_node("Converse2D", ["b", "kx", "lam"], ["out"], domain=DOMAIN, name="runtime")]
    inputs = [_vi("x", FLOAT, [1, 2, 8, 8]), _vi("kx", FLOAT, [1, 2, 3, 3])]
    model = _model(nodes, inputs, [_vi("out", FLOAT, [1, 2, 8, 8])])
    model.graph.initializer.extend([onnx.numpy_helper.from_array(np.full((1, 2, 3, 3), 1 / 9, np.float32), "k"),
                                    onnx.numpy_helper.from_array(np.full((1, 2, 1, 1), 0.01, np.float32), "lam")])
    attach_functions(model)
    assert mark_constant_kernels(model) == 2
    flags = {n.name: [a.i for a in n.attribute if a.name == "constant_kernel"] for n in model.graph.node if n.name}
    assert flags == {"init": [1], "const": [1], "runtime": [0]}
    assert mark_constant_kernels(model) == 2  # idempotent: one attribute per node
    assert all(len(v) == 1 for v in flags.values())
    feeds = {"x": np.random.default_rng(0).random((1, 2, 8, 8), np.float32), "kx": np.full((1, 2, 3, 3), 1 / 9, np.float32)}
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    ref = torch.from_numpy(feeds["x"]).double()
    kernel, lam = torch.full((1, 2, 3, 3), 1 / 9, dtype=torch.float64), torch.full((1, 2, 1, 1), 0.01, dtype=torch.float64)
    for _ in range(3):
        ref = converse2d(ref, kernel, lam, 1, 0, "circular")
    assert np.abs(got - ref.numpy()).max() < 1e-4
