"""The plugin-free matmul lowering of Converse2D (export/lowering.py): no Converse2D / DFT left,
passes the full ONNX check, runs in ONNX Runtime with dynamic shapes and matches the PyTorch
reference (restormer_deploy.restormer.ops.converse2d)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from restormer_deploy.export.contract import DOMAIN
from restormer_deploy.export.functions import ONNX_OPSET, attach_functions, converse2d_function
from restormer_deploy.export.lowering import fft_flops, lower_converse2d_matmul, matmul_lowering_flops
from restormer_deploy.restormer.ops import PADDING_MODES, converse2d, transposed_attention

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
NP = {FLOAT: np.float32, FLOAT16: np.float16}
IR_VERSION = 10  # onnx 1.23 writes IR 14; onnxruntime 1.31 reads up to 13
PLUGIN = {"plugin_namespace": "restormer", "plugin_version": "1"}


def _vi(name, dtype, dims):
    return helper.make_tensor_value_info(name, dtype, dims)


def _converse_node(x, kernel, lam, out, scale, padding, mode, name=""):
    return helper.make_node(
        "Converse2D", [x, kernel, lam], [out], name=name, domain=DOMAIN,
        scale=scale, padding=padding, padding_mode=mode, **PLUGIN,
    )


def _model(nodes, inputs, outputs):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = IR_VERSION
    return attach_functions(model)


def _converse_inputs(dtype=FLOAT):
    return [
        _vi("x", dtype, ["B", "C", "H", "W"]),
        _vi("kernel", dtype, ["KB", "C", "kh", "kw"]),
        _vi("lam", dtype, ["LB", "C", 1, 1]),
    ]


def converse_model(scale, padding, mode, dtype=FLOAT):
    node = _converse_node("x", "kernel", "lam", "out", scale, padding, mode, name="converse")
    return _model([node], _converse_inputs(dtype), [_vi("out", dtype, ["B", "C", "Hs", "Ws"])])


def _session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _all_nodes(g)


def _op_types(model):
    """(domain, op_type) of every node in the graph, its subgraphs and the model's functions."""
    found = [(n.domain, n.op_type) for n in _all_nodes(model.graph)]
    for fn in model.functions:
        found += [(n.domain, n.op_type) for n in fn.node]
    return found


def _lower(model):
    lowered = lower_converse2d_matmul(model)
    onnx.checker.check_model(lowered, full_check=True)
    ops = _op_types(lowered)
    assert not any(op == "Converse2D" or op == "DFT" for _, op in ops), "Converse2D / DFT left"
    assert ("", "MatMul") in ops
    assert not any(f.name == "Converse2D" for f in lowered.functions)
    names = [n.name for n in _all_nodes(lowered.graph) if n.name]
    assert len(names) == len(set(names)), "node names must stay unique"
    return lowered


def _inputs(gen, b, c, h, w, kb, ksize, lb):
    """[0, 1] image, normalised positive kernel, λ in [0.005, 0.105]; FP32-representable."""
    x = torch.rand(b, c, h, w, generator=gen, dtype=torch.float64)
    kernel = torch.rand(kb, c, *ksize, generator=gen, dtype=torch.float64)
    kernel = kernel / kernel.sum((-2, -1), keepdim=True)
    lam = torch.rand(lb, c, 1, 1, generator=gen, dtype=torch.float64) * 0.1 + 0.005
    return tuple(t.float().double() for t in (x, kernel, lam))


def _feed(x, kernel, lam, dtype=FLOAT):
    return {"x": x.numpy().astype(NP[dtype]), "kernel": kernel.numpy().astype(NP[dtype]), "lam": lam.numpy().astype(NP[dtype])}


# Sizes through one session: odd×even with a shared odd kernel and per-channel λ; even×odd with
# per-sample even kernels and per-sample λ; odd×odd with a shared non-square kernel.
CASES = [
    (2, 3, 7, 8, 1, (5, 5), 1),
    (2, 3, 10, 9, 2, (4, 4), 2),
    (1, 2, 9, 11, 1, (3, 4), 1),
]


