"""Per-operator form checks of the TensorRT lint beyond what an allow-list ``Rule`` holds.

Each check returns ``(verdict, message)`` pairs: ``REFUSED`` only where the cited parser source
refuses the form (a check that raises), ``UNVERIFIED`` for a form no read source says parses. The
labels in the messages are those of ``allowlist.SOURCES``. Used by ``lint.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

REFUSED, UNVERIFIED = "refused", "not verified"
FLOAT_TAGS = ("FP32", "FP16", "BF16", "DOUBLE")
_TAGS = {onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16", onnx.TensorProto.BFLOAT16: "BF16",
         onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT64: "INT64", onnx.TensorProto.BOOL: "BOOL",
         onnx.TensorProto.UINT8: "UINT8", onnx.TensorProto.INT8: "INT8", onnx.TensorProto.DOUBLE: "DOUBLE"}


@dataclass(frozen=True)
class Ctx:
    """What a check may look at: constant tensors by name, element-type tags and shapes (a dim is
    None when unknown; the shape is None when the rank is unknown), the allow-list line and the
    producing node of each tensor."""

    consts: dict
    tags: dict
    shapes: dict
    line: str
    producers: dict = field(default_factory=dict)  # tensor name -> the node that writes it (this graph)

    def value(self, name: str):
        tensor = self.consts.get(name) if name else None
        return None if tensor is None else numpy_helper.to_array(tensor)

    def tag(self, name: str):
        return self.tags.get(name) if name else None

    def shape(self, name: str):
        return self.shapes.get(name) if name else None

    def static(self, name: str) -> bool:
        shape = self.shape(name)
        return shape is not None and all(d is not None for d in shape)


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _input(node, i: int) -> str:
    return node.input[i] if i < len(node.input) else ""


def mod(node, ctx: Ctx):
    if _attrs(node).get("fmod", 0) == 0 and ctx.tag(_input(node, 0)) in FLOAT_TAGS:
        return [(REFUSED, "fmod=0 with floating-point inputs [imp-10.1 Mod L3582-3586; imp-11.0 Mod]")]
    return []


def range_(node, ctx: Ctx):
    start, limit, delta = (ctx.tag(_input(node, i)) for i in range(3))
    if start and delta and start != delta:
        return [(REFUSED, f"start {start} and delta {delta} of different types [imp-10.1 Range L4182-4186; imp-10.13 "
                          f"Range; imp-11.0 Range]")]
    if start and limit and start != limit:
        # 10.1-GA compares with a comma operator (only start against delta counts); 10.13 and 11.0 all three
        if ctx.line in ("10.13", "11.0", "11.2"):
            return [(REFUSED, f"start {start} and limit {limit} of different types [imp-10.13 Range; imp-11.0 "
                              f"Range]")]
        return [(UNVERIFIED, f"start {start} and limit {limit} of different types: imp-10.1 Range L4182 checks "
                             f"only start against delta, imp-10.13 and imp-11.0 all three")]
    if start == "FP32" and any(_input(node, i) not in ctx.consts for i in range(3)):
        return [(UNVERIFIED, "FP32 Range with a runtime input (read as shape tensors, imp-10.1 Range L4204-4209; "
                             "only constant FP32 inputs are in the allow-list)")]
    return []


def conv(node, ctx: Ctx):
    attrs, found = _attrs(node), []
    pad = attrs.get("auto_pad", b"NOTSET")
    pad = pad.decode() if isinstance(pad, bytes) else pad
    if pad in ("SAME_UPPER", "SAME_LOWER") and "pads" in attrs:
        found.append((REFUSED, f"auto_pad={pad} together with pads [utl-10.1 getKernelParams L819-822]"))
    if ctx.line == "10.3" and "kernel_shape" not in attrs and _input(node, 1) not in ctx.consts:
        found.append((UNVERIFIED, "runtime weights without kernel_shape on 10.3-10.6 (utl-10.1 convMultiInput "
                                  "L1750; cl 10.4 lists a fix): not in the allow-list"))
    return found


def _resized_axes(node, ctx: Ctx):
    """The axes a Resize changes (from constant scales or sizes and, for sizes, the input shape), or None."""
    axes = _attrs(node).get("axes")
    rank = len(ctx.shape(_input(node, 0)) or ()) or None
    scales, sizes = ctx.value(_input(node, 2)), ctx.value(_input(node, 3))
    if scales is not None and scales.size:
        changed = [i for i, s in enumerate(scales.reshape(-1)) if s != 1]
    elif sizes is not None and sizes.size and ctx.static(_input(node, 0)):
        dims = ctx.shape(_input(node, 0))
        picked = [dims[a] for a in axes] if axes else dims
        changed = [i for i, (s, d) in enumerate(zip(sizes.reshape(-1), picked)) if s != d]
    elif _input(node, 3) and not axes and rank:
        kept = _kept_prefix(_input(node, 3), _input(node, 0), rank, ctx)
        if not kept:
            return None, rank
        changed = list(range(kept, rank))  # the axes after the kept prefix may change
    else:
        return None, rank
    if axes:
        if rank is None:
            return None, rank
        changed = [axes[i] % rank for i in changed]
    return changed, rank


def _kept_prefix(sizes: str, x: str, rank: int, ctx: Ctx) -> int:
    """How many leading entries of a runtime ``sizes`` tensor are provably ``x``'s own dims: a Concat (axis 0)
    whose first parts are Shape(x) with start/end, or a Slice of Shape(x) with constant starts/ends (axis 0,
    step 1), each continuing where the last one ended. 0 when nothing is proven."""
    concat = ctx.producers.get(sizes)
    if concat is None or concat.op_type != "Concat" or _attrs(concat).get("axis") != 0:
        return 0
    pos = 0
    for part in concat.input:
        span = _shape_span(part, x, rank, ctx)
        if span is None or span[0] != pos:
            break
        pos = span[1]
    return pos


def _shape_span(name: str, x: str, rank: int, ctx: Ctx):
    """(start, end) when ``name`` is dims start..end of ``x`` (Shape with start/end, or a Slice of a full Shape)."""
    def clamp(v):
        return min(max(v + rank if v < 0 else v, 0), rank)

    node = ctx.producers.get(name)
    if node is not None and node.op_type == "Shape" and _input(node, 0) == x:
        attrs = _attrs(node)
        return clamp(attrs.get("start", 0)), clamp(attrs.get("end", rank))
    if node is None or node.op_type != "Slice" or len(node.input) < 3:
        return None
    inner = ctx.producers.get(_input(node, 0))
    if inner is None or inner.op_type != "Shape" or _input(inner, 0) != x or _attrs(inner).get("start", 0) != 0 \
            or _attrs(inner).get("end", rank) not in (rank, None):
        return None
    starts, ends = ctx.value(_input(node, 1)), ctx.value(_input(node, 2))
    axes = ctx.value(_input(node, 3)) if _input(node, 3) else np.zeros(1, np.int64)
    steps = ctx.value(_input(node, 4)) if _input(node, 4) else np.ones(1, np.int64)
    if any(v is None or v.size != 1 for v in (starts, ends, axes, steps)) or int(axes.reshape(-1)[0]) not in (0, -1) \
            or int(steps.reshape(-1)[0]) != 1:
        return None
    return clamp(int(starts.reshape(-1)[0])), clamp(int(ends.reshape(-1)[0]))


def resize(node, ctx: Ctx):
    attrs = _attrs(node)
    mode = attrs.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    found = []
    runtime_scales = bool(_input(node, 2)) and _input(node, 2) not in ctx.consts
    if attrs.get("axes") and runtime_scales:
        rank = len(ctx.shape(_input(node, 0)) or ())
        if not rank or list(attrs["axes"]) != list(range(rank)):
            found.append((REFUSED, "the axes attribute with runtime scales [imp-10.1 Resize L4628-4633; imp-11.0 "
                                   "Resize]"))
    if mode in ("linear", "cubic"):
        inner = 3 if mode == "linear" else 2
        changed, rank = _resized_axes(node, ctx)
        if changed is None or rank is None:
            found.append((UNVERIFIED, f"{mode} Resize whose resized axes are not known statically (imp-10.1 Resize "
                                      f"checks them only for constant scales, L4612-4623)"))
        elif any(a < rank - inner for a in changed):
            verdict = REFUSED if _input(node, 2) in ctx.consts else UNVERIFIED
            found.append((verdict, f"{mode} Resize on axes {changed}: only the {inner} innermost of rank {rank} "
                                   f"[imp-10.1 Resize L4612-4623; imp-11.0 Resize; utl-10.1 canUseNDResize L265-279]"))
    return found


def slice_(node, ctx: Ctx):
    if len(node.input) > 4 and not node.input[4]:
        return [(UNVERIFIED, "an omitted steps input (input 4 empty): imp-10.1 Slice and imp-10.13 Slice read input "
                             "4 whenever the node has 5 inputs, with no null check")]
    return []


def squeeze(node, ctx: Ctx):
    if len(node.input) < 2 or not node.input[1]:
        if not ctx.static(_input(node, 0)):
            if ctx.line == "11.2":
                return [(UNVERIFIED, "no axes on an input of dynamic shape: refused up to 11.0 (imp-11.0 Squeeze); "
                                     "11.2+ not readable here")]
            return [(REFUSED, "no axes on an input of dynamic shape [imp-10.1 Squeeze L5645-5649; imp-10.13, "
                              "imp-11.0 Squeeze 'Cannot infer squeeze dimensions from a dynamic shape']")]
    elif node.input[1] not in ctx.consts:
        if ctx.line == "10.3":
            return [(REFUSED, "runtime axes: 'Squeeze axes input must be an initializer' [imp-10.1 Squeeze L5619]")]
        return [(UNVERIFIED, "runtime axes: the parser passes them to addSqueeze (imp-10.13), which needs axes "
                             "resolvable to constants at build time (nvinfer-10.7)")]
    return []


def unsqueeze(node, ctx: Ctx):
    if len(node.input) > 1 and node.input[1] and node.input[1] not in ctx.consts and ctx.line == "10.3":
        return [(REFUSED, "runtime axes: 'Axes input for unsqueeze operation should be a constant tensor' "
                          "[imp-10.1 Unsqueeze L5888-5890]")]
    return []


def pad(node, ctx: Ctx):
    name = _input(node, 2)
    if not name:
        return []
    value = ctx.value(name)
    if value is not None and value.size != 1:
        return [(REFUSED, f"constant_value with {value.size} values: 'required to be a scalar' "
                          f"[imp-10.1 Pad L3818-3826; imp-11.0 Pad]")]
    shape = ctx.shape(name)
    if value is None and (shape is None or np.prod([d or 2 for d in shape]) != 1):
        return [(UNVERIFIED, "a runtime constant_value that is not known to be a scalar (imp-10.1 Pad L3847)")]
    return []


def split(node, ctx: Ctx):
    """imp-10.1 Split L5469-5602 (the same in imp-10.13 and imp-11.0 Split)."""
    attrs, found = _attrs(node), []
    n = attrs.get("num_outputs")
    if n is not None and n != len(node.output):
        found.append((REFUSED, f"num_outputs={n} but {len(node.output)} outputs are declared [imp-10.1 Split "
                               f"L5543-5547]"))
    if n is not None and len(node.input) > 1 and node.input[1]:
        found.append((REFUSED, "num_outputs and the split input given together [imp-10.1 Split L5524-5528]"))
    if len(node.input) < 2 or not node.input[1]:
        shape, outs = ctx.shape(_input(node, 0)), len(node.output)
        axis = attrs.get("axis", 0)
        if shape and outs and -len(shape) <= axis < len(shape) and shape[axis] is not None:
            dim = shape[axis]
            chunk = -(-dim // outs)
            if dim - chunk * (outs - 1) < 0:
                found.append((REFUSED, f"{outs} equal parts of {dim}: the last chunk would be negative [imp-10.1 "
                                       f"Split L5554-5557]"))
    return found


def qdq(node, ctx: Ctx):
    """imp-10.1 QuantDequantLinearHelper L1346-1658."""
    found = []
    scale = ctx.value(_input(node, 1))
    axis_given = any(a.name == "axis" for a in node.attribute)
    if scale is not None:
        if scale.size == 0:
            found.append((REFUSED, "a scale with no values [imp-10.1 L1383-1384]"))
        elif np.any(scale <= 0):
            found.append((REFUSED, "scale coefficients must all be positive [imp-10.1 L1403-1404]"))
        if scale.size > 1 and not axis_given:
            found.append((UNVERIFIED, "a per-channel scale with no axis: the parser reads axis 0 (imp-10.1 "
                                      "L1521-1531), ONNX's default is 1"))
        shape = ctx.shape(_input(node, 0))
        if scale.size > 1 and axis_given and shape:
            axis = _attrs(node)["axis"]
            dim = shape[axis] if -len(shape) <= axis < len(shape) else None
            if scale.ndim == 1 and dim is not None and dim != scale.size:
                found.append((REFUSED, f"{scale.size} scales for an axis of {dim} [imp-10.1 L1536-1539]"))
    zp_name = _input(node, 2)
    zero = ctx.value(zp_name)
    if zero is not None and np.any(zero != 0):
        found.append((REFUSED, "the zero point must be all zeros (symmetric quantization) [imp-10.1 L1491-1494]"))
    if zp_name and ctx.tag(zp_name) == "UINT8":
        found.append((UNVERIFIED, "a UINT8 zero point is read as INT8 (imp-10.1 L1457-1462): use INT8"))
    return found


def if_(node, ctx: Ctx):
    branches = {a.name: len(a.g.output) for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}
    if len(set(branches.values())) > 1:
        return [(REFUSED, f"then and else branches have different output counts {branches} [chk-10.1 If L368-378]")]
    return []


def where(node, ctx: Ctx):
    bad = [i for i in (1, 2) if ctx.tag(_input(node, i)) == "UINT8"]
    if bad:
        return [(REFUSED, f"UINT8 X or Y (input {bad[0]}) [imp-10.1 Where L6030-6031; imp-10.13, imp-11.0 Where]")]
    return []


def constant_of_shape(node, ctx: Ctx):
    value = next((a.t for a in node.attribute if a.name == "value"), None)
    if value is None:
        return []
    tag = _TAGS.get(value.data_type, str(value.data_type))
    if tag == "UINT8":
        return [(REFUSED, "a UINT8 value [chk-10.1 ConstantOfShape L211-223]")]
    if tag not in ("FP32", "FP16", "BF16", "INT32", "INT64", "BOOL"):
        return [(UNVERIFIED, f"a value of type {tag} (ops-10.1 lists FP32, FP16, BF16, INT32, INT64, BOOL)")]
    return []


def scatter_nd(node, ctx: Ctx):
    if any(a.name == "reduction" for a in node.attribute) and ctx.line == "10.3":
        return [(REFUSED, "a reduction attribute, any value: 'Attribute reduction is not supported' [imp-10.1 "
                          "ScatterND L5151]")]
    return []


def _kernel_and_pads(node, attrs, where: str):
    pad = attrs.get("auto_pad", b"NOTSET")
    pad = pad.decode() if isinstance(pad, bytes) else pad
    if pad in ("SAME_UPPER", "SAME_LOWER") and "pads" in attrs:
        return [(REFUSED, f"auto_pad={pad} together with pads [utl-10.1 getKernelParams L819-822{where}]")]
    return []


def max_pool(node, ctx: Ctx):
    """MaxPool and AveragePool (utl-10.1 poolingHelper, chk-10.1 poolingCheckHelper)."""
    attrs, found = _attrs(node), []
    if node.op_type == "MaxPool" and len(node.output) > 1:
        found.append((REFUSED, "the Indices output: 'TensorRT does not support the indices output in MaxPool' "
                               "[chk-10.1 MaxPool L466-471]"))
    if any(d != 1 for d in attrs.get("dilations", ())):
        found.append((REFUSED, f"dilations {list(attrs['dilations'])}: only ones [chk-10.1 poolingCheckHelper L86-97]"))
    spatial = len(attrs.get("kernel_shape", ()))
    rank = len(ctx.shape(_input(node, 0)) or ()) or None
    if "kernel_shape" in attrs and not (spatial in (2, 3) or (spatial == 1 and rank == 3)):
        found.append((REFUSED, f"{spatial} spatial axes: 2 or 3, or 1 on a rank-3 input [utl-10.1 poolingHelper "
                               f"L1399-1401]"))
    elif rank is not None and "kernel_shape" in attrs and rank != spatial + 2:
        found.append((UNVERIFIED, f"kernel_shape of {spatial} axes on a rank-{rank} input"))
    return found + _kernel_and_pads(node, attrs, "")


def conv_transpose(node, ctx: Ctx):
    attrs, found = _attrs(node), []
    shape = ctx.shape(_input(node, 0))
    if shape is None:
        found.append((UNVERIFIED, "input rank unknown: imp-10.1 ConvTranspose L891-894 takes ranks 3 to 5"))
    elif not 3 <= len(shape) <= 5:
        found.append((REFUSED, f"input rank {len(shape)}: 'Deconvolution input must be at least 3D and at most 5D' "
                               f"[imp-10.1 ConvTranspose L891-894; imp-10.13, imp-11.0 ConvTranspose]"))
    weights = ctx.consts.get(_input(node, 1))
    if weights is not None and "kernel_shape" in attrs:
        dims = list(weights.dims)
        spatial = dims[2:] + ([1] if len(dims) == 3 else [])  # a rank-3 kernel gains a unit axis (L876-882)
        kernel = list(attrs["kernel_shape"]) + ([1] if len(dims) == 3 else [])
        if len(kernel) != len(spatial):
            found.append((UNVERIFIED, f"kernel_shape {list(attrs['kernel_shape'])} has not one entry per spatial axis "
                                      f"of the weights {dims}"))
        elif kernel != spatial:
            found.append((REFUSED, f"kernel_shape {list(attrs['kernel_shape'])} against weights {dims}: 'Attribute "
                                   f"kernel_shape misaligns' [imp-10.1 ConvTranspose L964-971; imp-10.13, imp-11.0 "
                                   f"ConvTranspose]"))
    return found


_EINSUM_CHARS = set("abcdefghijklmnopqrstuvwxyz->., ")


def einsum(node, ctx: Ctx):
    eq = _attrs(node).get("equation", b"")
    eq = eq.decode() if isinstance(eq, bytes) else eq
    bad = sorted(set(eq) - _EINSUM_CHARS)
    if bad:
        if ctx.line == "10.3":
            return [(REFUSED, f"characters {bad} in the equation [chk-10.1 Einsum L265-283]")]
        return [(UNVERIFIED, f"characters {bad} in the equation: refused by chk-10.1 Einsum L265-283, the checker of "
                             f"{ctx.line} not read here")]
    if ctx.line in ("10.3", "10.7"):
        terms = eq.replace(" ", "").split("->")[0].split(",")
        if "..." in eq or any(len(set(t)) != len(t) for t in terms):
            return [(UNVERIFIED, f"an ellipsis or a diagonal (a label repeated in one operand) in {eq!r}: "
                                 f"nvinfer-10.3 L5606 'does not support ellipsis, diagonal operations'; cl 10.12 "
                                 f"'full Einsum'")]
    return []


def batch_norm(node, ctx: Ctx):
    found = []
    if _attrs(node).get("training_mode", 0):
        found.append((REFUSED, "training_mode=1 [chk-10.1 BatchNormalization L170-176]"))
    for i in range(1, 5):
        shape = ctx.shape(_input(node, i))
        if shape is not None and len(shape) != 1:
            found.append((REFUSED, f"input {i} of rank {len(shape)}: must be (C, ) [imp-10.1 BatchNormalization "
                                   f"L308-315; imp-10.13 BatchNormalization]"))
    runtime = any(_input(node, i) not in ctx.consts for i in range(1, 5))
    x = ctx.tag(_input(node, 0))
    mixed = {ctx.tag(_input(node, i)) for i in range(1, 5)} - {x}
    if runtime and x and mixed and ctx.line in ("10.3", "10.7"):
        found.append((UNVERIFIED, f"runtime parameters of another type than the {x} input: the 10.1-GA fallback "
                                  f"(imp-10.1 batchnormFallback L197-260) does not cast them, the 10.13 pin does"))
    return found


def instance_norm(node, ctx: Ctx):
    found, x = [], ctx.tag(_input(node, 0))
    if x and x not in ("FP32", "FP16"):
        found.append((REFUSED, f"a {x} input: 'Inputs must be either FLOAT or FLOAT16' [imp-10.1 InstanceNormalization "
                               f"L2681-2683]"))
    others = {ctx.tag(_input(node, i)) for i in (1, 2)} - {None}
    if x and others - {x}:
        found.append((REFUSED, f"scale or bias of type {sorted(others - {x})} with a {x} input [imp-10.1 "
                               f"InstanceNormalization L2685-2689]"))
    shape = ctx.shape(_input(node, 0))
    if shape is not None and len(shape) < 3:
        found.append((REFUSED, f"rank {len(shape)}: 'Input to normalization should be at least 3D' [utl-10.1 "
                               f"normalizationHelper L1312-1314]"))
    return found


def scatter_elements(node, ctx: Ctx):
    shapes = [ctx.shape(_input(node, i)) for i in range(3)]
    if all(s is not None for s in shapes):
        data, indices, updates = shapes
        if not len(data) == len(indices) == len(updates):
            return [(REFUSED, f"ranks {[len(s) for s in shapes]}: data, indices and updates must have one rank "
                              f"[utl-10.1 addScatterLayer L2055-2059]")]
        for other, what in ((indices, "indices"), (updates, "updates")):
            if any(o is not None and d is not None and o > d for o, d in zip(other, data)):
                return [(REFUSED, f"{what} dims {list(other)} beyond data's {list(data)} [utl-10.1 addScatterLayer "
                                  f"L2062-2077]")]
    return []


def top_k(node, ctx: Ctx):
    k = ctx.value(_input(node, 1))
    if k is None:
        return [(UNVERIFIED, "a runtime K: ops-10.1 limits K to less than 3840, which only a constant K shows")]
    if k.size != 1 or int(k.reshape(-1)[0]) >= 3840:
        return [(UNVERIFIED, f"K={k.reshape(-1).tolist()}: ops-10.1 'K input must be less than 3840'")]
    return []


SPECIAL = {"Mod": mod, "Range": range_, "Conv": conv, "Resize": resize, "Slice": slice_, "Squeeze": squeeze,
           "Unsqueeze": unsqueeze, "Pad": pad, "Split": split, "QuantizeLinear": qdq, "DequantizeLinear": qdq,
           "If": if_, "Where": where, "ConstantOfShape": constant_of_shape, "ScatterND": scatter_nd,
           "MaxPool": max_pool, "AveragePool": max_pool, "ConvTranspose": conv_transpose, "Einsum": einsum,
           "BatchNormalization": batch_norm, "TopK": top_k, "InstanceNormalization": instance_norm,
           "ScatterElements": scatter_elements}

# The Converse2D plugin creator (engines/plugins/converse2d/converse2d_plugin.cpp createPlugin): the fields it
# reads, their ONNX attribute type and the values it accepts; any other field is ignored by it.
_INT, _STR = onnx.AttributeProto.INT, onnx.AttributeProto.STRING
PLUGIN_FIELDS = {
    "Converse2D": {
        "scale": (_INT, lambda v: 1 <= v <= 1 << 20),
        "padding": (_INT, lambda v: 0 <= v <= 1 << 20),
        "padding_mode": (_STR, lambda v: v in ("circular", "reflect", "replicate", "constant", "zeros")),
        "constant_kernel": (_INT, lambda v: v in (0, 1)),
    },
}


def plugin_fields(node) -> list[tuple[str, str]]:
    """A plugin-backed node's attributes against its creator's fields (refused: createPlugin returns null)."""
    found = []
    for attr in node.attribute:
        spec = PLUGIN_FIELDS.get(node.op_type, {}).get(attr.name)
        if spec is None:
            continue
        kind, ok = spec
        if attr.type != kind:
            found.append((REFUSED, f"plugin field {attr.name!r} must be {onnx.AttributeProto.AttributeType.Name(kind)} "
                                   f"[plugin]"))
            continue
        value = onnx.helper.get_attribute_value(attr)
        value = value.decode() if isinstance(value, bytes) else value
        if not ok(value):
            found.append((REFUSED, f"plugin field {attr.name}={value!r} is refused by the creator [plugin]"))
    return found
