"""FP32 islands chosen by measurement, and FP16 arithmetic checked without a GPU.

ONNX Runtime's CPU provider has FP16 kernels for few operators: it casts the others' inputs to FP32,
computes there and removes the casts between neighbouring FP32 nodes, so an FP16 file run there keeps
most intermediate values in FP32 (an activation of 1e6 does not overflow). Its parity flatters an FP16
file. ``emulate_fp16`` rewrites an FP16 graph into an FP32 graph that rounds every FP16 tensor to
binary16 where it is produced (explicit Cast pairs, which ONNX Runtime keeps: an overflow becomes inf,
as on a GPU). Inside one node the arithmetic stays FP32, as GPU tensor cores accumulate FP16
products in FP32; FP16 accumulation inside a reduction is not modelled, which is why reductions are
islands.

``choose_islands`` measures the FP32 graph on calibration images and keeps in FP32 every node whose
inputs or outputs exceed ``DATA_MAX`` (ModelOpt AutoCast's ``data_max``) plus reductions,
normalisations, softmax and exponentials (``ALWAYS_FP32``); ``fp16_with_islands`` then checks the
FP16 graph with FP16 arithmetic against FP32 and, while it is under the floor, adds the first node
(in graph order) whose output diverges and tries again, a bounded number of times.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from restormer_deploy.export.fp16 import _float_types

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
DATA_MAX = 512.0  # ModelOpt AutoCast's default data_max
FP16_MAX = 65504.0
ALWAYS_FP32 = frozenset({
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    "ReduceProd", "LayerNormalization", "InstanceNormalization", "GroupNormalization", "LpNormalization",
    "MeanVarianceNormalization", "Softmax", "LogSoftmax", "Exp", "Log", "Pow", "Softplus", "CumSum",
})
MAX_ROUNDS = 8  # localise-and-retry rounds


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every node of the main graph a unique name (islands are named by node)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def _float_values(model: onnx.ModelProto) -> dict[str, int]:
    """Every tensor's element type, shapes inferred first (the FP16 pass's own reading of types)."""
    return _float_types(onnx.shape_inference.infer_shapes(model, data_prop=False))


def _session(model: onnx.ModelProto, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no fusion hides a tensor
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _with_outputs(model: onnx.ModelProto, names: list[str], elem_type: int) -> onnx.ModelProto:
    m = copy.deepcopy(model)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(helper.make_tensor_value_info(name, elem_type, None))
    return m


def intermediate_values(model: onnx.ModelProto, feeds: list[dict], names: list[str], elem_type: int = FLOAT,
                        threads: int = 1) -> list[dict[str, np.ndarray]]:
    """The values of ``names`` (tensors of ``model``) for each feed."""
    session = _session(_with_outputs(model, names, elem_type), threads)
    wanted = [o.name for o in session.get_outputs() if o.name in set(names)]
    return [dict(zip(wanted, session.run(wanted, feed))) for feed in feeds]


def activation_ranges(model: onnx.ModelProto, feeds: list[dict], threads: int = 1) -> dict[str, float]:
    """max |x| of every FP32 node output over ``feeds`` (inf when a value is not finite)."""
    types = _float_values(model)
    names = [o for n in model.graph.node for o in n.output if o and types.get(o) == FLOAT]
    ranges: dict[str, float] = {}
    for values in intermediate_values(model, feeds, names, threads=threads):
        for name, v in values.items():
            a = np.abs(v.astype(np.float64)) if v.size else np.zeros(1)
            m = float(a.max()) if np.isfinite(a).all() else float("inf")
            ranges[name] = max(ranges.get(name, 0.0), m)
    return ranges


SHAPE_ONLY = frozenset({"Shape", "Size", "ConstantOfShape", "EyeLike", "RandomNormalLike", "RandomUniformLike"})


def image_independent(model: onnx.ModelProto) -> set[str]:
    """Nodes whose values do not depend on the image (only on its shape, constants and weights):
    shape, position and mask arithmetic, which may index or compare and must not be rounded."""
    dependent = {i.name for i in model.graph.input} - {i.name for i in model.graph.initializer}
    independent = set()
    for node in model.graph.node:
        if node.op_type in SHAPE_ONLY or not any(n in dependent for n in node.input if n):
            independent.add(node.name)
        else:
            dependent.update(o for o in node.output if o)
    return independent


def initial_islands(model: onnx.ModelProto, ranges: dict[str, float], data_max: float = DATA_MAX) -> dict[str, str]:
    """node name -> why it is kept in FP32: its op type, shape/position arithmetic that does not
    depend on the image, a magnitude over ``data_max`` at an input or output, or an initializer
    beyond FP16's range."""
    inits = {i.name: i for i in model.graph.initializer}
    why: dict[str, str] = {}
    fixed = image_independent(model)
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.name in fixed and node.op_type not in ("Constant",):
            why[node.name] = "does not depend on the image (shape or position arithmetic)"
            continue
        if node.op_type in ALWAYS_FP32:
            why[node.name] = node.op_type
            continue
        big = [n for n in list(node.input) + list(node.output) if n and ranges.get(n, 0.0) > data_max]
        if big:
            why[node.name] = f"|x| {ranges[big[0]]:.3g} > {data_max:g} at {big[0]}"
            continue
        for n in node.input:
            if n in inits and inits[n].data_type == FLOAT:
                w = numpy_helper.to_array(inits[n])
                if w.size and np.abs(w).max() > FP16_MAX:
                    why[node.name] = f"initializer {n} beyond FP16"
                    break
    return why


