"""The stages of an export, each on an in-memory ONNX graph (``restormer_deploy.export.onnx_export`` runs them and
writes the verified file):

1. ``trace`` + ``prepare``: the FP32 graph (dynamo trace, trace metadata stripped, rewritten for the
   target runtime by ``restormer_deploy.export.optimize``, the custom nodes' reference functions attached). It runs
   in ONNX Runtime as is, which is what a ``Quantizer`` needs to calibrate it.
2. ``apply_passes``: the precision and lowering passes (FP16, constant-kernel marks, Converse2D
   lowering, the class hierarchy dropped, inlining), on the FP32 graph or on a quantizer's Q/DQ graph
   alike, so that a new pass is added once.
3. ``set_metadata``: the contract's metadata keys (``restormer_deploy.export.contract.METADATA_KEYS``), the
   optional ones (``OPTIONAL_METADATA_KEYS``: the recommended tiling) and a quantizer's own.

INT8 is a ``Quantizer`` (``restormer_deploy.calibration.int8.Int8Quantizer``): it takes the FP32 graph and returns the
Q/DQ graph; the exporter never calls calibration, calibration never calls the exporter.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import onnx
import onnx.inliner
import torch

from restormer_deploy.export.contract import tiling_metadata
from restormer_deploy.export.fp16 import convert_to_fp16
from restormer_deploy.export.functions import ONNX_OPSET, attach_functions, mark_constant_kernels
from restormer_deploy.export.lowering import lower_converse2d
from restormer_deploy.export.optimize import optimize_for_inference
from restormer_deploy.restormer import __version__ as tool_version
from restormer_deploy.restormer.presets import ModelSpec

PRECISIONS = ("fp32", "fp16", "int8")
FLOAT_PRECISIONS = ("fp32", "fp16")  # what a graph's float parts (an INT8 file's fallback included) run in
LOWERINGS = ("function", "matmul", "dft", "auto")
TARGETS = ("ort", "trt")
ORT_IR_VERSION = 10  # onnxruntime 1.18+ reads IR 10
_DROP_METADATA = ("pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node", "pkg.torch.onnx.name_scopes")
_CLASS_HIERARCHY = "pkg.torch.onnx.class_hierarchy"


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """What to export. ``target``: the runtime the file is for, ``ort`` (every rewrite that makes ONNX
    Runtime faster) or ``trt`` (only forms the TensorRT parser imports; ``restormer_deploy.export.optimize``);
    ``tensorrt``: the TensorRT version a ``trt`` file is for (``converse_lowering="auto"``)."""

    precision: str = "fp32"
    converse_lowering: str = "function"
    io_fp16: bool = False
    inline: bool = False
    opset: int = ONNX_OPSET
    verify_size: int = 64
    optimize: bool = True
    target: str = "ort"
    tensorrt: tuple[int, ...] | None = None


@dataclass(kw_only=True)
class Quantized:
    """A quantizer's answer: the Q/DQ graph, the precision of its remaining float parts, metadata to
    add to the file, a report for the result, and what to do once the verified file is written."""

    model: onnx.ModelProto
    fallback: str  # "fp16" or "fp32"
    metadata: dict[str, str] = field(default_factory=dict)
    report: dict | None = None
    on_accept: Callable[[], None] = lambda: None


class Quantizer(Protocol):
    def check(self, spec: ModelSpec | None = None) -> None:
        """Fail fast on bad input before any work: the options alone (``spec`` None, before the
        model is loaded), then, once the model is known, the data they name (before the trace)."""

    def __call__(self, fp32_graph: onnx.ModelProto, spec: ModelSpec, net: torch.nn.Module) -> Quantized:
        """The quantized graph of ``fp32_graph`` (the output of ``prepare``; not modified)."""


# --------------------------------------------------------------------------- 1. the FP32 graph


def example_inputs(spec: ModelSpec, size: int, batch: int = 2) -> tuple[torch.Tensor, ...]:
    # Batch 2 and a non-trivial size: the exporter specialises dimensions whose example value is 0 or 1.
    x = torch.rand(batch, spec.in_channels, size, size)
    if spec.needs_kernel:
        return x, torch.full((batch, 1, 7, 7), 1 / 49)
    return (x,)


# Third-party notices that every trace printed and a user can do nothing about (issue 19): the
# exporter's registry logs one line per torchvision op it skips, and torch's own pytree code warns
# about its own deprecated API. Silenced only around the trace; anything else still shows.
_QUIET_LOGS = {"torch.onnx._internal.exporter._registration": "torchvision is not installed"}
_QUIET_WARNINGS = (
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # two inputs share the batch Dim on purpose (image and kernel): torch notes it keeps one name
    (UserWarning, r"# The axis name: \w+ will not be used, since it shares the same shape constraints"),
)


class _DropPrefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


@contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the known third-party notices of ``torch.onnx.export`` (``_QUIET_LOGS``, ``_QUIET_WARNINGS``)."""
    filters = [(logging.getLogger(name), _DropPrefix(prefix)) for name, prefix in _QUIET_LOGS.items()]
    for logger, drop in filters:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            for category, message in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        for logger, drop in filters:
            logger.removeFilter(drop)


