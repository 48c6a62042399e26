"""ONNX reference functions for the two custom operators (domain ``restormer``, version 1).

Export writes ``TransposedAttention`` and ``Converse2D`` as custom-domain nodes; each model also
carries a model-local ONNX function (FunctionProto) of the same name and domain holding the
reference decomposition in standard ops (default-domain opset 20, for ``DFT``), so ONNX Runtime
runs the file as is and ``onnx.inliner.inline_local_functions`` turns it into a plain-ops model
(the ``--inline`` export option). The math is the contract in ``docs/OPERATORS.md`` and
``restormer/ops.py``.

Both functions compute in float32 whatever the input dtype (FP16 inputs are cast in and the output
is cast back to the dtype of ``q`` / ``x``), so FP16 models keep the normalisation, softmax and the
spectral solve in FP32.

Converse2D is evaluated as in ``restormer_deploy.restormer.ops.converse2d``:
``F(X) = tile_s(F(y)) ⊙ G`` with
``G = F(box) + conj(FK) ⊙ tile_s((1 − mean_s(FK ⊙ F(box))) / (mean_s|FK|² + λ))``,
with full complex DFTs (``DFT``, complex values in a trailing dimension of size 2) for the image
and in-graph cos/sin DFT matrices, built from the dynamic sizes, for the kernel and box spectra
(phases reduced modulo n in int64 and evaluated in float64, as in ``restormer_deploy.restormer.ops``).
``padding_mode`` selects the ``Pad`` mode through an ``If`` chain on string ``Equal``; an unknown
mode falls through to ``constant`` (export validates it).
"""

from __future__ import annotations

import math

import onnx
import onnxscript
from onnx import TensorProto, helper
from onnxscript import opset20 as op
from onnxscript.values import Opset

from restormer_deploy.export.contract import DOMAIN, OPSET_VERSION

ONNX_OPSET = 20  # DFT with dft_length and axis as inputs

_restormer = Opset(DOMAIN, OPSET_VERSION)
_FLOAT = TensorProto.FLOAT
_DOUBLE = TensorProto.DOUBLE
_TWO_PI = helper.make_tensor("two_pi", _DOUBLE, [], [2 * math.pi])


@onnxscript.script(opset=_restormer, default_opset=op)
def TransposedAttention(q, k, v, temperature, heads: int):
    """Channel attention (MDTA core); see ``restormer_deploy.restormer.ops.transposed_attention``."""
    shape = op.Shape(q)
    hw = op.ReduceProd(op.Slice(shape, [2], [4]), keepdims=1)
    nh = op.Unsqueeze(op.Constant(value_int=heads), [0])
    grouped = op.Concat(op.Constant(value_ints=[0]), nh, op.Constant(value_ints=[-1]), hw, axis=0)
    qf = op.Reshape(op.Cast(q, to=1), grouped)
    kf = op.Reshape(op.Cast(k, to=1), grouped)
    vf = op.Reshape(op.Cast(v, to=1), grouped)
    eps = op.Constant(value_float=1e-12)
    # normalize(q) · normalize(k)ᵀ = (q · kᵀ) / (‖q‖ ‖k‖ᵀ): the norms divide the small (c × c) Gram
    # matrix instead of the two full (c × h·w) maps.
    q_norm = op.Max(op.Sqrt(op.ReduceSumSquare(qf, [-1], keepdims=1)), eps)  # (B, heads, c, 1)
    k_norm = op.Max(op.Sqrt(op.ReduceSumSquare(kf, [-1], keepdims=1)), eps)
    gram = op.MatMul(qf, op.Transpose(kf, perm=[0, 1, 3, 2]))
    scale = op.Div(op.Cast(temperature, to=1), op.Mul(q_norm, op.Transpose(k_norm, perm=[0, 1, 3, 2])))
    logits = op.Mul(gram, scale)
    attended = op.MatMul(op.Softmax(logits, axis=-1), vf)
    out = op.CastLike(op.Reshape(attended, shape), q)
    return out


