"""PyTorch reference -> ONNX with custom ``restormer`` nodes, verified before it is written.

One direction: load the model, trace it with the dynamo exporter (the two custom ops become
``TransposedAttention`` / ``Converse2D`` nodes through ``torch.onnx.ops.symbolic``), rewrite the FP32
graph for speed (``export.optimize``: fused LayerNormalization, no channel Splits), attach their
reference functions, lower Converse2D to MatMuls if asked, convert to FP16 if asked, stamp the
metadata, check it (onnx.checker, an ONNX Runtime session, parity with PyTorch on a sample image)
and only then move it into place.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx.inliner
import torch

from export.fp16 import convert_to_fp16
from export.functions import DOMAIN, ONNX_OPSET, attach_functions, mark_constant_kernels
from export.lowering import lower_converse2d
from export.optimize import optimize_for_inference
from restormer import __version__ as tool_version
from restormer.fileio import atomic_write
from restormer.imageio import read_image
from restormer.metrics import psnr_peak1
from restormer.presets import ASSETS, ModelSpec, load_model

PRECISIONS = ("fp32", "fp16", "int8")
LOWERINGS = ("function", "matmul", "dft", "auto")
TARGETS = ("ort", "trt")
DFT_TENSORRT = (11, 2)  # the first TensorRT whose ONNX parser imports DFT (release notes 11.2)
# Parity floors of the self-check, PSNR against PyTorch FP32 (peak 1, outputs clamped to [0, 1]).
MIN_PSNR = {"fp32": 60.0, "fp16": 45.0, "int8": 35.0}
ORT_IR_VERSION = 10  # onnxruntime 1.18+ reads IR 10
_DROP_METADATA = ("pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node", "pkg.torch.onnx.name_scopes")


class ExportError(RuntimeError):
    """The export or its self-check failed; nothing was written."""


@dataclass
class ExportResult:
    path: str
    precision: str
    converse_lowering: str
    max_abs_err: float
    psnr_vs_torch: float
    nodes: dict = field(default_factory=dict)
    seconds: float = 0.0
    int8: dict | None = None  # the calibration / sensitivity report of an int8 export

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _example_inputs(spec: ModelSpec, size: int, batch: int = 2) -> tuple[torch.Tensor, ...]:
    # Batch 2 and a non-trivial size: the exporter specialises dimensions whose example value is 0 or 1.
    x = torch.rand(batch, spec.in_channels, size, size)
    if spec.needs_kernel:
        return x, torch.full((batch, 1, 7, 7), 1 / 49)
    return (x,)


def trace(net: torch.nn.Module, spec: ModelSpec, opset: int = ONNX_OPSET) -> onnx.ModelProto:
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
    program = torch.onnx.export(
        net, _example_inputs(spec, size), dynamo=True, opset_version=opset, dynamic_shapes=dynamic,
        input_names=names, output_names=["output"], optimize=True, verbose=False,
    )
    model = program.model_proto
    model.ir_version = min(model.ir_version, ORT_IR_VERSION)
    return model


def strip_trace_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node stack traces (they leak local paths and bloat the file)."""
    for node in model.graph.node:
        keep = [p for p in node.metadata_props if p.key not in _DROP_METADATA]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)


def set_metadata(model: onnx.ModelProto, spec: ModelSpec, precision: str, source_sha256: str) -> None:
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
    }
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def node_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts = Counter(f"{n.domain}::{n.op_type}" if n.domain else n.op_type for n in model.graph.node)
    return dict(sorted(counts.items()))


def _sha256(path: Path | None) -> str:
    if path is None or not path.is_file():
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sample_inputs(spec: ModelSpec, size: int = 64) -> tuple[np.ndarray, ...]:
    """A real image crop (bundled sample) in the model's channels, plus a blur kernel if it takes one."""
    img = read_image(ASSETS / "samples" / "astronaut.png", channels=min(spec.in_channels, 3))
    img = img[:size, :size]
    x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    if spec.in_channels == 6:  # dual-pixel: two views
        x = np.concatenate([x, x[..., ::-1].copy()], axis=1)
    if spec.needs_kernel:
        g = np.exp(-0.5 * (np.arange(7) - 3) ** 2 / 1.6**2)
        k = np.outer(g, g)
        return x, (k / k.sum()).astype(np.float32)[None, None]
    return (x,)


def verify(path: Path, net: torch.nn.Module, spec: ModelSpec, precision: str, size: int = 64) -> tuple[float, float]:
    """onnx.checker full check, an ONNX Runtime session, and parity with PyTorch on a real image."""
    import onnxruntime as ort

    onnx.checker.check_model(str(path), full_check=True)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = sample_inputs(spec, size)
    feeds = {}
    for meta, value in zip(session.get_inputs(), inputs):
        feeds[meta.name] = value.astype(np.float16 if meta.type == "tensor(float16)" else np.float32)
    got = session.run(None, feeds)[0].astype(np.float32)
    with torch.inference_mode():
        ref = net(*[torch.from_numpy(v) for v in inputs]).numpy()
    if got.shape != ref.shape:
        raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch {ref.shape}")
    if not np.isfinite(got).all():
        raise ExportError("ONNX Runtime produced NaN or Inf")
    return float(np.abs(got - ref).max()), psnr_peak1(got, ref)


def build_onnx(net, spec: ModelSpec, precision: str, converse_lowering: str, io_fp16: bool, inline: bool,
               source_sha256: str, opset: int = ONNX_OPSET, optimize: bool = True, *, target: str = "ort") -> onnx.ModelProto:
    model = trace(net, spec, opset)
    return finish_onnx(model, spec, precision, converse_lowering, io_fp16, inline, source_sha256, optimize, target=target)