def trace(net: torch.nn.Module, spec: ModelSpec, *, opset: int = ONNX_OPSET) -> onnx.ModelProto:
    """Dynamo export with dynamic batch, height and width; custom nodes, no functions yet."""
    if opset < ONNX_OPSET:
        raise ValueError(f"opset {opset} is too old: Converse2D's reference function needs DFT from opset {ONNX_OPSET}")
    batch = torch.export.Dim("batch", min=1, max=1024)
    height = torch.export.Dim("height", min=spec.pad_multiple * 2, max=16384)
    width = torch.export.Dim("width", min=spec.pad_multiple * 2, max=16384)
    image = {0: batch, 2: height, 3: width}
    size = max(32, 4 * spec.pad_multiple)
    names = ["input", "kernel"] if spec.needs_kernel else ["input"]
    dynamic = (image, {0: batch}) if spec.needs_kernel else (image,)
    with quiet_exporter():
        program = torch.onnx.export(
            net, example_inputs(spec, size), dynamo=True, opset_version=opset, dynamic_shapes=dynamic,
            input_names=names, output_names=["output"], optimize=True, verbose=False,
        )
    model = program.model_proto
    model.ir_version = min(model.ir_version, ORT_IR_VERSION)
    return model


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def check_sizes(spec: ModelSpec) -> list[tuple[int, int]]:
    """Input sizes (height, width) that meet the model's size requirements, to check an export at:
    two squares and, unless the model takes squares only, a non-square one."""
    m, lo = max(spec.pad_multiple, 1), max(spec.min_size, 16)
    a = _round_up(max(lo, 48), m)
    b = _round_up(max(lo, 48) + max(m, 16), m)
    sizes = [(a, a), (b, b)] if a != b else [(a, a)]
    if not spec.square:
        sizes.append((a, b))
    return sizes


def self_check_size(spec: ModelSpec, default: int) -> int | tuple[int, int]:
    """The input size an export is checked at: ``default`` for our families, the first of
    ``check_sizes`` for a third-party model (whose size requirements ``default`` may not meet)."""
    from restormer_deploy.restormer.zoo import is_zoo_architecture

    return check_sizes(spec)[0] if is_zoo_architecture(spec.architecture) else default


def trace_torchscript(net: torch.nn.Module, spec: ModelSpec, *, opset: int = 17, batch: int = 2) -> onnx.ModelProto:
    """torch.onnx's TorchScript exporter with dynamic batch, height and width (a third-party model)."""
    import io

    h, w = check_sizes(spec)[0]
    x = torch.rand(batch, spec.in_channels, h, w)
    buf = io.BytesIO()
    with quiet_exporter(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=opset, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                        "output": {0: "batch", 2: "out_height", 3: "out_width"}})
    model = onnx.load_from_string(buf.getvalue())
    model.ir_version = min(model.ir_version, ORT_IR_VERSION)
    return model


