"""Plugin-free lowering of ``restormer.Converse2D`` to MatMuls (``--converse-lowering matmul``).

``lower_converse2d_matmul`` rewrites every Converse2D node into standard ONNX ops in which every
2-D DFT is MatMuls with cos/sin DFT matrices built in the graph from the dynamic sizes (``Range``,
``Mul``, ``Mod``, ``Cast``, ``Cos``, ``Sin``): no ``Converse2D`` node, no ``restormer``-domain
node for it and no ``DFT`` are left, so any runtime that multiplies matrices runs the model
(TensorRT without plugins included). All shapes stay dynamic; the node's attributes (scale,
padding, padding_mode) are known when the graph is rewritten, so each node gets its own ``Pad``
mode and its constants.

Math (``restormer_deploy.restormer.ops.converse2d``, ``docs/OPERATORS.md``): y is x padded to (Hp, Wp), the grid
is (Hs, Ws) = s·(Hp, Wp), and F(X) = tile_s(F(y)) ⊙ G with
G = F(box) + conj(FK) ⊙ tile_s(t), t = (1 − mean_s(FK ⊙ F(box))) / (mean_s|FK|² + λ).
Because tile_s(F(y)) is periodic (it is F of the zero-inserted y), the whole solve runs at the
*low* resolution, one polyphase component of X at a time. For ρ, σ ∈ [0, s) let

    D_ρσ[u, v] = mean over the s×s tiles of FK[u', v'] · e^{−2πi (u'ρ/Hs + v'σ/Ws)}    (u < Hp, v < Wp)
              = Σ_{a, b} K[a, b] · [s | α] [s | β] · e^{−2πi (u·(α/s)/Hp + v·(β/s)/Wp)},
    α = a − ⌊kh/2⌋ + ρ,  β = b − ⌊kw/2⌋ + σ,

(the polyphase spectra of the kernel: small MatMuls with kh / kw columns). Summing geometric
series over the tiles gives mean_s(FK ⊙ F(box)) = Σ_ρσ D_ρσ, mean_s|FK|² = Σ_ρσ |D_ρσ|² (Parseval
over the tile index), and the polyphase components of X,

    X[s·m + ρ, s·n + σ] = IDFT_{Hp×Wp}( F(y) ⊙ (1 + t ⊙ conj(D_ρσ)) )[m, n],

whose s² low-resolution inverse DFTs cost 1/s of one inverse DFT on the (Hs, Ws) grid. At s = 1
this is G = (conj(FK) + λ)/(|FK|² + λ). ``DepthToSpace`` (CRD) interleaves the components.

The DFTs as MatMuls, with real and imaginary parts as separate float tensors:

* F(y), one-sided (Wh = ⌊Wp/2⌋ + 1 columns): y·Cᵀ and y·Sᵀ along W, then along H the complex
  matrix (C − i·S) in real block form on [Re; Im] stacked along H (one MatMul per output part).
* the inverse DFT of the Hermitian spectrum, evaluated only at the output pixels (the crop
  p·s = p polyphase rows is folded into the matrices): Re(A·Z·Bᵀ) with A (H, Hp) =
  e^{+2πi (p+m) u / Hp} in block form, then B (W, Wh) carrying the one-sided weights (1 at v = 0
  and at the Nyquist column, 2 elsewhere) and 1/(Hp·Wp): X = Re(AZ)·Bcᵀ − Im(AZ)·Bsᵀ.
* phases 2π·((u·a) mod n)/n are reduced modulo n in int64 (to [−n/2, n/2)) before the float
  conversion, as ``restormer_deploy.restormer.ops`` does.

Everything computes in float32, phases included (no float64, which TensorRT lacks); inputs are
cast to float and the output is cast back with ``CastLike``. Sizes and indices are int64.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from restormer_deploy.export.contract import DOMAIN

OP_TYPE = "Converse2D"
MIN_OPSET = 19  # Pad mode "wrap" (circular)
DFT_OPSET = 20  # DFT with axis as an input
_PAD_MODES = {"circular": "wrap", "reflect": "reflect", "replicate": "edge", "constant": "constant"}
_FLOAT = TensorProto.FLOAT


# ----------------------------------------------------------------------------- graph building


class _Emitter:
    """Appends standard-op nodes whose node and value names are unique in the whole model."""

    def __init__(self, base: str, taken: set[str]):
        self.base, self.taken, self.nodes, self._count, self._consts = base, taken, [], 0, {}

    def _fresh(self, hint: str) -> str:
        while True:
            self._count += 1
            name = f"{self.base}/{hint}_{self._count}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        output = out if out is not None else self._fresh(op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=self._fresh(op_type), **attrs))
        return output

    def const(self, value, dtype=np.int64) -> str:
        """A Constant node (one per distinct value in this subgraph)."""
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self.op("Constant", value=numpy_helper.from_array(array))
        return self._consts[key]

    def add(self, a, b):
        return self.op("Add", a, b)

    def sub(self, a, b):
        return self.op("Sub", a, b)

    def mul(self, a, b):
        return self.op("Mul", a, b)

    def neg(self, a):
        return self.op("Neg", a)

    def concat(self, *xs, axis):
        return self.op("Concat", *xs, axis=axis)

    def unsqueeze(self, a, *axes):
        return self.op("Unsqueeze", a, self.const(list(axes)))

    def arange(self, start, end, shape=None):
        """int64 range [start, end), reshaped to ``shape`` (one −1) if given."""
        r = self.op("Range", start, end, self.const(1))
        return r if shape is None else self.op("Reshape", r, self.const(shape))


class _Converse2DLowering:
    """The standard-op subgraph of one Converse2D node (scale, padding and mode fixed).

    ``dft=True``: the two image-sized transforms (F(y) and the inverse) are ONNX ``DFT`` nodes on
    the full (two-sided) grid, complex-to-complex, instead of MatMuls; the kernel spectra stay
    MatMuls (kh / kw columns)."""

    def __init__(self, e: _Emitter, scale: int, padding: int, mode: str, float_inputs: set[str] = frozenset(),
                 dft: bool = False):
        self.e, self.s, self.p, self.mode, self.dft = e, scale, padding, mode, dft
        self.float_inputs = float_inputs  # input names known to be float32: no Cast / CastLike

    def dft2(self, z, inverse: int):
        """The 2-D DFT over the last two signal axes of z (.., H, W, 1 or 2) -> (.., H, W, 2)."""
        e = self.e
        z = e.op("DFT", z, "", e.const(-2), inverse=inverse)
        return e.op("DFT", z, "", e.const(-3), inverse=inverse)

    def to_float(self, name):
        return name if name in self.float_inputs else self.e.op("Cast", name, to=_FLOAT)

    def cos_sin(self, prod, n):
        """cos and sin of 2π·prod/n, float32, for the int64 tensor prod, reduced modulo n to
        [−n/2, n/2) in integers first."""
        e = self.e
        half = e.op("Div", n, e.const(2))
        k = e.sub(e.op("Mod", e.add(prod, half), n), half)
        step = e.op("Div", e.const(2 * math.pi, np.float32), e.op("Cast", n, to=_FLOAT))
        phase = e.mul(e.op("Cast", k, to=_FLOAT), step)
        return e.op("Cos", phase), e.op("Sin", phase)

    def polyphase_taps(self, taps, centre, phase_shape):
        """(α/s, [s | α]) with α = tap − centre + phase; ``phase`` (the ρ or σ index) has shape
        ``phase_shape``. At s = 1: (tap − centre, None)."""
        e, s = self.e, self.s
        d = e.sub(taps, centre)
        if s == 1:
            return d, None
        d = e.add(d, e.arange(e.const(0), e.const(s), phase_shape))
        mask = e.op("Cast", e.op("Equal", e.op("Mod", d, e.const(s)), e.const(0)), to=_FLOAT)
        return e.op("Div", d, e.const(s)), mask  # exact wherever the mask is 1

    def transform(self, z, right, left):
        """L·z·Rᵀ for a real tensor z (.., R, S), with R and L complex matrices given as
        (real, imag) pairs, Rᵀ of shape (.., S, cols) and L of shape (.., rows, R), batch dims
        broadcast. Returns (real, imag), (.., rows, cols): z·Rᵀ is two MatMuls, the complex product
        with L uses the real block form on [Re; Im] stacked along the rows."""
        e = self.e
        t = e.concat(e.op("MatMul", z, right[0]), e.op("MatMul", z, right[1]), axis=-2)  # (.., 2R, cols)
        lr, li = left
        re = e.op("MatMul", e.concat(lr, e.neg(li), axis=-1), t)
        im = e.op("MatMul", e.concat(li, lr, axis=-1), t)
        return re, im

    def build(self, x, kernel, lam, out):
        e, s, p = self.e, self.s, self.p
        zero, two = e.const(0), e.const(2)
        xf, kf, lamf = self.to_float(x), self.to_float(kernel), self.to_float(lam)
        last = out if x in self.float_inputs else None  # the op that writes the node's output
        y = e.op("Pad", xf, e.const([0, 0, p, p, 0, 0, p, p]), mode=_PAD_MODES[self.mode]) if p else xf

        ysh, ksh = e.op("Shape", y), e.op("Shape", kf)
        hp, wp = e.op("Gather", ysh, two), e.op("Gather", ysh, e.const(3))
        kh, kw = e.op("Gather", ksh, two), e.op("Gather", ksh, e.const(3))
        # one-sided columns (MatMuls), or all Wp (DFT nodes, complex-to-complex)
        wh = wp if self.dft else e.add(e.op("Div", wp, two), e.const(1))
        u = e.arange(zero, hp, [-1, 1])  # (Hp, 1) row frequencies
        v = e.arange(zero, wh, [1, -1])  # (1, Wh) column frequencies

        # F(y): (B, C, Hp, Wh)
        if self.dft:
            fy = self.dft2(e.unsqueeze(y, -1), 0)
            fyr, fyi = e.op("Gather", fy, zero, axis=-1), e.op("Gather", fy, e.const(1), axis=-1)
        else:
            cw, sw = self.cos_sin(e.mul(e.arange(zero, wp, [-1, 1]), v), wp)  # (Wp, Wh)
            ch, sh = self.cos_sin(e.mul(u, e.arange(zero, hp, [1, -1])), hp)  # (Hp, Hp)
            fyr, fyi = self.transform(y, (cw, e.neg(sw)), (ch, e.neg(sh)))

        # polyphase kernel spectra D_ρσ: (KB, C, s, s, Hp, Wh), or (KB, C, Hp, Wh) at s = 1
        qh, mh = self.polyphase_taps(e.arange(zero, kh, [1, 1, 1, -1]), e.op("Div", kh, two), [-1, 1, 1, 1])
        qw, mw = self.polyphase_taps(e.arange(zero, kw, [1, 1, -1, 1]), e.op("Div", kw, two), [1, -1, 1, 1])
        # left (ρ, 1, Hp, kh) and right-transposed (1, σ, kw, Wh) matrices; 2-D at s = 1
        lc, ls = self.cos_sin(e.mul(e.unsqueeze(u, 0, 1), qh), hp)
        rc, rs = self.cos_sin(e.mul(qw, e.unsqueeze(v, 0, 1)), wp)
        if s == 1:
            squeeze = e.const([0, 1])
            lc, ls, rc, rs = (e.op("Squeeze", m, squeeze) for m in (lc, ls, rc, rs))
            kz = kf
        else:
            lc, ls, rc, rs = e.mul(lc, mh), e.mul(ls, mh), e.mul(rc, mw), e.mul(rs, mw)
            kz = e.unsqueeze(kf, 2, 3)  # (KB, C, 1, 1, kh, kw)
        dr, di = self.transform(kz, (rc, e.neg(rs)), (lc, e.neg(ls)))

        # t = (1 − Σ D) / (Σ |D|² + λ);  H = 1 + t ⊙ conj(D)
        power = e.add(e.mul(dr, dr), e.mul(di, di))
        if s == 1:
            sr, si, lamf_nd = dr, di, lamf
        else:
            axes = e.const([2, 3])
            sr, si, power = (e.op("ReduceSum", t, axes, keepdims=1) for t in (dr, di, power))
            lamf_nd = e.unsqueeze(lamf, 2, 3)
            fyr, fyi = e.unsqueeze(fyr, 2, 3), e.unsqueeze(fyi, 2, 3)
        inv = e.op("Reciprocal", e.add(power, lamf_nd))
        tr = e.mul(e.sub(e.const(1.0, np.float32), sr), inv)
        ti = e.neg(e.mul(si, inv))
        gr = e.add(e.const(1.0, np.float32), e.add(e.mul(tr, dr), e.mul(ti, di)))
        gi = e.sub(e.mul(ti, dr), e.mul(tr, di))

        # Z = F(y) ⊙ H, (B, C, [s, s,] Hp, Wh)
        zr = e.sub(e.mul(fyr, gr), e.mul(fyi, gi))
        zi = e.add(e.mul(fyr, gi), e.mul(fyi, gr))

        if self.dft:
            self.inverse_dft(zr, zi, x, out, last)
            return
        # inverse DFT at the output pixels m ∈ [p, Hp − p), n ∈ [p, Wp − p), real part only
        pc = e.const(p)
        ac, as_ = self.cos_sin(e.mul(e.arange(pc, e.sub(hp, pc), [-1, 1]), e.arange(zero, hp, [1, -1])), hp)  # (H, Hp)
        vcol = e.arange(zero, wh, [-1, 1])  # (Wh, 1)
        bc, bs = self.cos_sin(e.mul(vcol, e.arange(pc, e.sub(wp, pc), [1, -1])), wp)  # (Wh, W)
        edge = e.op("Cast", e.op("Equal", vcol, zero), to=_FLOAT)
        nyquist = e.op("Cast", e.op("Equal", e.mul(vcol, two), wp), to=_FLOAT)
        weight = e.sub(e.sub(e.const(2.0, np.float32), edge), nyquist)
        weight = e.op("Div", weight, e.op("Cast", e.mul(hp, wp), to=_FLOAT))  # (Wh, 1)
        zs = e.concat(zr, zi, axis=-2)
        qr = e.op("MatMul", e.concat(ac, e.neg(as_), axis=1), zs)  # Re(A·Z)
        qi = e.op("MatMul", e.concat(as_, ac, axis=1), zs)  # Im(A·Z)
        bc, bs = e.mul(bc, weight), e.mul(bs, weight)
        if s == 1:
            solved = e.op("Sub", e.op("MatMul", qr, bc), e.op("MatMul", qi, bs), out=last)
        else:  # (B, C, s, s, H, W) → (B, C·s², H, W) → (B, C, H·s, W·s)
            solved = e.sub(e.op("MatMul", qr, bc), e.op("MatMul", qi, bs))
            xsh = e.op("Shape", x)
            dims = e.concat(e.const([0, -1]), e.op("Slice", xsh, e.const([2]), e.const([4])), axis=0)
            solved = e.op("DepthToSpace", e.op("Reshape", solved, dims), blocksize=s, mode="CRD", out=last)
        if last is None:
            e.op("CastLike", solved, x, out=out)

    def inverse_dft(self, zr, zi, x, out, last):
        """X from Z on the full grid: 2-D inverse DFT, real part, crop p, polyphase interleave."""
        e, s, p = self.e, self.s, self.p
        z = e.concat(e.unsqueeze(zr, -1), e.unsqueeze(zi, -1), axis=-1)
        solved = e.op("Gather", self.dft2(z, 1), e.const(0), axis=-1)  # (B, C, [s, s,] Hp, Wp)
        if p:
            solved = e.op("Slice", solved, e.const([p, p]), e.const([-p, -p]), e.const([-2, -1]))
        if s > 1:  # (B, C, s, s, H, W) → (B, C·s², H, W) → (B, C, H·s, W·s)
            xsh = e.op("Shape", x)
            dims = e.concat(e.const([0, -1]), e.op("Slice", xsh, e.const([2]), e.const([4])), axis=0)
            solved = e.op("DepthToSpace", e.op("Reshape", solved, dims), blocksize=s, mode="CRD")
        if last is None:
            e.op("CastLike", solved, x, out=out)
        else:
            e.op("Identity", solved, out=out)


# ----------------------------------------------------------------------------- model rewrite


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            if a.ref_attr_name:
                raise ValueError(
                    f"Converse2D node {node.name!r}: attribute {name!r} refers to a function "
                    f"attribute ({a.ref_attr_name!r}); the matmul lowering needs constant attributes"
                )
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _is_converse(node: onnx.NodeProto) -> bool:
    return node.domain == DOMAIN and node.op_type == OP_TYPE


def _subgraphs(node: onnx.NodeProto):
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        elif a.type == AttributeProto.GRAPHS:
            yield from a.graphs


def _collect_names(graph: onnx.GraphProto, taken: set[str], floats: set[str]) -> None:
    """All node and value names (into ``taken``) and the values declared float32 (``floats``)."""
    for vi in (*graph.input, *graph.output, *graph.value_info):
        taken.add(vi.name)
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type == _FLOAT:
            floats.add(vi.name)
    for init in graph.initializer:
        taken.add(init.name)
        if init.data_type == _FLOAT:
            floats.add(init.name)
    for init in graph.sparse_initializer:
        taken.add(init.values.name)
    for node in graph.node:
        taken.add(node.name)
        taken.update(node.input)
        taken.update(node.output)
        for g in _subgraphs(node):
            _collect_names(g, taken, floats)


def _lower_nodes(nodes, taken: set[str], floats: set[str], dft: bool = False) -> tuple[list[onnx.NodeProto], int]:
    """The node list with every Converse2D replaced (recursing into subgraphs), and the count."""
    result, count = [], 0
    for node in nodes:
        for g in _subgraphs(node):
            new, n = _lower_nodes(g.node, taken, floats, dft)
            if n:
                del g.node[:]
                g.node.extend(new)
                count += n
        if not _is_converse(node):
            result.append(node)
            continue
        scale = _attr(node, "scale", 1)
        padding = _attr(node, "padding", 0)
        mode = _attr(node, "padding_mode", "circular")
        if not (isinstance(scale, int) and scale >= 1 and isinstance(padding, int) and padding >= 0 and mode in _PAD_MODES):
            raise ValueError(f"Converse2D node {node.name!r}: bad attributes scale={scale!r} padding={padding!r} mode={mode!r}")
        if len(node.input) != 3 or len(node.output) != 1 or not all(node.input):
            raise ValueError(f"Converse2D node {node.name!r} must have inputs (x, kernel, lam) and one output")
        emitter = _Emitter(f"{node.name or node.output[0]}/{'dft' if dft else 'matmul'}", taken)
        _Converse2DLowering(emitter, scale, padding, mode, floats, dft=dft).build(*node.input, node.output[0])
        result.extend(emitter.nodes)
        count += 1
    return result, count


def _domain_used(nodes, domain: str) -> bool:
    for node in nodes:
        if node.domain == domain or any(_domain_used(g.node, domain) for g in _subgraphs(node)):
            return True
    return False


def _converse_used(nodes) -> bool:
    return any(_is_converse(n) or any(_converse_used(g.node) for g in _subgraphs(n)) for n in nodes)


def _default_opset(opsets) -> int | None:
    return next((o.version for o in opsets if o.domain in ("", "ai.onnx")), None)


def lower_converse2d_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """``lower_converse2d(model, "matmul")``."""
    return lower_converse2d(model, "matmul")


def lower_converse2d(model: onnx.ModelProto, method: str = "matmul") -> onnx.ModelProto:
    """A copy of ``model`` with every ``restormer.Converse2D`` node (main graph, subgraphs and the
    bodies of other model-local functions) replaced by its standard-op subgraph: ``matmul`` (every
    DFT a MatMul; any runtime) or ``dft`` (the image-sized transforms as ONNX ``DFT`` nodes;
    ONNX Runtime, TensorRT 11.2+).

    The Converse2D FunctionProto is dropped once nothing calls it, and the ``restormer`` opset
    import once no node or function of that domain is left; everything else (initializers,
    metadata, value_info, other custom nodes such as TransposedAttention and their functions) is
    kept. The default-domain opset must be ≥ 19 (``Pad`` mode ``wrap``).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    opset = _default_opset(out.opset_import)
    if opset is None:
        out.opset_import.append(helper.make_opsetid("", MIN_OPSET))
    elif opset < MIN_OPSET:
        raise ValueError(f"the matmul lowering of Converse2D needs default-domain opset >= {MIN_OPSET}, got {opset}")

    taken: set[str] = set()
    floats: set[str] = set()
    _collect_names(out.graph, taken, floats)
    for fn in out.functions:
        taken.update(n.name for n in fn.node)
        for n in fn.node:
            taken.update(n.input)
            taken.update(n.output)

    if method not in ("matmul", "dft"):
        raise ValueError(f"Converse2D lowering must be matmul or dft, got {method!r}")
    dft = method == "dft"
    if dft and (opset or MIN_OPSET) < DFT_OPSET:
        raise ValueError(f"the dft lowering of Converse2D needs default-domain opset >= {DFT_OPSET}, got {opset}")
    new, _ = _lower_nodes(out.graph.node, taken, floats, dft)
    del out.graph.node[:]
    out.graph.node.extend(new)
    for fn in out.functions:
        if (fn.domain, fn.name) == (DOMAIN, OP_TYPE):
            continue
        new, n = _lower_nodes(fn.node, taken, set(), dft)
        if n:
            del fn.node[:]
            fn.node.extend(new)
            fn_opset = _default_opset(fn.opset_import)
            if fn_opset is None:
                fn.opset_import.append(helper.make_opsetid("", opset or MIN_OPSET))
            elif fn_opset < MIN_OPSET:
                raise ValueError(f"function {fn.domain}.{fn.name} imports opset {fn_opset} < {MIN_OPSET}")
            if not _domain_used(fn.node, DOMAIN):
                keep = [o for o in fn.opset_import if o.domain != DOMAIN]
                del fn.opset_import[:]
                fn.opset_import.extend(keep)

    bodies = [out.graph.node] + [f.node for f in out.functions if (f.domain, f.name) != (DOMAIN, OP_TYPE)]
    if not any(_converse_used(b) for b in bodies):
        keep = [f for f in out.functions if (f.domain, f.name) != (DOMAIN, OP_TYPE)]
        del out.functions[:]
        out.functions.extend(keep)
    if not _domain_used(out.graph.node, DOMAIN) and not any(f.domain == DOMAIN for f in out.functions):
        keep = [o for o in out.opset_import if o.domain != DOMAIN]
        del out.opset_import[:]
        out.opset_import.extend(keep)
    return out


