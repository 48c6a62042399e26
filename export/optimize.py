"""Export-time graph rewrites for fast CPU inference, run on the FP32 graph before the FP16 pass.

The dynamo exporter writes each Restormer LayerNorm as some twenty nodes (two ReduceMean over the
channel axis, Sub/Mul/Add/Sqrt/Div/Mul/Add plus the shape arithmetic of a broadcast) and the
two gated 1x1 -> depthwise-3x3 branches (MDTA's q/k/v, GDFN's gate/value) as one wide convolution
followed by a channel ``Split``. Both block ONNX Runtime's NCHWc convolution path: every LayerNorm
has to leave the blocked layout, and a ``Split`` (or a hidden width that is not a multiple of the
16-channel block, such as GDFN's 127/255/510/1021) forces reorders around it or a slow plain-NCHW
depthwise convolution.

Rewrites (each exact up to FP32 rounding; numerics are checked by the export self-check):

* ``fuse_layer_norms``: channel LayerNorm -> ``Transpose(NHWC) -> LayerNormalization(axis=-1) ->
  Transpose(NCHW)``. ONNX Runtime folds the first Transpose into the reorder out of the NCHWc
  layout (``ReorderOutput channels_last``). BiasFree (divide by the centred standard deviation but
  do not centre) uses LayerNormalization's ``InvStdDev`` output: ``x * inv_std * w``, with ``w``
  folded into the following convolutions' weights when only ungrouped convolutions read it.
* ``split_channel_chunks``: ``Conv1x1 -> Conv depthwise -> Split(axis 1)`` -> one 1x1 and one
  depthwise convolution per chunk (their weights sliced), so no ``Split`` is left. A chunk pair
  feeding ``Gelu(a) * b -> Conv1x1`` (GDFN) whose width is not a multiple of 16 is padded with zero
  channels (zero rows of the 1x1 and depthwise weights and biases, zero columns of the output 1x1):
  Gelu(0) * 0 = 0, so the padded channels contribute exactly nothing.

For TensorRT (``target="trt"``) only WithBias LayerNorms are fused, into single-output
``LayerNormalization``: the parser imports no other output (onnx-tensorrt docs/operators.md), and
the channel chunks serve no purpose there.

Every node a rewrite creates carries the ``pkg.torch.onnx.class_hierarchy`` metadata of the nodes
it replaces, which ``restormer_deploy.export.fp16`` uses to keep LayerNorm in FP32.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass, TopologicalSortPass

CLASS_HIERARCHY = "pkg.torch.onnx.class_hierarchy"
TARGETS = ("ort", "trt")  # the runtime a file is written for: ONNX Runtime, TensorRT
CHANNEL_BLOCK = 16  # ONNX Runtime's NCHWc block on AVX-512 (8 on AVX2 divides it)


# ---------------------------------------------------------------- small helpers


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None:
        return None
    tensor = value.const_value
    if tensor is None:
        producer = value.producer()
        if producer is not None and producer.op_type == "Constant" and producer.domain == "":
            attr = producer.attributes.get("value")
            tensor = attr.value if attr is not None else None
    return None if tensor is None else tensor.numpy()


def _is(node: ir.Node | None, op_type: str) -> bool:
    return node is not None and node.op_type == op_type and node.domain in ("", "ai.onnx")


def _producer(value: ir.Value | None, op_type: str) -> ir.Node | None:
    node = value.producer() if value is not None else None
    return node if _is(node, op_type) else None


def _consumers(value: ir.Value) -> list[ir.Node]:
    return list(dict.fromkeys(node for node, _ in value.uses()))


def _only_consumer(value: ir.Value, op_type: str) -> ir.Node | None:
    users = _consumers(value)
    if len(users) != 1 or value.is_graph_output():
        return None
    return users[0] if _is(users[0], op_type) else None


def _attr(node: ir.Node, name: str, default=None):
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


def _reduce_axes(node: ir.Node) -> list[int] | None:
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = _const(node.inputs[1])
        return None if axes is None else [int(a) for a in np.ravel(axes)]
    axes = _attr(node, "axes")
    return None if axes is None else [int(a) for a in axes]


def _metadata(*nodes: ir.Node) -> dict[str, str]:
    for node in nodes:
        if CLASS_HIERARCHY in node.metadata_props:
            return {CLASS_HIERARCHY: node.metadata_props[CLASS_HIERARCHY]}
    return {}


def _initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    base, i = name, 0
    while name in graph.initializers:
        i += 1
        name = f"{base}_{i}"
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.FLOAT),
                     const_value=ir.tensor(np.ascontiguousarray(array, dtype=np.float32), name=name))
    graph.register_initializer(value)
    return value


def _node(op_type: str, inputs, attributes=None, *, num_outputs: int = 1, meta: dict, name: str) -> ir.Node:
    attrs = [ir.convenience.convert_attribute(k, v) for k, v in (attributes or {}).items()]
    return ir.Node("", op_type, inputs, attrs, num_outputs=num_outputs, metadata_props=dict(meta), name=name)


def _permuted(shape: ir.Shape | None, perm) -> ir.Shape | None:
    return None if shape is None or len(shape) != len(perm) else ir.Shape([shape[p] for p in perm])


def _with_channels(shape: ir.Shape | None, channels: int) -> ir.Shape | None:
    if shape is None or len(shape) != 4:
        return None
    return ir.Shape([shape[0], channels, shape[2], shape[3]])


def _channel_vector(array: np.ndarray | None, channels: int) -> np.ndarray | None:
    """A per-channel (C,1,1) / (1,C,1,1) constant as a (C,) vector, else None."""
    if array is None or array.ndim not in (3, 4) or array.shape[-2:] != (1, 1):
        return None
    if array.ndim == 4 and array.shape[0] != 1:
        return None
    vec = array.reshape(-1)
    if vec.size != channels:
        return None
    return vec.astype(np.float32)


# ---------------------------------------------------------------- LayerNorm over channels


def _skip_broadcast(value: ir.Value) -> ir.Value:
    """Walk back through the exporter's keepdim broadcast (Reshape / Expand / Unsqueeze)."""
    while True:
        node = value.producer()
        if node is None or node.domain not in ("", "ai.onnx") or node.op_type not in ("Reshape", "Expand", "Unsqueeze", "Identity"):
            return value
        value = node.inputs[0]