def trace_dynamo(net: torch.nn.Module, spec: ModelSpec, *, opset: int = 18, batch: int = 2) -> onnx.ModelProto:
    """The dynamo exporter for a third-party model: height and width declared as multiples of the
    model's ``pad_multiple`` (so its own padding to that multiple is traced away), at least ``min_size``."""
    m = max(spec.pad_multiple, 1)
    lo = max(spec.min_size, 2 * m, 16)
    example_batch, batch = batch, (torch.export.Dim("batch", min=1, max=1024) if batch > 1 else None)
    if m > 1:
        height = m * torch.export.Dim("hq", min=-(-lo // m), max=16384 // m)
        width = m * torch.export.Dim("wq", min=-(-lo // m), max=16384 // m)
    else:
        height = torch.export.Dim("height", min=lo, max=16384)
        width = torch.export.Dim("width", min=lo, max=16384)
    h, w = check_sizes(spec)[0]
    with quiet_exporter(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (torch.rand(example_batch, spec.in_channels, h, w),), dynamo=True, opset_version=opset,
                                    dynamic_shapes=({0: batch, 2: height, 3: width},), input_names=["input"],
                                    output_names=["output"], optimize=True, verbose=False)
    model = program.model_proto
    model.ir_version = min(model.ir_version, ORT_IR_VERSION)
    return model


ZOO_EXPORTERS = {"torchscript": trace_torchscript, "dynamo": trace_dynamo}


def _drop_node_metadata(model: onnx.ModelProto, keys: tuple[str, ...]) -> None:
    for node in model.graph.node:
        keep = [p for p in node.metadata_props if p.key not in keys]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)


def strip_trace_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node stack traces (they leak local paths and bloat the file)."""
    _drop_node_metadata(model, _DROP_METADATA)


def prepare(traced: onnx.ModelProto, *, optimize: bool = True, target: str = "ort") -> onnx.ModelProto:
    """The FP32 graph of a trace (``traced`` is modified; pass a copy to reuse a trace)."""
    strip_trace_metadata(traced)
    model = traced
    if optimize:
        # FP32 graph rewrites (fused LayerNorm, split/padded 1x1 -> depthwise chunks), before the FP16
        # pass: the new LayerNorm nodes carry the class hierarchy that places the FP32 islands.
        model, _ = optimize_for_inference(model, target=target)
    return attach_functions(model)


# --------------------------------------------------------------------------- 2. precision and lowering


def apply_passes(model: onnx.ModelProto, *, precision: str, converse_lowering: str, io_fp16: bool = False,
                 inline: bool = False, islands=()) -> onnx.ModelProto:
    """The passes after ``prepare`` (and after quantization); ``precision``: that of the float parts."""
    if precision not in FLOAT_PRECISIONS:
        raise ValueError(f"the float parts of a graph are fp32 or fp16, got {precision!r}")
    if precision == "fp16":
        model = convert_to_fp16(model, io_fp16=io_fp16, islands=islands)
    mark_constant_kernels(model)
    if converse_lowering in ("matmul", "dft") and any(n.op_type == "Converse2D" for n in model.graph.node):
        # After the FP16 pass: the lowered solve casts its FP16 inputs to FP32 and computes there.
        model = lower_converse2d(model, converse_lowering)
    _drop_node_metadata(model, (_CLASS_HIERARCHY,))  # only needed to place the FP32 islands
    if inline:
        model = onnx.inliner.inline_local_functions(model)
    return model


# --------------------------------------------------------------------------- 3. metadata


def set_metadata(model: onnx.ModelProto, spec: ModelSpec, precision: str, source_sha256: str, *,
                 extra: dict[str, str] | None = None) -> None:
    """The contract's keys (``restormer_deploy.export.contract.METADATA_KEYS``, in that order), the optional
    tiling keys, then ``extra``."""
    props = {
        "architecture": spec.architecture,
        "preset": spec.name,
        "task": spec.task,
        "scale": str(spec.scale),
        "in_channels": str(spec.in_channels),
        "out_channels": str(spec.out_channels),
        "value_range": "0,1",
        "pad_multiple": str(spec.pad_multiple),
        "precision": precision,
        "tool_version": tool_version,
        "source_sha256": source_sha256,
        **tiling_metadata(spec),
        **(extra or {}),
    }
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def finish(graph: onnx.ModelProto | Quantized, spec: ModelSpec, options: ExportOptions, *,
           source_sha256: str = "", islands=(), extra: dict[str, str] | None = None) -> onnx.ModelProto:
    """Stages 2 and 3 on a prepared FP32 graph or a quantizer's answer (``graph`` may be modified);
    ``options.converse_lowering`` as resolved (``auto`` lowers nothing)."""
    quantized = graph if isinstance(graph, Quantized) else None
    model = quantized.model if quantized else graph
    model = apply_passes(model, precision=quantized.fallback if quantized else options.precision,
                         converse_lowering=options.converse_lowering, io_fp16=options.io_fp16, inline=options.inline,
                         islands=islands)
    set_metadata(model, spec, options.precision, source_sha256,
                 extra={**(extra or {}), **(quantized.metadata if quantized else {})})
    return model