@pytest.mark.parametrize("method", ["matmul", "dft"])
@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("scale", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 2])
def test_matmul_lowering_fp32(scale, padding, mode, method):
    """Both plugin-free lowerings (dft: ONNX DFT nodes, TensorRT 11.2+) against the float64 reference."""
    gen = torch.Generator().manual_seed(100 * scale + 10 * padding + PADDING_MODES.index(mode))
    sess = _session((_lower if method == "matmul" else _lower_dft)(converse_model(scale, padding, mode)))
    worst = 0.0
    for b, c, h, w, kb, ksize, lb in CASES:
        x, kernel, lam = _inputs(gen, b, c, h, w, kb, ksize, lb)
        ref = converse2d(x, kernel, lam, scale, padding, mode).numpy()
        (out,) = sess.run(None, _feed(x, kernel, lam))
        assert out.shape == (b, c, h * scale, w * scale) and out.dtype == np.float32
        worst = max(worst, float(np.abs(out - ref).max()))
    print(f"{method} lowering fp32 s={scale} p={padding} {mode}: max abs err {worst:.2e}")
    assert worst <= 1e-4


def test_matmul_lowering_larger_grids():
    """Converse-DnCNN's layer (k=7, padding 6, circular) and a badly factoring grid at s=2, 4."""
    gen = torch.Generator().manual_seed(11)
    for (scale, padding, mode, shape) in [
        (1, 6, "circular", (1, 4, 64, 64, 1, (7, 7), 1)),
        (2, 3, "reflect", (1, 2, 67, 50, 1, (5, 5), 1)),
        (4, 1, "replicate", (1, 2, 23, 30, 1, (7, 7), 1)),
    ]:
        sess = _session(_lower(converse_model(scale, padding, mode)))
        x, kernel, lam = _inputs(gen, *shape)
        ref = converse2d(x, kernel, lam, scale, padding, mode).numpy()
        (out,) = sess.run(None, _feed(x, kernel, lam))
        err = float(np.abs(out - ref).max())
        print(f"matmul lowering fp32 {shape[2]}x{shape[3]} s={scale} p={padding} {mode}: max abs err {err:.2e}")
        assert err <= 1e-4


def test_matmul_lowering_fp16():
    """FP16 model: the solve runs in FP32, the output is cast back to FP16."""
    gen = torch.Generator().manual_seed(5)
    sess = _session(_lower(converse_model(2, 1, "reflect", FLOAT16)))
    for b, c, h, w, kb, ksize, lb in CASES[:2]:
        feed = _feed(*_inputs(gen, b, c, h, w, kb, ksize, lb), FLOAT16)
        (out,) = sess.run(None, feed)
        assert out.dtype == np.float16 and out.shape == (b, c, 2 * h, 2 * w)
        ref = converse2d(*(torch.from_numpy(a.astype(np.float64)) for a in feed.values()), 2, 1, "reflect").numpy()
        err = float(np.abs(out.astype(np.float64) - ref).max() / np.abs(ref).max())
        assert err <= 2e-3  # FP16 output rounding