def _match_layer_norm(sqrt: ir.Node):
    """From a ``Sqrt(var + eps)`` find the channel LayerNorm around it, or None."""
    add = _producer(sqrt.inputs[0], "Add")
    if add is None:
        return None
    eps = None
    for i in (0, 1):
        c = _const(add.inputs[i])
        if c is not None and c.size == 1:
            eps, var = float(np.ravel(c)[0]), add.inputs[1 - i]
    if eps is None:
        return None
    var_node = _producer(_skip_broadcast(var), "ReduceMean")
    if var_node is None or _reduce_axes(var_node) not in ([1], [-3]):
        return None
    if _attr(var_node, "keepdims", 1) == 0 and var is var_node.outputs[0]:
        return None  # the reduced axis is not restored: not a per-pixel statistic
    square = _producer(var_node.inputs[0], "Mul")
    if square is None or square.inputs[0] is not square.inputs[1]:
        pow_node = _producer(var_node.inputs[0], "Pow")
        if pow_node is None or _const(pow_node.inputs[1]) is None or float(np.ravel(_const(pow_node.inputs[1]))[0]) != 2.0:
            return None
        square = pow_node
    centred = square.inputs[0]
    sub = _producer(centred, "Sub")
    if sub is None:
        return None
    x, mean_value = sub.inputs
    mean = _producer(mean_value, "ReduceMean")
    if mean is None or mean.inputs[0] is not x or _reduce_axes(mean) not in ([1], [-3]) or _attr(mean, "keepdims", 1) != 1:
        return None
    if x.shape is None or len(x.shape) != 4 or not isinstance(x.shape[1], int):
        return None  # rank 4 with a static channel count: the LayerNormalization scale needs it
    channels = x.shape[1]
    div = _only_consumer(sqrt.outputs[0], "Div")
    if div is None or div.inputs[1] is not sqrt.outputs[0]:
        return None
    numerator = _producer(div.inputs[0], "Sub")
    if div.inputs[0] is centred or (numerator is not None and numerator.inputs[0] is x and numerator.inputs[1] is mean_value):
        with_bias = True
    elif div.inputs[0] is x:
        with_bias, numerator = False, None
    else:
        return None
    mul = _only_consumer(div.outputs[0], "Mul")
    if mul is None:
        return None
    other = mul.inputs[1] if mul.inputs[0] is div.outputs[0] else mul.inputs[0]
    weight = _channel_vector(_const(other), channels)
    if weight is None:
        return None
    out, bias, last = mul.outputs[0], None, mul
    add_bias = _only_consumer(out, "Add")
    if add_bias is not None and with_bias:
        other = add_bias.inputs[1] if add_bias.inputs[0] is out else add_bias.inputs[0]
        bias = _channel_vector(_const(other), weight.size)
        if bias is not None:
            out, last = add_bias.outputs[0], add_bias
    nodes = [mean, sub, square, var_node, add, sqrt, div, mul] + ([last] if last is not mul else [])
    if numerator is not None and numerator is not sub:
        nodes.append(numerator)
    return dict(x=x, eps=eps, weight=weight, bias=bias, with_bias=with_bias, out=out, last=last, nodes=nodes)