# --------------------------------------------------------------------------- FP16 arithmetic


def emulate_fp16(fp16_model: onnx.ModelProto) -> onnx.ModelProto:
    """An FP32 graph computing what ``fp16_model`` computes with FP16 arithmetic: every FP16 tensor
    is rounded to binary16 where it is produced (a Cast pair). Local functions are inlined first;
    graphs with subgraphs (If, Loop, Scan) are refused (ValueError)."""
    import onnx.inliner

    model = onnx.inliner.inline_local_functions(copy.deepcopy(fp16_model))
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        raise ValueError("FP16 emulation does not cover graphs with subgraphs (If/Loop/Scan)")
    types = _float_values(model)
    half = {name for name, t in types.items() if t == HALF}
    nodes: list[onnx.NodeProto] = []

    def rounding(src: str, dst: str) -> None:
        nodes.append(helper.make_node("Cast", [src], [dst + "__h16"], name=f"emu16_{dst}_a", to=HALF))
        nodes.append(helper.make_node("Cast", [dst + "__h16"], [dst], name=f"emu16_{dst}_b", to=FLOAT))

    inputs_half = [vi.name for vi in graph.input if vi.name in half]
    renamed_inputs = {}
    for vi in graph.input:
        if vi.name in half:
            vi.type.tensor_type.elem_type = FLOAT
            renamed_inputs[vi.name] = vi.name + "__in32"
    for name in inputs_half:  # the FP16 input: rounded on entry
        rounding(renamed_inputs[name], name)
    for vi in graph.input:
        if vi.name in renamed_inputs:
            vi.name = renamed_inputs[vi.name]
    for init in graph.initializer:
        if init.data_type == HALF:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == HALF:
                attr.i = FLOAT
            if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == HALF:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float32), attr.t.name))
        outs = list(node.output)
        for i, name in enumerate(outs):
            if name in half:
                node.output[i] = name + "__raw"
        nodes.append(node)
        for name in outs:
            if name in half:
                rounding(name + "__raw", name)
    del graph.node[:]
    graph.node.extend(nodes)
    for vi in graph.output:
        if vi.type.tensor_type.elem_type == HALF:
            vi.type.tensor_type.elem_type = FLOAT
    del graph.value_info[:]
    return model


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (peak 1) of ``a`` against ``b``, both clamped to [0, 1]; -inf when ``a`` is not finite."""
    if a.shape != b.shape or not np.isfinite(a).all():
        return float("-inf")
    mse = float(np.mean((np.clip(a.astype(np.float64), 0, 1) - np.clip(b.astype(np.float64), 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


@dataclass
class IslandResult:
    model: onnx.ModelProto  # the FP16 graph
    islands: dict[str, str]  # node -> why it is FP32
    psnr_fp16_arithmetic: float  # worst over the feeds, emulated FP16 arithmetic against FP32
    rounds: int = 0
    added: list[str] = field(default_factory=list)  # nodes the localiser added


def first_divergence(fp32_model: onnx.ModelProto, emulated: onnx.ModelProto, feed32: dict, skip: set[str],
                     threads: int = 1) -> str | None:
    """The first node (graph order) of the FP32 graph, not in ``skip``, whose output under FP16
    arithmetic is not finite or differs from FP32 by more than 1 % of the FP32 tensor's range."""
    types = _float_values(fp32_model)
    order = [(n.name, o) for n in fp32_model.graph.node for o in n.output if o and types.get(o) == FLOAT]
    emu_names = {n for n in (o for node in emulated.graph.node for o in node.output)}
    names = [o for _, o in order if o in emu_names]
    ref = intermediate_values(fp32_model, [feed32], names, threads=threads)[0]
    emu_feed = {(k + "__in32" if any(vi.name == k + "__in32" for vi in emulated.graph.input) else k): v for k, v in feed32.items()}
    got = intermediate_values(emulated, [emu_feed], names, threads=threads)[0]
    for node, out in order:
        if node in skip or out not in ref or out not in got:
            continue
        r, g = ref[out].astype(np.float64), got[out].astype(np.float64)
        if r.shape != g.shape:
            continue
        if not np.isfinite(g).all() and np.isfinite(r).all():
            return node
        scale = float(np.abs(r).max()) if r.size else 0.0
        if scale > 0 and float(np.abs(g - r).max()) > 1e-2 * scale:
            return node
    return None


