"""Our own Q/DQ insertion for explicit-quantization (TensorRT-style) INT8 ONNX files.

Why not ``onnxruntime.quantization.quantize_static``: the sensitivity search needs hundreds of
differently quantized variants of one graph from one set of calibrated ranges; ``quantize_static``
re-runs calibration each call, decides Q/DQ placement itself (it would put Q/DQ on a custom node's
inputs and keep none of our "no Q/DQ into a custom node's internals" rule) and, with per-channel
symmetric weights, writes int32 biases that TensorRT does not take. ONNX Runtime's *calibrators*
are used for the ranges (``restormer_deploy.calibration.ranges``); the Q/DQ placement is here:

* a **layer** is one Conv (or MatMul) of the FP32 graph as it was in PyTorch: the rewrites of
  ``restormer_deploy.export.optimize`` split some 1x1 convolutions into chunks (``node_Conv_7/chunk0`` ...); the chunks
  form one layer (they share their input and its Q/DQ pair);
* weights: int8 initialisers, symmetric, zero point 0, one scale per output channel (axis 0 of a
  Conv weight, last axis of a MatMul weight), followed by ``DequantizeLinear``;
* activations: per-tensor symmetric int8 (scale = amax / 127, zero point 0) as a
  ``QuantizeLinear -> DequantizeLinear`` pair on every input of a quantized layer and on its output,
  so that TensorRT and ONNX Runtime (``QLinearConv``) fuse the whole ``DQ -> Conv -> Q`` into one
  int8 kernel. An output pair is left out when the output reaches a custom ``restormer`` node
  through data-movement ops (Split, Concat, Reshape ...) or is a graph output: no Q/DQ feeds a custom
  node's internals (attention normalisation and softmax, the Converse2D solve);
* biases stay float (TensorRT), or become int32 ``DequantizeLinear`` with scale s_x * s_w when
  ``int32_bias`` (ONNX Runtime only fuses a Conv whose every input is dequantized).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QUANT_OPS = ("Conv", "MatMul")
# Ops that only move data: a quantized value passing them still reaches whatever they feed.
PASS_THROUGH = {"Split", "Concat", "Reshape", "Transpose", "Slice", "Gather", "Squeeze", "Unsqueeze", "Identity",
                "Flatten", "DepthToSpace", "SpaceToDepth", "Expand", "Tile", "Pad", "Cast"}
QMAX = 127
# Weights of the ONNX Runtime CPU file that meet an int16 pair sum (``saturation_safe``): 7 bits. On x86
# without VNNI (AVX2, AVX-512 without VNNI) ONNX Runtime's U8S8 GEMM (MLAS: vpmaddubsw, then vpmaddwd)
# adds two uint8 x int8 products in int16 with saturation; uint8 activations with zero point 128 sit
# near 128, so 8-bit weights overflow it (255 * 127 * 2 = 64770 > 32767) and the result depends on
# the CPU. With |w| <= 63: 255 * 63 * 2 = 32130 <= 32767, exact on every CPU (ONNX Runtime's
# ``reduce_range``). Depthwise convolutions (one input channel per group) run another kernel.
QMAX_SATURATION_SAFE = 63
# Everything outside these domains is a custom node (``restormer::TransposedAttention``, ``restormer::Converse2D``,
# a new architecture's own): decided here without export.contract, which needs torch through the presets.
STANDARD_DOMAINS = ("", "ai.onnx", "com.microsoft")


@dataclass
class Layer:
    name: str                     # the PyTorch-level name (node name up to the first "/")
    op_type: str
    nodes: list[str] = field(default_factory=list)
    weights: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)   # activation inputs
    outputs: list[str] = field(default_factory=list)
    macs: int = 0


def _inits(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in model.graph.initializer}


def find_layers(model: onnx.ModelProto) -> list[Layer]:
    """Conv/MatMul layers of the main graph in graph order (custom nodes' functions are not looked at)."""
    inits = _inits(model)
    layers: dict[str, Layer] = {}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in QUANT_OPS:
            continue
        if node.op_type == "Conv" and (len(node.input) < 2 or node.input[1] not in inits):
            continue  # a convolution with a computed kernel is not a layer with weights
        if node.op_type == "MatMul" and not any(name in inits for name in node.input[:2]):
            continue  # activation x activation (e.g. a lowered Converse2D's DFTs, Constant nodes): no weights
        key = node.name.split("/")[0] or node.output[0]
        layer = layers.setdefault(key, Layer(key, node.op_type))
        layer.nodes.append(node.name)
        for i, name in enumerate(node.input[:2]):
            bucket = layer.weights if name in inits else layer.inputs
            if name and name not in bucket:
                bucket.append(name)
        layer.outputs.extend(node.output)
    return list(layers.values())


# How export/lowering.py names the nodes of a Converse2D solve it lowers (``<node>/matmul/...``,
# ``<node>/dft/...``): in an exported file its DFT MatMuls look like layers, but they are the solve.
LOWERED_SOLVE_MARKS = ("/matmul/", "/dft/")


def is_lowered_solve(layer: Layer) -> bool:
    return any(mark in name for name in layer.nodes for mark in LOWERED_SOLVE_MARKS)


def consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    uses: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            uses.setdefault(name, []).append(node)
    return uses


def reaches_custom(name: str, uses: dict[str, list[onnx.NodeProto]], depth: int = 0) -> bool:
    """Does tensor ``name`` feed a custom-domain node, directly or through data-movement ops?"""
    for node in uses.get(name, []):
        if node.domain not in STANDARD_DOMAINS:
            return True
        if node.op_type in PASS_THROUGH and depth < 16 and any(reaches_custom(o, uses, depth + 1) for o in node.output):
            return True
    return False


def output_takes_no_q(name: str, uses: dict[str, list[onnx.NodeProto]], graph_outputs: set[str]) -> bool:
    """A layer output that may not carry a Q/DQ pair: a graph output, or one that reaches a custom node."""
    return name in graph_outputs or reaches_custom(name, uses)


def activation_scale(amax: float) -> float:
    return float(max(amax, 1e-8)) / QMAX


def pairs_meet_in_int16(node: onnx.NodeProto, w: np.ndarray) -> bool:
    """Does ONNX Runtime's U8S8 GEMM sum pairs of this layer's products in int16 (without VNNI)? Every
    Conv with two or more input channels per group, and every MatMul; not a depthwise Conv."""
    return node.op_type == "MatMul" or (w.ndim >= 2 and w.shape[1] >= 2)


def quantize_weight(w: np.ndarray, axis: int, qmax: int = QMAX) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 on [-qmax, qmax]: (int8 values, float32 scales along ``axis``)."""
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    amax = np.abs(moved).max(axis=1)
    scale = (np.where(amax > 0, amax, 1.0) / qmax).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scale


def insert_qdq(model: onnx.ModelProto, layers: list[Layer], amax: dict[str, float],
               int32_bias: bool = False, quantize_outputs: bool = True, uint8_activations: bool = False,
               saturation_safe: bool = False) -> onnx.ModelProto:
    """A copy of ``model`` with the given layers quantized (``amax``: tensor -> calibrated |max|).

    ``uint8_activations``: activations as uint8 with zero point 128 — the same symmetric grid
    (scale amax/127) shifted by 128, which is what ONNX Runtime's own S8->U8 pass makes of an int8
    pair and what its x86 int8 kernels (U8S8) need; used for the ONNX Runtime CPU file only.
    ``saturation_safe``: 7-bit weights where ONNX Runtime's U8S8 kernels sum pairs in int16
    (``QMAX_SATURATION_SAFE``), so that the file computes the same on CPUs with and without VNNI."""
    model = copy.deepcopy(model)
    graph = model.graph
    inits = _inits(model)
    uses = consumers(model)
    graph_outputs = {o.name for o in graph.output}
    wanted = {n for layer in layers for n in layer.nodes}
    new_inits: list[onnx.TensorProto] = []
    pairs: dict[str, str] = {}            # tensor -> its dequantized copy
    sources: dict[str, str] = {}          # dequantized copy -> tensor
    before: dict[str, list] = {}          # node name -> Q/DQ nodes to insert before it
    after: dict[str, list] = {}           # node name -> Q/DQ nodes to insert after it
    rewire_all: dict[str, str] = {}       # tensor -> dq name, for every consumer

    def scale_of(tensor: str) -> float:
        if tensor not in amax:
            raise KeyError(f"no calibrated range for tensor {tensor!r}")
        return activation_scale(amax[tensor])

    def make_pair(tensor: str, bucket: list) -> str:
        if tensor in pairs:
            return pairs[tensor]
        base = tensor.replace("/", "_")
        s, z = f"{base}__scale", f"{base}__zero"
        new_inits.append(numpy_helper.from_array(np.array(scale_of(tensor), np.float32), s))
        new_inits.append(numpy_helper.from_array(np.array(128, np.uint8) if uint8_activations else np.array(0, np.int8), z))
        q, dq = f"{base}__q", f"{base}__dq"
        bucket.append(helper.make_node("QuantizeLinear", [tensor, s, z], [q], name=f"{base}__QuantizeLinear"))
        bucket.append(helper.make_node("DequantizeLinear", [q, s, z], [dq], name=f"{base}__DequantizeLinear"))
        pairs[tensor] = dq
        sources[dq] = tensor
        return dq

    # outputs first: a quantized layer's output that is also a quantized layer's input gets one pair
    if quantize_outputs:
        for node in graph.node:
            if node.name not in wanted:
                continue
            out = node.output[0]
            if output_takes_no_q(out, uses, graph_outputs) or out not in amax:
                continue
            rewire_all[out] = make_pair(out, after.setdefault(node.name, []))

    for node in graph.node:
        if node.name not in wanted:
            continue
        ops: list = before.setdefault(node.name, [])
        w_scale = None
        for i, name in enumerate(list(node.input)):
            if not name:
                continue
            if i < 2 and name not in inits:  # activation
                node.input[i] = rewire_all.get(name) or make_pair(name, ops)
            elif i < 2:  # weight
                w = numpy_helper.to_array(inits[name]).astype(np.float32)
                axis = 0 if node.op_type == "Conv" else w.ndim - 1
                safe = saturation_safe and pairs_meet_in_int16(node, w)
                q, scale = quantize_weight(w, axis, QMAX_SATURATION_SAFE if safe else QMAX)
                base = f"{node.name.replace('/', '_')}__w{i}"
                new_inits += [numpy_helper.from_array(q, f"{base}_int8"),
                              numpy_helper.from_array(scale, f"{base}_scale"),
                              numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{base}_zero")]
                ops.append(helper.make_node("DequantizeLinear", [f"{base}_int8", f"{base}_scale", f"{base}_zero"],
                                            [f"{base}_dq"], name=f"{base}_DequantizeLinear", axis=axis))
                node.input[i] = f"{base}_dq"
                w_scale = scale
            elif i == 2 and node.op_type == "Conv" and int32_bias and name in inits and w_scale is not None:
                b = numpy_helper.to_array(inits[name]).astype(np.float64)
                x = node.input[0]
                s = scale_of(sources.get(x, x)) * w_scale.astype(np.float64)
                base = f"{node.name.replace('/', '_')}__bias"
                new_inits += [numpy_helper.from_array(np.round(b / s).astype(np.int32), f"{base}_int32"),
                              numpy_helper.from_array(s.astype(np.float32), f"{base}_scale"),
                              numpy_helper.from_array(np.zeros(s.shape, np.int32), f"{base}_zero")]
                ops.append(helper.make_node("DequantizeLinear", [f"{base}_int32", f"{base}_scale", f"{base}_zero"],
                                            [f"{base}_dq"], name=f"{base}_DequantizeLinear", axis=0))
                node.input[i] = f"{base}_dq"

    nodes = []
    for node in graph.node:
        nodes.extend(before.get(node.name, []))
        if node.name not in wanted:
            for i, name in enumerate(node.input):
                if name in rewire_all:
                    node.input[i] = rewire_all[name]
        nodes.append(node)
        nodes.extend(after.get(node.name, []))
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    # float weights no longer used by anything are dropped
    used = {name for n in graph.node for name in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return model


def conv_macs(model: onnx.ModelProto, layers: list[Layer], shapes: dict[str, tuple[int, ...]]) -> None:
    """Fill ``layer.macs`` from the output shapes of a run (``shapes``: tensor -> shape)."""
    inits = _inits(model)
    by_name = {n.name: n for n in model.graph.node}
    for layer in layers:
        layer.macs = 0
        for node_name in layer.nodes:
            node = by_name[node_name]
            out = shapes.get(node.output[0])
            if out is None:
                continue
            if node.op_type == "Conv":
                w = inits[node.input[1]].dims  # (Cout, Cin/group, kh, kw)
                layer.macs += int(np.prod(out)) * int(np.prod(w[1:]))
            else:
                a = shapes.get(node.input[0]) or tuple(inits[node.input[0]].dims)
                layer.macs += int(np.prod(out)) * int(a[-1])


def qdq_summary(model: onnx.ModelProto) -> dict:
    """Counts and properties of the Q/DQ nodes, for tests and the report."""
    inits = _inits(model)
    zps, per_channel = [], 0
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zp = numpy_helper.to_array(inits[node.input[2]])
            zps.append(int(np.abs(zp).max()))
            if zp.ndim == 1:
                per_channel += 1
    return {
        "quantize_linear": sum(n.op_type == "QuantizeLinear" for n in model.graph.node),
        "dequantize_linear": sum(n.op_type == "DequantizeLinear" for n in model.graph.node),
        "per_channel_dequantize": per_channel,
        "max_abs_zero_point": max(zps, default=0),
        "int8_initializers": sum(i.data_type == TensorProto.INT8 for i in model.graph.initializer),
    }