@onnxscript.script(opset=_restormer, default_opset=op)
def Converse2D(
    x,
    kernel,
    lam,
    scale: int = 1,
    padding: int = 0,
    padding_mode: str = "circular",
    plugin_namespace: str = "restormer",
    plugin_version: str = "1",
    constant_kernel: int = 0,
):
    """Reverse convolution solved in closed form; see ``restormer_deploy.restormer.ops.converse2d``.

    ``plugin_namespace`` / ``plugin_version`` / ``constant_kernel`` are for TensorRT only and are
    ignored here (``constant_kernel=1``: the kernel is an initializer, so the plugin computes its
    spectrum once per shape).
    """
    xf = op.Cast(x, to=1)
    kf = op.Cast(kernel, to=1)
    lamf = op.Cast(lam, to=1)
    s = op.Unsqueeze(op.Constant(value_int=scale), [0])  # (1,) int64
    p = op.Unsqueeze(op.Constant(value_int=padding), [0])

    # y = x padded with the mode
    pads = op.Expand(p, [4])
    pad_axes = op.Constant(value_ints=[2, 3])
    mode = op.Constant(value_string=padding_mode)
    if op.Equal(mode, op.Constant(value_string="circular")):
        y = op.Pad(xf, pads, None, pad_axes, mode="wrap")
    else:
        if op.Equal(mode, op.Constant(value_string="reflect")):
            y = op.Pad(xf, pads, None, pad_axes, mode="reflect")
        else:
            if op.Equal(mode, op.Constant(value_string="replicate")):
                y = op.Pad(xf, pads, None, pad_axes, mode="edge")
            else:
                y = op.Pad(xf, pads, None, pad_axes, mode="constant")

    # grid sizes
    ysh = op.Shape(y)
    hp = op.Slice(ysh, [2], [3])
    wp = op.Slice(ysh, [3], [4])
    hs = op.Mul(hp, s)
    ws = op.Mul(wp, s)
    ksh = op.Shape(kf)
    kh = op.Slice(ksh, [2], [3])
    kw = op.Slice(ksh, [3], [4])
    zero = op.Constant(value_int=0)
    one = op.Constant(value_int=1)
    two = op.Constant(value_int=2)
    two_pi = op.Constant(value=_TWO_PI)

    # DFT matrices: phase(u, a) = 2π ((u (a − centre)) mod n) / n, for u < n and a < taps
    hs0 = op.Squeeze(hs, [0])
    ws0 = op.Squeeze(ws, [0])
    kh0 = op.Squeeze(kh, [0])
    kw0 = op.Squeeze(kw, [0])
    s0 = op.Squeeze(s, [0])
    u_h = op.Unsqueeze(op.Range(zero, hs0, one), [1])  # (Hs, 1)
    u_w = op.Unsqueeze(op.Range(zero, ws0, one), [1])  # (Ws, 1)
    step_h = op.Div(two_pi, op.Cast(hs0, to=11))
    step_w = op.Div(two_pi, op.Cast(ws0, to=11))
    # kernel taps, centre ⌊k/2⌋ rolled to the origin
    a_h = op.Unsqueeze(op.Sub(op.Range(zero, kh0, one), op.Div(kh0, two)), [0])  # (1, kh)
    a_w = op.Unsqueeze(op.Sub(op.Range(zero, kw0, one), op.Div(kw0, two)), [0])  # (1, kw)
    ph_h = op.Mul(op.Cast(op.Mod(op.Mul(u_h, a_h), hs0), to=11), step_h)  # (Hs, kh)
    ph_w = op.Mul(op.Cast(op.Mod(op.Mul(u_w, a_w), ws0), to=11), step_w)  # (Ws, kw)
    ch = op.Cast(op.Cos(ph_h), to=1)
    sh = op.Cast(op.Sin(ph_h), to=1)
    cw = op.Cast(op.Cos(ph_w), to=1)
    sw = op.Cast(op.Sin(ph_w), to=1)
    # FK = (ch − i·sh) K (cw − i·sw)ᵀ, (1 or B, C, Hs, Ws)
    kc = op.MatMul(kf, op.Transpose(cw, perm=[1, 0]))
    ks = op.MatMul(kf, op.Transpose(sw, perm=[1, 0]))
    fr = op.Sub(op.MatMul(ch, kc), op.MatMul(sh, ks))
    fi = op.Neg(op.Add(op.MatMul(sh, kc), op.MatMul(ch, ks)))
    # F(box): the s×s box of ones at the origin, separable
    a_s = op.Unsqueeze(op.Range(zero, s0, one), [0])  # (1, s)
    pb_h = op.Mul(op.Cast(op.Mod(op.Mul(u_h, a_s), hs0), to=11), step_h)  # (Hs, s)
    pb_w = op.Mul(op.Cast(op.Mod(op.Mul(u_w, a_s), ws0), to=11), step_w)  # (Ws, s)
    bhr = op.Cast(op.ReduceSum(op.Cos(pb_h), [1], keepdims=1), to=1)  # (Hs, 1)
    bhi = op.Neg(op.Cast(op.ReduceSum(op.Sin(pb_h), [1], keepdims=1), to=1))
    bwr = op.Cast(op.ReduceSum(op.Cos(pb_w), [1], keepdims=0), to=1)  # (Ws,)
    bwi = op.Neg(op.Cast(op.ReduceSum(op.Sin(pb_w), [1], keepdims=0), to=1))
    br = op.Sub(op.Mul(bhr, bwr), op.Mul(bhi, bwi))  # (Hs, Ws)
    bi = op.Add(op.Mul(bhr, bwi), op.Mul(bhi, bwr))

    # mean_s over the s×s tiles of (Hp, Wp); tile_s repeats an (Hp, Wp) spectrum
    tiles = op.Concat(op.Constant(value_ints=[0, 0]), s, hp, s, wp, axis=0)
    repeats = op.Concat(op.Constant(value_ints=[1, 1]), s, s, axis=0)
    pr = op.Sub(op.Mul(fr, br), op.Mul(fi, bi))  # FK ⊙ F(box)
    pi = op.Add(op.Mul(fr, bi), op.Mul(fi, br))
    nr = op.Sub(op.Constant(value_float=1.0), op.ReduceMean(op.Reshape(pr, tiles), [2, 4], keepdims=0))
    ni = op.Neg(op.ReduceMean(op.Reshape(pi, tiles), [2, 4], keepdims=0))
    power = op.Add(op.Mul(fr, fr), op.Mul(fi, fi))
    den = op.Add(op.ReduceMean(op.Reshape(power, tiles), [2, 4], keepdims=0), lamf)
    tr = op.Tile(op.Div(nr, den), repeats)
    ti = op.Tile(op.Div(ni, den), repeats)
    # G = F(box) + conj(FK) ⊙ t
    gr = op.Add(br, op.Add(op.Mul(fr, tr), op.Mul(fi, ti)))
    gi = op.Add(bi, op.Sub(op.Mul(fr, ti), op.Mul(fi, tr)))

    # F(y) at low resolution, tiled s×s
    fy = op.DFT(op.DFT(op.Unsqueeze(y, [-1]), None, 3), None, 2)  # (B, C, Hp, Wp, 2)
    yr = op.Tile(op.Gather(fy, zero, axis=-1), repeats)
    yi = op.Tile(op.Gather(fy, one, axis=-1), repeats)
    xr = op.Sub(op.Mul(yr, gr), op.Mul(yi, gi))
    xi = op.Add(op.Mul(yr, gi), op.Mul(yi, gr))
    spectrum = op.Concat(op.Unsqueeze(xr, [-1]), op.Unsqueeze(xi, [-1]), axis=-1)
    solved = op.Gather(op.DFT(op.DFT(spectrum, None, 2, inverse=1), None, 3, inverse=1), zero, axis=-1)

    # crop padding·scale from every side
    c = op.Mul(p, s)
    starts = op.Concat(c, c, axis=0)
    ends = op.Concat(op.Sub(hs, c), op.Sub(ws, c), axis=0)
    out = op.CastLike(op.Slice(solved, starts, ends, pad_axes), x)
    return out