def run_emulated(emulated: onnx.ModelProto, feeds32: list[dict], threads: int = 1) -> list[np.ndarray]:
    session = _session(emulated, threads)
    names = {i.name for i in session.get_inputs()}
    out = []
    for feed in feeds32:
        f = {(k + "__in32" if k + "__in32" in names else k): v.astype(np.float32) for k, v in feed.items()}
        out.append(session.run(None, f)[0].astype(np.float32))
    return out


def fp16_with_islands(fp32_model: onnx.ModelProto, feeds32: list[dict], references: list[np.ndarray], *, convert,
                      floor: float, data_max: float = DATA_MAX, rounds: int = MAX_ROUNDS, threads: int = 1) -> IslandResult:
    """Measure, choose islands, convert (``convert(model, islands)`` -> FP16 graph), check with FP16
    arithmetic against ``references`` (the FP32 outputs), add the first diverging node while under
    ``floor``, ``rounds`` times; still under it, lower the magnitude threshold fourfold (down to 1) and
    go on. Returns the last attempt (its PSNR tells whether it reached the floor)."""
    name_nodes(fp32_model)
    ranges = activation_ranges(fp32_model, feeds32, threads=threads)
    islands = initial_islands(fp32_model, ranges, data_max)
    added: list[str] = []
    result = None
    total = 0
    while True:
        for _ in range(rounds + 1):
            fp16 = convert(copy.deepcopy(fp32_model), set(islands))
            try:
                emulated = emulate_fp16(fp16)
            except ValueError:  # subgraphs: the measured islands, unchecked under FP16 arithmetic
                return IslandResult(fp16, dict(islands), float("nan"), total, list(added))
            got = run_emulated(emulated, feeds32, threads)
            scores = [psnr(g, ref) for g, ref in zip(got, references)]
            result = IslandResult(fp16, dict(islands), min(scores), total, list(added))
            if result.psnr_fp16_arithmetic >= floor:
                return result
            node = first_divergence(fp32_model, emulated, feeds32[int(np.argmin(scores))], set(islands), threads)
            if node is None:
                break
            islands[node] = "diverged under FP16 arithmetic"
            added.append(node)
            total += 1
        if data_max <= 1:
            return result
        data_max = max(data_max / 4, 1.0)
        for name, why in initial_islands(fp32_model, ranges, data_max).items():
            islands.setdefault(name, why)