def _scalable_convs(value: ir.Value, channels: int) -> list[ir.Node] | None:
    """The consumers of VALUE when all are ungrouped Convs reading it as input 0 (so a per-input-
    channel scale can move into their constant weights), else None."""
    users = _consumers(value)
    if not users or value.is_graph_output():
        return None
    for node in users:
        if not _is(node, "Conv") or _attr(node, "group", 1) != 1 or any(node.inputs[i] is value for i in range(1, len(node.inputs))):
            return None
        w = _conv_weight(node)
        if w is None or w.shape[1] != channels:
            return None
    return users


def _bias_free_nchw(graph: ir.Graph, m: dict, meta: dict, tag: str) -> list[ir.Node]:
    """x / sqrt(var_c(x) + eps) * w from primitive ops on the NCHW tensor: the traced statistic
    without its broadcast shape arithmetic (Shape/Expand/Reshape), for parsers without a fused form."""
    axes = ir.Value(name=f"{tag}.axes", shape=ir.Shape([1]), type=ir.TensorType(ir.DataType.INT64),
                    const_value=ir.tensor(np.array([1], np.int64), name=f"{tag}.axes"))
    graph.register_initializer(axes)
    eps = _initializer(graph, f"{tag}.epsilon", np.array([m["eps"]], np.float32))
    weight = _initializer(graph, f"{tag}.scale", m["weight"].reshape(1, -1, 1, 1))
    x = m["x"]
    mean = _node("ReduceMean", [x, axes], {"keepdims": 1}, meta=meta, name=f"{tag}/mean")
    centred = _node("Sub", [x, mean.outputs[0]], meta=meta, name=f"{tag}/centre")
    square = _node("Mul", [centred.outputs[0], centred.outputs[0]], meta=meta, name=f"{tag}/square")
    var = _node("ReduceMean", [square.outputs[0], axes], {"keepdims": 1}, meta=meta, name=f"{tag}/var")
    shifted = _node("Add", [var.outputs[0], eps], meta=meta, name=f"{tag}/add_eps")
    std = _node("Sqrt", [shifted.outputs[0]], meta=meta, name=f"{tag}/std")
    normed = _node("Div", [x, std.outputs[0]], meta=meta, name=f"{tag}/div")
    scaled = _node("Mul", [normed.outputs[0], weight], meta=meta, name=f"{tag}/scale")
    new = [mean, centred, square, var, shifted, std, normed, scaled]
    stat = None if x.shape is None else ir.Shape([x.shape[0], 1, *x.shape[2:]])
    for node in new:
        node.outputs[0].type = m["out"].type
        node.outputs[0].shape = stat if node in (mean, var, shifted, std) else x.shape
    return new