def test_two_nodes_and_attention_kept():
    """Two Converse2D nodes (different scale / mode) and a TransposedAttention: both Converse2D
    are lowered, the attention node and its function stay, the result matches."""
    heads = 2
    nodes = [
        _converse_node("x", "kernel", "lam", "y1", 2, 1, "replicate", name="converse"),
        _converse_node("y1", "kernel2", "lam", "y2", 1, 2, "constant", name="converse_1"),
        helper.make_node(
            "TransposedAttention", ["y2", "y2", "y2", "temperature"], ["out"], name="attn", domain=DOMAIN, heads=heads
        ),
    ]
    inputs = _converse_inputs() + [_vi("kernel2", FLOAT, ["KB", "C", 3, 3]), _vi("temperature", FLOAT, [heads, 1, 1])]
    model = _model(nodes, inputs, [_vi("out", FLOAT, ["B", "C", "Hs", "Ws"])])
    model.graph.value_info.append(_vi("y1", FLOAT, ["B", "C", "H2", "W2"]))
    model.metadata_props.add(key="note", value="kept")
    lowered = _lower(model)
    ops = _op_types(lowered)
    assert ops.count((DOMAIN, "TransposedAttention")) == 1
    assert [f.name for f in lowered.functions] == ["TransposedAttention"]
    assert any(o.domain == DOMAIN for o in lowered.opset_import)
    assert {p.key: p.value for p in lowered.metadata_props} == {"note": "kept"}
    assert [n.name for n in lowered.graph.node if n.domain == DOMAIN] == ["attn"]

    gen = torch.Generator().manual_seed(3)
    sess = _session(lowered)
    worst = 0.0
    for b, h, w, kb in [(1, 6, 7, 1), (2, 9, 8, 2)]:
        x, kernel, lam = _inputs(gen, b, 4, h, w, kb, (5, 5), 1)
        kernel2 = _inputs(gen, 1, 4, 3, 3, kb, (3, 3), 1)[1]
        temperature = torch.rand(heads, 1, 1, generator=gen, dtype=torch.float32).double() + 0.5
        feed = {
            **_feed(x, kernel, lam),
            "kernel2": kernel2.numpy().astype(np.float32),
            "temperature": temperature.numpy().astype(np.float32),
        }
        (out,) = sess.run(None, feed)
        y = converse2d(converse2d(x, kernel, lam, 2, 1, "replicate"), kernel2, lam, 1, 2, "constant")
        ref = transposed_attention(y, y, y, temperature, heads).numpy()
        worst = max(worst, float(np.abs(out - ref).max()))
    print(f"two Converse2D + TransposedAttention: max abs err {worst:.2e}")
    assert worst <= 1e-4


def test_only_converse_lowered_drops_domain():
    model = _lower(converse_model(3, 1, "circular"))
    assert not model.functions
    assert not any(o.domain == DOMAIN for o in model.opset_import)
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)


def test_converse_in_subgraph():
    """A Converse2D inside an If branch (outer-scope inputs) is lowered too."""
    then_graph = helper.make_graph(
        [_converse_node("x", "kernel", "lam", "then_out", 2, 1, "circular", name="inner")],
        "then", [], [_vi("then_out", FLOAT, ["B", "C", "Hs", "Ws"])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "scales"], ["else_out"], name="resize", mode="nearest")],
        "else", [], [_vi("else_out", FLOAT, ["B", "C", "Hs", "Ws"])],
    )
    nodes = [
        helper.make_node("Constant", [], ["scales"], name="scales", value=helper.make_tensor("s", FLOAT, [4], [1, 1, 2, 2])),
        helper.make_node("If", ["flag"], ["out"], name="branch", then_branch=then_graph, else_branch=else_graph),
    ]
    inputs = _converse_inputs() + [_vi("flag", TensorProto.BOOL, [])]
    lowered = _lower(_model(nodes, inputs, [_vi("out", FLOAT, ["B", "C", "Hs", "Ws"])]))
    gen = torch.Generator().manual_seed(9)
    x, kernel, lam = _inputs(gen, 1, 2, 6, 5, 1, (3, 3), 1)
    (out,) = _session(lowered).run(None, {**_feed(x, kernel, lam), "flag": np.array(True)})
    assert np.abs(out - converse2d(x, kernel, lam, 2, 1, "circular").numpy()).max() <= 1e-4