# ----------------------------------------------------------------------------- FLOP estimates
#
# Rough real-FLOP counts (a multiply and an add are two flops) of one Converse2D call on `batch`
# images of `c` channels with one shared k×k kernel per channel, so that export can report what
# the matmul lowering costs over an FFT implementation. The O(n²) construction of the DFT matrices
# (independent of c) is left out of both.


def _grid(h, w, scale, padding):
    hp, wp = h + 2 * padding, w + 2 * padding
    return hp, wp, hp * scale, wp * scale


def matmul_lowering_flops(c: int, h: int, w: int, k: int, scale: int, padding: int, batch: int = 1) -> dict:
    """FLOPs of ``lower_converse2d_matmul``'s subgraph. A real (m×n)·(n×q) product is 2·m·n·q;
    a complex matrix times a complex operand, in real block form, is four of them. With (Hp, Wp)
    the padded input, Wh = ⌊Wp/2⌋ + 1, (H, W) the input and s the scale, per image channel:

    * forward F(y):  4·Hp·Wp·Wh (along W, cos and sin)  +  8·Hp·Hp·Wh (along H, complex)
    * inverse:       s²·(8·H·Hp·Wh + 4·H·Wh·W)  (s² polyphase components, complex along H at the
      output rows only, real part along W at the output columns)
    * elementwise:   ≈ 8·s²·Hp·Wh  (F(y) ⊙ H_ρσ and the final subtraction)

    per kernel channel: the polyphase spectra 4·s·k²·Wh + 8·s²·Hp·k·Wh, ≈ 16·s²·Hp·Wh elementwise.
    A dense length-n DFT is O(n²) per vector where an FFT is O(n log n): the matmul lowering does
    more flops (≈ 8× for a 64×64 input, padding 6, s = 1; ≈ 4× at s = 2) but in large,
    regular GEMMs.
    """
    hp, wp, _, _ = _grid(h, w, scale, padding)
    wh, s2, n = wp // 2 + 1, scale * scale, batch * c
    forward = n * (4 * hp * wp * wh + 8 * hp * hp * wh)
    inverse = n * s2 * (8 * h * hp * wh + 4 * h * wh * w)
    kernel = c * (4 * scale * k * k * wh + 8 * s2 * hp * k * wh)
    elementwise = n * 8 * s2 * hp * wh + c * 16 * s2 * hp * wh
    return {
        "forward": forward,
        "inverse": inverse,
        "kernel_spectrum": kernel,
        "elementwise": elementwise,
        "total": forward + inverse + kernel + elementwise,
    }