def fuse_layer_norms(graph: ir.Graph, bias_free: bool = True) -> int:
    """``bias_free=False``: the BiasFree LayerNorms are not fused but rewritten as primitive ops
    (``_bias_free_nchw``): their fused form needs LayerNormalization's third output, which the
    TensorRT parser does not import."""
    count = 0
    for sqrt in [n for n in graph if _is(n, "Sqrt")]:
        m = _match_layer_norm(sqrt)
        if m is None:
            continue
        count += 1
        meta = _metadata(*m["nodes"])
        tag = f"layernorm_{count}"
        if not m["with_bias"] and not bias_free:
            new = _bias_free_nchw(graph, m, meta, tag)
            graph.insert_after(m["last"], new)
            m["out"].replace_all_uses_with(new[-1].outputs[0], replace_graph_outputs=True)
            continue
        weight = _initializer(graph, f"{tag}.scale", m["weight"])
        to_nhwc = _node("Transpose", [m["x"]], {"perm": [0, 2, 3, 1]}, meta=meta, name=f"{tag}/to_nhwc")
        new = [to_nhwc]
        if m["with_bias"]:
            inputs = [to_nhwc.outputs[0], weight]
            if m["bias"] is not None:
                inputs.append(_initializer(graph, f"{tag}.bias", m["bias"]))
            norm = _node("LayerNormalization", inputs, {"axis": -1, "epsilon": m["eps"]}, meta=meta, name=f"{tag}/norm")
            new.append(norm)
            normed = norm.outputs[0]
        else:
            # x / sqrt(var + eps) * w = x * InvStdDev * w, InvStdDev from LayerNormalization. When
            # only convolutions read the result, w moves into their weights (one pass less).
            norm = _node("LayerNormalization", [to_nhwc.outputs[0], weight], {"axis": -1, "epsilon": m["eps"]},
                         num_outputs=3, meta=meta, name=f"{tag}/stats")
            scaled = _node("Mul", [to_nhwc.outputs[0], norm.outputs[2]], meta=meta, name=f"{tag}/inv_std")
            new += [norm, scaled]
            normed = scaled.outputs[0]
            convs = _scalable_convs(m["out"], m["weight"].size)
            if convs is not None:
                for conv in convs:
                    w = _conv_weight(conv) * m["weight"][None, :, None, None]
                    conv.replace_input_with(1, _initializer(graph, f"{conv.inputs[1].name}.ln_scaled", w))
            else:
                weighted = _node("Mul", [scaled.outputs[0], weight], meta=meta, name=f"{tag}/scale")
                new.append(weighted)
                normed = weighted.outputs[0]
        to_nchw = _node("Transpose", [normed], {"perm": [0, 3, 1, 2]}, meta=meta, name=f"{tag}/to_nchw")
        new.append(to_nchw)
        graph.insert_after(m["last"], new)
        out = m["out"]
        nhwc = _permuted(m["x"].shape, (0, 2, 3, 1))
        for node in new[:-1]:
            node.outputs[0].shape, node.outputs[0].type = nhwc, out.type
        to_nchw.outputs[0].shape, to_nchw.outputs[0].type = out.shape, out.type
        out.replace_all_uses_with(to_nchw.outputs[0], replace_graph_outputs=True)
    return count


# ---------------------------------------------------------------- 1x1 -> depthwise -> Split