def test_converse_in_other_function():
    """A Converse2D inside another model-local function's body is lowered in place."""
    body = [
        _converse_node("x", "kernel", "lam", "c", 2, 1, "reflect", name="c2d"),
        helper.make_node("Relu", ["c"], ["o"], name="relu"),
    ]
    opsets = [helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid(DOMAIN, 1)]
    wrap = helper.make_function("custom", "Wrap", ["x", "kernel", "lam"], ["o"], body, opset_imports=opsets)
    node = helper.make_node("Wrap", ["x", "kernel", "lam"], ["out"], domain="custom", name="wrap")
    graph = helper.make_graph([node], "g", _converse_inputs(), [_vi("out", FLOAT, ["B", "C", "Hs", "Ws"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid("custom", 1)])
    model.ir_version = IR_VERSION
    model.functions.extend([wrap, converse2d_function()])
    model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    lowered = _lower(model)
    assert [f.name for f in lowered.functions] == ["Wrap"]
    assert {o.domain for o in lowered.opset_import} == {"", "custom"}
    gen = torch.Generator().manual_seed(4)
    x, kernel, lam = _inputs(gen, 1, 2, 6, 7, 1, (3, 3), 1)
    (out,) = _session(lowered).run(None, _feed(x, kernel, lam))
    assert np.abs(out - converse2d(x, kernel, lam, 2, 1, "reflect").clamp(min=0).numpy()).max() <= 1e-4


def test_refuses_old_opset():
    node = _converse_node("x", "kernel", "lam", "out", 1, 1, "circular")
    graph = helper.make_graph([node], "g", _converse_inputs(), [_vi("out", FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)])
    with pytest.raises(ValueError, match="opset"):
        lower_converse2d_matmul(model)


def test_flop_estimates():
    mm = matmul_lowering_flops(64, 64, 64, 7, 1, 6)
    fft = fft_flops(64, 64, 64, 7, 1, 6)
    assert mm["total"] == sum(v for k, v in mm.items() if k != "total")
    assert 0 < fft["total"] < mm["total"] < 20 * fft["total"]
    assert fft_flops(64, 64, 64, 7, 1, 6, onesided=False)["forward"] > fft["forward"]
    # the polyphase inverse grows like s² (not s³) in the matmul lowering
    ratio = matmul_lowering_flops(8, 32, 32, 5, 4, 0)["inverse"] / matmul_lowering_flops(8, 32, 32, 5, 1, 0)["inverse"]
    assert ratio == 16
    print(f"Converse-DnCNN layer: matmul {mm['total'] / 1e6:.0f} MFLOP vs FFT {fft['total'] / 1e6:.0f} MFLOP")


def _lower_dft(model):
    from restormer_deploy.export.lowering import lower_converse2d

    lowered = lower_converse2d(model, "dft")
    onnx.checker.check_model(lowered, full_check=True)
    ops = _op_types(lowered)
    assert not any(op == "Converse2D" for _, op in ops) and ("", "DFT") in ops
    assert not any(f.name == "Converse2D" for f in lowered.functions)
    return lowered


def test_dft_lowering_fp16_keeps_the_solve_in_fp32():
    gen = torch.Generator().manual_seed(6)
    lowered = _lower_dft(converse_model(2, 1, "reflect", FLOAT16))
    sess = _session(lowered)
    feed = _feed(*_inputs(gen, *CASES[0]), FLOAT16)
    (out,) = sess.run(None, feed)
    assert out.dtype == np.float16
    ref = converse2d(*(torch.from_numpy(a.astype(np.float64)) for a in feed.values()), 2, 1, "reflect").numpy()
    assert float(np.abs(out.astype(np.float64) - ref).max() / np.abs(ref).max()) <= 2e-3
    inferred = onnx.shape_inference.infer_shapes(lowered)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    dft_inputs = [n.input[0] for n in lowered.graph.node if n.op_type == "DFT"]
    assert dft_inputs and all(types.get(i) == FLOAT for i in dft_inputs)  # the FFT plugin's FP16 needs 2^n sizes
