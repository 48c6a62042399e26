"""Per-operator form checks of the TensorRT lint beyond what an allow-list ``Rule`` holds.

Each check returns ``(verdict, message)`` pairs: ``REFUSED`` only where the cited parser source
refuses the form (a check that raises), ``UNVERIFIED`` for a form no read source says parses. The
labels in the messages are those of ``allowlist.SOURCES``. Used by ``lint.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

REFUSED, UNVERIFIED = "refused", "not verified"
FLOAT_TAGS = ("FP32", "FP16", "BF16", "DOUBLE")


@dataclass(frozen=True)
class Ctx:
    """What a check may look at: constant tensors by name, element-type tags and shapes (a dim is
    None when unknown; the shape is None when the rank is unknown) and the allow-list line."""

    consts: dict
    tags: dict
    shapes: dict
    line: str

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
    else:
        return None, rank
    if axes:
        if rank is None:
            return None, rank
        changed = [axes[i] % rank for i in changed]
    return changed, rank


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


SPECIAL = {"Mod": mod, "Range": range_, "Conv": conv, "Resize": resize, "Slice": slice_, "Squeeze": squeeze,
           "Unsqueeze": unsqueeze, "Pad": pad, "Split": split, "QuantizeLinear": qdq, "DequantizeLinear": qdq,
           "If": if_}

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
