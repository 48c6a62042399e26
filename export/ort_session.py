"""ONNX Runtime CPU sessions for the exported models: threading, graph optimisation and two layout
passes that ONNX Runtime's NCHWc optimiser does not make on its own.

``make_session(path, threads=2)`` is what the benchmark (and the runtime) use:

* ``intra_op_num_threads = threads``, ``inter_op_num_threads = 1``, sequential execution (the
  graph is a chain: parallel branches would only fight for the same cores), and no spinning of
  idle pool threads unless ``spin=True``;
* ``ORT_ENABLE_ALL``: constant folding, the ``Gelu`` / ``LayerNormalization`` / ``MatMul``
  fusions and, on x86, the NCHWc layout optimiser, which runs convolutions in a channel-blocked
  layout and inserts ``ReorderInput`` / ``ReorderOutput`` around everything else;
* ``layout=True`` (default) adds two passes, both on the in-memory model, never on the file:

  1. *before* ONNX Runtime optimises: a residual ``Add`` whose other operand does not come out of a
     convolution (a pixel-(un)shuffle or a channel concatenation at the start of each level) keeps
     the whole residual stream of that level in plain NCHW, because ONNX Runtime converts an
     ``Add`` to the blocked layout only when both inputs are blocked. An identity ``MaxPool``
     (kernel 1, stride 1) on that operand is converted to the blocked layout, so the stream is
     blocked from the first block on: the residual additions fuse into the convolutions and each
     LayerNorm's ``Transpose`` to NHWC folds into the reorder out of the blocked layout.
  2. *after* ONNX Runtime optimises (through ``optimized_model_filepath``): every
     ``Transpose(NHWC -> NCHW) -> ReorderInput`` pair, which the optimiser leaves after each
     LayerNorm, becomes one ``ReorderInput(channels_last=1)``, which reads NHWC directly; ONNX
     Runtime's Transpose of that shape is single-threaded and the slowest node in the graph. The
     patched model is then loaded with graph optimisations off (it is already optimised).

  The optimised model is specific to this machine's NCHWc block size; it lives in a temporary
  folder, unless ``optimized_model_filepath`` asks to keep it for inspection.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import onnx
from onnx import helper

NCHWC_DOMAIN = "com.microsoft.nchwc"
# Ops whose output ONNX Runtime's NCHWc optimiser can produce in the blocked layout.
_BLOCKED_PRODUCERS = {"Conv", "Add", "Sum", "Mul", "MaxPool", "AveragePool", "BatchNormalization", "Relu",
                      "Sigmoid", "Tanh", "Resize", "Upsample"}
_CHANNEL_BLOCK = 16


def session_options(threads: int = 2, level: str = "all", profile_prefix: str | None = None, spin: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def _channels(model: onnx.ModelProto) -> dict[str, int]:
    """Static channel count (dim 1) of every 4-D float value with a known shape."""
    out = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        t = vi.type.tensor_type
        if t.elem_type == onnx.TensorProto.FLOAT and len(t.shape.dim) == 4 and t.shape.dim[1].HasField("dim_value"):
            out[vi.name] = t.shape.dim[1].dim_value
    return out


def block_residual_streams(model: onnx.ModelProto) -> int:
    """Pass 1: identity MaxPool on residual operands that would keep a stream in plain NCHW."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    channels = _channels(model)
    targets: list[str] = []
    for node in graph.node:
        if node.op_type != "Add" or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
            continue
        kinds = [producer.get(name) for name in node.input]
        for i in (0, 1):
            mine, other = kinds[i], kinds[1 - i]
            name = node.input[i]
            if (other is not None and other.op_type == "Conv" and other.domain in ("", "ai.onnx")
                    and mine is not None and mine.op_type not in _BLOCKED_PRODUCERS
                    and channels.get(name, 0) % _CHANNEL_BLOCK == 0 and channels.get(name, 0) > 0
                    and name not in targets):
                targets.append(name)
    if not targets:
        return 0
    renamed = {name: f"{name}__blocked" for name in targets}
    nodes = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
        nodes.append(node)
        for name in node.output:
            if name in renamed:
                nodes.append(helper.make_node("MaxPool", [name], [renamed[name]], name=f"{name}/to_blocked",
                                              kernel_shape=[1, 1], strides=[1, 1]))
    for vi in list(graph.value_info):  # the identity keeps the shape (ONNX Runtime matches symbolic dims)
        if vi.name in renamed:
            copy = graph.value_info.add()
            copy.CopyFrom(vi)
            copy.name = renamed[vi.name]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(targets)