def finish_onnx(model: onnx.ModelProto, spec: ModelSpec, precision: str, converse_lowering: str, io_fp16: bool,
                inline: bool, source_sha256: str, optimize: bool = True, *, target: str = "ort") -> onnx.ModelProto:
    """Everything after the trace (``model`` is modified; pass a copy to reuse a trace).

    ``target``: ``ort`` (ONNX Runtime: every rewrite that makes it faster) or ``trt`` (only forms the
    TensorRT parser imports; ``export.optimize``)."""
    strip_trace_metadata(model)
    if optimize:
        # FP32 graph rewrites (fused LayerNorm, split/padded 1x1 -> depthwise chunks), before the FP16
        # pass: the new LayerNorm nodes carry the class hierarchy that places the FP32 islands.
        model, _ = optimize_for_inference(model, target=target)
    model = attach_functions(model)
    if precision == "fp16":
        model = convert_to_fp16(model, io_fp16=io_fp16)
    mark_constant_kernels(model)
    if converse_lowering in ("matmul", "dft"):
        # After the FP16 pass: the lowered solve casts its FP16 inputs to FP32 and computes there.
        model = lower_converse2d(model, converse_lowering)
    for node in model.graph.node:  # the class hierarchy was only needed to place the FP32 islands
        keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.class_hierarchy"]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    if inline:
        model = onnx.inliner.inline_local_functions(model)
    set_metadata(model, spec, precision, source_sha256)
    return model


def resolve_lowering(converse_lowering: str, spec: ModelSpec, *, target: str = "ort",
                     tensorrt: tuple[int, ...] | None = None) -> str:
    """``auto``: ``dft`` for TensorRT 11.2+ (its parser imports DFT, cuFFT-backed: no plugin library),
    else ``matmul`` (plugin-free on every TensorRT; and on ONNX Runtime's CPU, whose DFT takes an
    O(N²) path on lengths that are not powers of two, the faster one:
    benchmarks/onnx_converse_lowering.py)."""
    if converse_lowering not in LOWERINGS:
        raise ValueError(f"--converse-lowering must be one of {LOWERINGS}, got {converse_lowering!r}")
    if target not in TARGETS:
        raise ValueError(f"--target must be one of {TARGETS}, got {target!r}")
    if converse_lowering == "auto":
        return "dft" if target == "trt" and tensorrt is not None and tuple(tensorrt[:2]) >= DFT_TENSORRT else "matmul"
    return converse_lowering


def newest_opset() -> int:
    """The newest default-domain opset both the installed onnx and torch's exporter support."""
    from torch.onnx import _constants

    return min(onnx.defs.onnx_opset_version(), getattr(_constants, "ONNX_MAX_OPSET", ONNX_OPSET))


def export(
    model: str,
    out: Path,
    weights: str | os.PathLike | None = None,
    precision: str = "fp32",
    converse_lowering: str = "function",
    io_fp16: bool = False,
    inline: bool = False,
    opset: int = ONNX_OPSET,
    verify_size: int = 64,
    optimize: bool = True,
    int8=None,
    *,
    target: str = "ort",
    tensorrt: tuple[int, ...] | None = None,
) -> ExportResult:
    """Export MODEL to ``out``; the file appears only after the self-check passed.

    ``target``: the runtime the file is for, ``ort`` or ``trt`` (``finish_onnx``); ``tensorrt``: the
    TensorRT version a ``trt`` file is for, which ``--converse-lowering auto`` takes into account."""
    t0 = time.perf_counter()
    out = Path(out)
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8":  # calibration.int8.Int8Options; bad calibration input fails before any work
        from calibration.int8 import Int8Options

        int8 = int8 or Int8Options()
        int8.check()
    newest = newest_opset()
    if not ONNX_OPSET <= opset <= newest:
        raise ValueError(f"--opset {opset}: must be {ONNX_OPSET} (DFT for Converse2D's reference function) to {newest} "
                         f"(the newest both this onnx and this torch exporter know)")
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise ValueError(f"cannot write {out}: it is a folder (give a file name ending in .onnx)")
    net, spec = load_model(model, weights)
    lowering = resolve_lowering(converse_lowering, spec, target=target, tensorrt=tensorrt)
    source = Path(weights) if weights else (Path(spec.weights) if spec.weights else None)
    if source is not None and not source.is_absolute() and not source.is_file():
        from restormer.presets import official_weights

        source = official_weights(spec)
    report, accepted = None, lambda: None
    if precision == "int8":
        from calibration.int8 import build_int8

        onnx_model, report, accepted = build_int8(net, spec, int8, lowering, io_fp16, inline, _sha256(source), opset,
                                                  optimize, target=target)
    else:
        onnx_model = build_onnx(net, spec, precision, lowering, io_fp16, inline, _sha256(source), opset, optimize,
                                target=target)

    checked = {}

    def write_verified(tmp: Path) -> None:
        onnx.save(onnx_model, str(tmp))
        checked["max_abs"], checked["psnr"] = verify(tmp, net, spec, precision, verify_size)
        if checked["psnr"] < MIN_PSNR[precision]:
            raise ExportError(
                f"self-check failed: PSNR vs PyTorch {checked['psnr']:.1f} dB < {MIN_PSNR[precision]:.0f} dB for "
                f"{precision} (max abs error {checked['max_abs']:.2e})"
            )

    atomic_write(out, write_verified)
    accepted()
    max_abs, psnr = checked["max_abs"], checked["psnr"]
    counts = node_counts(onnx_model)
    return ExportResult(str(out), precision, lowering, max_abs, psnr, counts, time.perf_counter() - t0, report)


def custom_node_count(model: onnx.ModelProto, op_type: str) -> int:
    return sum(1 for n in model.graph.node if n.domain == DOMAIN and n.op_type == op_type)