def _with_opset(fn: onnx.FunctionProto) -> onnx.FunctionProto:
    """Make sure the function declares the default-domain opset it needs."""
    if not any(o.domain in ("", "ai.onnx") for o in fn.opset_import):
        fn.opset_import.append(helper.make_opsetid("", ONNX_OPSET))
    return fn


def transposed_attention_function() -> onnx.FunctionProto:
    """FunctionProto ``restormer.TransposedAttention`` (attribute ``heads``)."""
    return _with_opset(TransposedAttention.to_function_proto())


def converse2d_function() -> onnx.FunctionProto:
    """FunctionProto ``restormer.Converse2D`` (attributes ``scale``, ``padding``, ``padding_mode``;
    ``plugin_namespace`` / ``plugin_version`` declared and ignored)."""
    return _with_opset(Converse2D.to_function_proto())


_FUNCTIONS = {
    "TransposedAttention": transposed_attention_function,
    "Converse2D": converse2d_function,
}


def _used_ops(graph: onnx.GraphProto, found: set[str]) -> set[str]:
    for node in graph.node:
        if node.domain == DOMAIN:
            found.add(node.op_type)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _used_ops(attr.g, found)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _used_ops(g, found)
    return found


def mark_constant_kernels(model: onnx.ModelProto) -> int:
    """Set ``constant_kernel`` on every Converse2D node of the main graph (1 when its kernel is an
    initializer or a Constant, else 0; in place); returns how many are constant."""
    consts = {i.name for i in model.graph.initializer}
    consts |= {n.output[0] for n in model.graph.node if n.op_type == "Constant" and n.domain in ("", "ai.onnx")}
    count = 0
    for node in model.graph.node:
        if node.domain == DOMAIN and node.op_type == "Converse2D":
            constant = int(len(node.input) > 1 and node.input[1] in consts)
            keep = [a for a in node.attribute if a.name != "constant_kernel"]
            del node.attribute[:]
            node.attribute.extend([*keep, helper.make_attribute("constant_kernel", constant)])
            count += constant
    return count


def attach_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Add the reference FunctionProto of every ``restormer`` op the graph uses (in place; returns
    the model), the ``restormer`` opset import, and check the default-domain opset is ≥ 20."""
    used = _used_ops(model.graph, set())
    unknown = used - _FUNCTIONS.keys()
    if unknown:
        raise ValueError(f"no reference function for {DOMAIN} ops {sorted(unknown)}")
    default = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not default:
        model.opset_import.append(helper.make_opsetid("", ONNX_OPSET))
    elif used and default[0].version < ONNX_OPSET:
        raise ValueError(
            f"the model imports default-domain opset {default[0].version}, an opset too old for DFT: "
            f"the {DOMAIN} reference functions need opset >= {ONNX_OPSET} (export with opset {ONNX_OPSET}+)"
        )
    if used and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, OPSET_VERSION))
    present = {(f.domain, f.name) for f in model.functions}
    for name in sorted(used):
        if (DOMAIN, name) not in present:
            model.functions.append(_FUNCTIONS[name]())
    return model