def _conv_weight(conv: ir.Node) -> np.ndarray | None:
    w = _const(conv.inputs[1])
    return None if w is None or w.ndim != 4 else w


def _conv_bias(conv: ir.Node) -> np.ndarray | None:
    return _const(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] is not None else None


def _is_pointwise(conv: ir.Node, w: np.ndarray) -> bool:
    return (w.shape[2:] == (1, 1) and _attr(conv, "group", 1) == 1 and all(s == 1 for s in _attr(conv, "strides", [1, 1]))
            and all(p == 0 for p in _attr(conv, "pads", [0, 0, 0, 0])) and _attr(conv, "auto_pad", "NOTSET") in ("NOTSET", "VALID"))


def _split_sizes(split: ir.Node, channels: int) -> list[int] | None:
    if _attr(split, "axis", 0) != 1:
        return None
    if len(split.inputs) > 1 and split.inputs[1] is not None:
        sizes = _const(split.inputs[1])
        return None if sizes is None else [int(s) for s in np.ravel(sizes)]
    n = len(split.outputs)
    if channels % n:
        return None
    return [channels // n] * n


def _round_up(n: int, block: int) -> int:
    return -(-n // block) * block


def _gated_ffn_output(first: ir.Value, second: ir.Value) -> tuple[ir.Node, ir.Node, ir.Node] | None:
    """``Gelu(first) * second -> Conv1x1``: the three nodes, when nothing else reads them."""
    gelu = _only_consumer(first, "Gelu")
    if gelu is None:
        return None
    mul = _only_consumer(gelu.outputs[0], "Mul")
    if mul is None or set(mul.inputs) != {gelu.outputs[0], second} or _only_consumer(second, "Mul") is not mul:
        return None
    out = _only_consumer(mul.outputs[0], "Conv")
    if out is None or out.inputs[0] is not mul.outputs[0]:
        return None
    w = _conv_weight(out)
    if w is None or not _is_pointwise(out, w):
        return None
    return gelu, mul, out


def split_channel_chunks(graph: ir.Graph, pad: bool = True) -> tuple[int, int]:
    """Rewrite ``Conv1x1 -> depthwise Conv -> Split(axis=1)`` as one 1x1 + depthwise pair per chunk.

    With ``pad``, the two chunks of a gated FFN (``Gelu(a) * b -> Conv1x1``) are padded with zero
    channels to a multiple of ``CHANNEL_BLOCK``. Returns (rewritten splits, padded FFNs).
    """
    splits = padded = 0
    for split in [n for n in graph if _is(n, "Split")]:
        dw = _producer(split.inputs[0], "Conv")
        if dw is None or _only_consumer(dw.outputs[0], "Split") is not split:
            continue
        pw = _producer(dw.inputs[0], "Conv")
        if pw is None or _only_consumer(pw.outputs[0], "Conv") is not dw:
            continue
        w_pw, w_dw = _conv_weight(pw), _conv_weight(dw)
        if w_pw is None or w_dw is None or not _is_pointwise(pw, w_pw):
            continue
        channels = w_pw.shape[0]
        if _attr(dw, "group", 1) != channels or w_dw.shape[:2] != (channels, 1):
            continue
        sizes = _split_sizes(split, channels)
        if sizes is None or sum(sizes) != channels or any(s <= 0 for s in sizes):
            continue
        b_pw, b_dw = _conv_bias(pw), _conv_bias(dw)
        if (len(pw.inputs) > 2 and pw.inputs[2] is not None and b_pw is None) or (
            len(dw.inputs) > 2 and dw.inputs[2] is not None and b_dw is None
        ):
            continue
        ffn = _gated_ffn_output(*split.outputs) if len(sizes) == 2 and sizes[0] == sizes[1] else None
        width = sizes[0]
        target = _round_up(width, CHANNEL_BLOCK) if (pad and ffn is not None) else None
        splits += 1
        padded += int(target is not None and target != width)

        new: list[ir.Node] = []
        starts = np.cumsum([0] + sizes[:-1])
        dw_attrs = {k: v.value for k, v in dw.attributes.items()}
        pw_attrs = {k: v.value for k, v in pw.attributes.items()}
        tag = pw.name or f"split_{splits}"
        for i, (start, size) in enumerate(zip(starts, sizes)):
            out_ch = target if target is not None else size
            sl = slice(int(start), int(start + size))

            def padded_rows(a: np.ndarray) -> np.ndarray:
                if out_ch == size:
                    return a[sl]
                z = np.zeros((out_ch,) + a.shape[1:], np.float32)
                z[:size] = a[sl]
                return z

            pw_in = [pw.inputs[0], _initializer(graph, f"{tag}.chunk{i}.weight", padded_rows(w_pw))]
            if b_pw is not None:
                pw_in.append(_initializer(graph, f"{tag}.chunk{i}.bias", padded_rows(b_pw)))
            pw_i = _node("Conv", pw_in, pw_attrs, meta=_metadata(pw), name=f"{tag}/chunk{i}")
            dw_in = [pw_i.outputs[0], _initializer(graph, f"{dw.name or tag}.chunk{i}.weight", padded_rows(w_dw))]
            if b_dw is not None:
                dw_in.append(_initializer(graph, f"{dw.name or tag}.chunk{i}.bias", padded_rows(b_dw)))
            dw_i = _node("Conv", dw_in, {**dw_attrs, "group": out_ch}, meta=_metadata(dw), name=f"{dw.name or tag}/chunk{i}")
            new += [pw_i, dw_i]
            old = split.outputs[i]
            pw_i.outputs[0].shape = _with_channels(old.shape, out_ch)
            dw_i.outputs[0].shape = _with_channels(old.shape, out_ch)
            pw_i.outputs[0].type = dw_i.outputs[0].type = old.type
            old.replace_all_uses_with(dw_i.outputs[0], replace_graph_outputs=True)
        graph.insert_after(split, new)
        if target is not None and target != width:
            gelu, mul, out = ffn
            for v in (gelu.outputs[0], mul.outputs[0]):
                v.shape = _with_channels(v.shape, target)
            w_out = _conv_weight(out)
            z = np.zeros((w_out.shape[0], target) + w_out.shape[2:], np.float32)
            z[:, :width] = w_out
            out.replace_input_with(1, _initializer(graph, f"{out.name or tag}.padded.weight", z))
    return splits, padded


# ---------------------------------------------------------------- driver


def optimize_for_inference(model: onnx.ModelProto, layer_norm: bool = True, split_chunks: bool = True,
                           pad: bool = True, target: str = "ort") -> tuple[onnx.ModelProto, dict[str, int]]:
    """Apply the rewrites above; returns the new model and how many of each were made.

    ``target="trt"``: only what the TensorRT parser imports and profits from: WithBias LayerNorms
    become single-output ``LayerNormalization`` (INormalizationLayer); BiasFree LayerNorms stay as
    their traced primitive ops (``restormer_deploy.export.fp16`` keeps them in an FP32 island); no channel chunks
    (they serve ONNX Runtime's NCHWc layout only).
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    ir_model = ir.serde.deserialize_model(model)
    graph = ir_model.graph
    stats = {}
    if layer_norm:
        stats["layer_norm"] = fuse_layer_norms(graph, bias_free=target == "ort")
    if split_chunks and target == "ort":
        stats["split_chunks"], stats["padded_ffn"] = split_channel_chunks(graph, pad=pad)
    RemoveUnusedNodesPass()(ir_model)
    TopologicalSortPass()(ir_model)
    # Drop initializers nothing reads any more (the replaced weights).
    for name in [n for n, v in graph.initializers.items() if not v.uses() and not v.is_graph_output()]:
        del graph.initializers[name]
    out = ir.serde.serialize_model(ir_model)
    return out, stats