def fuse_nhwc_reorders(model: onnx.ModelProto) -> int:
    """Pass 2 (on the ORT-optimised model): Transpose(0,3,1,2) -> ReorderInput => ReorderInput(channels_last)."""
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    drop = set()
    for node in graph.node:
        if node.op_type != "Transpose" or node.domain not in ("", "ai.onnx"):
            continue
        perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
        if perm != [[0, 3, 1, 2]] or node.output[0] in outputs:
            continue
        users = consumers.get(node.output[0], [])
        if not users or not all(u.op_type == "ReorderInput" and u.domain == NCHWC_DOMAIN for u in users):
            continue
        for user in users:
            attrs = [a for a in user.attribute if a.name != "channels_last"]
            del user.attribute[:]
            user.attribute.extend(attrs + [helper.make_attribute("channels_last", 1)])
            user.input[0] = node.input[0]
        drop.add(id(node))
    if drop:
        nodes = [n for n in graph.node if id(n) not in drop]
        del graph.node[:]
        graph.node.extend(nodes)
    return len(drop)


def _source(model: str | os.PathLike | onnx.ModelProto | bytes) -> str | bytes:
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    return model if isinstance(model, bytes) else str(model)


def cpu_session(model: str | os.PathLike | onnx.ModelProto | bytes, *, threads: int = 1, level: str = "basic"):
    """A plain ONNX Runtime CPU session (``session_options``; no layout passes): the export's
    self-check (``threads=0``: ONNX Runtime's default) and the INT8 calibration and search."""
    import onnxruntime as ort

    return ort.InferenceSession(_source(model), session_options(threads, level), providers=["CPUExecutionProvider"])


def make_session(model: str | os.PathLike | onnx.ModelProto | bytes, threads: int = 2, layout: bool = True,
                 spin: bool = False, optimized_model_filepath: str | os.PathLike | None = None,
                 profile_prefix: str | None = None):
    """An ONNX Runtime CPU session for MODEL (a path, a ModelProto or serialized bytes).

    ``spin=False`` (default) lets idle intra-op threads sleep instead of spinning: on a small
    machine that also runs other work, spinning threads steal the cores the busy ones need
    (Restormer 256², 2 threads, one other busy process: about 20 % faster without spinning).
    """
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if not layout:
        options = session_options(threads, "all", profile_prefix, spin)
        if optimized_model_filepath:
            options.optimized_model_filepath = str(optimized_model_filepath)
        return ort.InferenceSession(_source(model), options, providers=providers)

    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    elif isinstance(model, bytes):
        proto = onnx.load_from_string(model)
    else:
        proto = onnx.load(str(model))
    try:
        block_residual_streams(proto)
        with tempfile.TemporaryDirectory(prefix="ort_opt_") as tmp:
            first = Path(tmp) / "optimized.onnx"
            options = session_options(threads, "all")
            options.optimized_model_filepath = str(first)
            ort.InferenceSession(proto.SerializeToString(), options, providers=providers)
            optimized = onnx.load(str(first))
        fuse_nhwc_reorders(optimized)
        if optimized_model_filepath:
            onnx.save(optimized, str(optimized_model_filepath))
        options = session_options(threads, "disable", profile_prefix, spin)
        return ort.InferenceSession(optimized.SerializeToString(), options, providers=providers)
    except Exception as exc:  # the layout passes are an optimisation: never the reason a model fails to load
        warnings.warn(f"ONNX Runtime layout passes failed ({exc}); using the standard session", RuntimeWarning)
        return make_session(model, threads, layout=False, spin=spin, optimized_model_filepath=optimized_model_filepath,
                            profile_prefix=profile_prefix)