def fft_flops(c: int, h: int, w: int, k: int, scale: int, padding: int, batch: int = 1, onesided: bool = True) -> dict:
    """FLOPs of the same call with FFTs as ``restormer_deploy.restormer.ops.converse2d`` runs it (and the TensorRT
    plugin): an n-point complex FFT ≈ 5·n·log2(n) flops, a real one (rfft / irfft) half that.
    With (Hs, Ws) = s·(Hp, Wp) and Wk = ⌊Ws/2⌋ + 1 at s = 1, Ws otherwise:

    * forward F(y) at (Hp, Wp):     2.5·Hp·Wp·log2(Hp·Wp) per image channel
    * inverse at (Hs, Ws):          2.5·Hs·Ws·log2(Hs·Ws)
    * elementwise:                  ≈ 8·Hs·⌊Ws/2 + 1⌋ (tile_s(F(y)) ⊙ G)
    * kernel spectrum per kernel channel: 4·k²·Wk + 8·Hs·k·Wk (small matmuls), ≈ 20·Hs·Wk for G

    ``onesided=False`` counts full complex DFTs (5·n·log2 n), as the ONNX ``DFT`` reference
    function runs them.
    """
    hp, wp, hs, ws = _grid(h, w, scale, padding)
    wk = ws // 2 + 1 if scale == 1 else ws
    n = batch * c
    per_point = 2.5 if onesided else 5.0
    forward = n * per_point * hp * wp * math.log2(hp * wp)
    inverse = n * per_point * hs * ws * math.log2(hs * ws)
    kernel = c * (4 * k * k * wk + 8 * hs * k * wk)
    elementwise = n * 8 * hs * (ws // 2 + 1) + c * 20 * hs * wk
    return {
        "forward": round(forward),
        "inverse": round(inverse),
        "kernel_spectrum": kernel,
        "elementwise": elementwise,
        "total": round(forward + inverse + kernel + elementwise),
    }
