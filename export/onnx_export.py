"""PyTorch reference -> ONNX with custom ``restormer`` nodes, verified before it is written.

One direction: load the model, build the graph in stages (``restormer_deploy.export.stages``: trace and the FP32
graph, a quantizer's Q/DQ graph for INT8, the precision and lowering passes, the metadata), check it
(onnx.checker, an ONNX Runtime session, parity with PyTorch on a sample image) and only then move it
into place.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from restormer_deploy.export.contract import PARITY_FLOORS
from restormer_deploy.export.functions import ONNX_OPSET
from restormer_deploy.export.ort_session import cpu_session
from restormer_deploy.export.islands import IslandResult, fp16_with_islands
from restormer_deploy.export.stages import (LOWERINGS, PRECISIONS, TARGETS, ZOO_EXPORTERS, ExportOptions, Quantizer, apply_passes,
                                            check_sizes, finish, prepare, self_check_size, trace)
from restormer_deploy.restormer.errors import BadInput, CheckFailed, one_line
from restormer_deploy.restormer.fileio import atomic_write, sha256_file
from restormer_deploy.restormer.imageio import read_image
from restormer_deploy.restormer.metrics import psnr_peak1
from restormer_deploy.restormer.presets import ASSETS, ModelSpec, load_model, official_weights
from restormer_deploy.restormer.zoo import is_zoo_architecture

DFT_TENSORRT = (11, 2)  # the first TensorRT whose ONNX parser imports DFT (release notes 11.2)


class ExportError(CheckFailed):
    """The export's self-check failed (shape, NaN/Inf or parity below the floor); nothing was written."""


@dataclass(kw_only=True)
class ExportResult:
    path: str
    precision: str
    converse_lowering: str
    max_abs_err: float
    psnr_vs_torch: float
    nodes: dict = field(default_factory=dict)
    seconds: float = 0.0
    int8: dict | None = None  # the calibration / sensitivity report of an int8 export
    converse2d: int = 0  # Converse2D solves the lowering applied to (0: the model has none)
    fp32_islands: int = 0  # FP32 islands of an FP16 file (restormer_deploy.export.islands)
    exporter: str = "dynamo"
    psnr_fp16_arithmetic: float | None = None  # FP16 file under emulated FP16 arithmetic against PyTorch FP32

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def node_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts = Counter(f"{n.domain}::{n.op_type}" if n.domain else n.op_type for n in model.graph.node)
    return dict(sorted(counts.items()))


SAMPLES = ("astronaut.png", "coffee.png")


def sample_inputs(spec: ModelSpec, size: int | tuple[int, int] = 64, sample: str = SAMPLES[0]) -> tuple[np.ndarray, ...]:
    """A real image crop (bundled sample; mirrored beyond its 192 pixels) of ``size`` (or (h, w)) in the
    model's channels, plus a blur kernel if it takes one."""
    h, w = (size, size) if isinstance(size, int) else size
    img = read_image(ASSETS / "samples" / sample, channels=min(spec.in_channels, 3))
    if img.shape[0] < h or img.shape[1] < w:
        img = np.pad(img, ((0, max(0, h - img.shape[0])), (0, max(0, w - img.shape[1])), (0, 0)), mode="symmetric")
    img = img[:h, :w]
    x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    if spec.in_channels == 6:  # dual-pixel: two views
        x = np.concatenate([x, x[..., ::-1].copy()], axis=1)
    if spec.needs_kernel:
        g = np.exp(-0.5 * (np.arange(7) - 3) ** 2 / 1.6**2)
        k = np.outer(g, g)
        return x, (k / k.sum()).astype(np.float32)[None, None]
    return (x,)


def verify(path: Path, net: torch.nn.Module, spec: ModelSpec, *, size: int | tuple[int, int] = 64) -> tuple[float, float]:
    """onnx.checker full check, an ONNX Runtime session, and parity with PyTorch on a real image:
    (max abs error, PSNR peak 1)."""
    onnx.checker.check_model(str(path), full_check=True)
    session = cpu_session(path, threads=0, level="all")  # ONNX Runtime's defaults
    inputs = sample_inputs(spec, size)
    feeds = {}
    for meta, value in zip(session.get_inputs(), inputs):
        feeds[meta.name] = value.astype(np.float16 if meta.type == "tensor(float16)" else np.float32)
    got = session.run(None, feeds)[0].astype(np.float32)
    with torch.inference_mode():
        ref = net(*[torch.from_numpy(v.copy()) for v in inputs]).numpy()
    if got.shape != ref.shape:
        raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch {ref.shape}")
    if not np.isfinite(got).all():
        raise ExportError("ONNX Runtime produced NaN or Inf")
    return float(np.abs(got - ref).max()), psnr_peak1(got, ref)


def write_verified(out: Path, model: onnx.ModelProto, net: torch.nn.Module, spec: ModelSpec, *, precision: str,
                   size: int | tuple[int, int] = 64) -> tuple[float, float]:
    """Save ``model`` to a temporary beside ``out``, verify it, and move it into place only if its
    parity reaches ``PARITY_FLOORS[precision]``: (max abs error, PSNR)."""
    checked = []

    def write(tmp: Path) -> None:
        onnx.save(model, str(tmp))
        max_abs, psnr = verify(tmp, net, spec, size=size)
        if psnr < PARITY_FLOORS[precision]:
            raise ExportError(
                f"self-check failed: PSNR vs PyTorch {psnr:.1f} dB < {PARITY_FLOORS[precision]:.0f} dB for "
                f"{precision} (max abs error {max_abs:.2e})"
            )
        checked[:] = [max_abs, psnr]

    atomic_write(out, write)
    return checked[0], checked[1]


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


def _check_request(out: Path, options: ExportOptions, quantizer: Quantizer | None) -> None:
    """Bad options fail before any work (a quantizer's own options included)."""
    if options.precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {options.precision!r}")
    if options.precision == "int8" and quantizer is None:
        raise BadInput("precision int8 needs a quantizer (e.g. restormer_deploy.calibration.int8.Int8Quantizer)")
    if options.precision != "int8" and quantizer is not None:
        raise BadInput(f"a quantizer is only used with precision int8, not {options.precision}")
    if quantizer is not None:
        quantizer.check()
    newest = newest_opset()
    if not ONNX_OPSET <= options.opset <= newest:
        raise ValueError(f"--opset {options.opset}: must be {ONNX_OPSET} (DFT for Converse2D's reference function) to "
                         f"{newest} (the newest both this onnx and this torch exporter know)")
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise ValueError(f"cannot write {out}: it is a folder (give a file name ending in .onnx)")


def _source_sha256(spec: ModelSpec, weights: str | os.PathLike | None) -> str:
    """sha256 of the weights file the model came from ("" when there is none)."""
    source = Path(weights) if weights else (Path(spec.weights) if spec.weights else None)
    if source is not None and not source.is_absolute() and not source.is_file():
        source = official_weights(spec)
    return sha256_file(source) if source is not None and source.is_file() else ""


def _torch_outputs(net: torch.nn.Module, inputs: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
    with torch.inference_mode():
        # copies: a model may change its input in place (RCAN's mean shift), and the inputs are reused
        return [net(*[torch.from_numpy(v.copy()) for v in x]).float().numpy() for x in inputs]


def size_parity(graph: onnx.ModelProto, net: torch.nn.Module, spec: ModelSpec, batches=(2, 1)) -> tuple[float, str]:
    """The worst PSNR of an FP32 graph (ONNX Runtime) against PyTorch over ``check_sizes`` and
    ``batches`` (the two bundled samples), and where it was reached."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(graph.SerializeToString(), so, providers=["CPUExecutionProvider"])
    worst, where = float("inf"), ""
    for size in check_sizes(spec):
        both = np.concatenate([sample_inputs(spec, size, name)[0] for name in SAMPLES])
        for b in batches:  # a trace may fix the batch it saw
            x = both[:b]
            at = f"{size[0]}x{size[1]} batch {b}"
            try:
                got = session.run(None, {session.get_inputs()[0].name: x})[0]
            except Exception as exc:  # shapes fixed at export: ONNX Runtime refuses another size
                return float("-inf"), f"{at}: {one_line(exc)[:200]}"
            ref = _torch_outputs(net, [(x,)])[0]
            value = psnr_peak1(got, ref) if got.shape == ref.shape and np.isfinite(got).all() else float("-inf")
            if value < worst:
                worst, where = value, at + ("" if got.shape == ref.shape else f" (shape {got.shape} != {ref.shape})")
    return worst, where


_ZOO_TRACES: dict[tuple, tuple[onnx.ModelProto, str, int]] = {}  # (weights, mtime) -> the last verified trace


def _mtime(path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except (OSError, TypeError):
        return 0


def trace_zoo(net: torch.nn.Module, spec: ModelSpec, *, target: str = "ort", optimize: bool = True) -> tuple[onnx.ModelProto, str, int]:
    """The FP32 graph of a third-party model, its exporter and its largest batch (0: any): the
    TorchScript exporter at opset 17, else the dynamo exporter at opset 18, traced at batch 2; the
    first whose graph matches PyTorch (>= the FP32 floor) at every size of ``check_sizes`` and at
    batches 1 and 2. Failing that, the same traced at batch 1 and checked at batch 1 (the file then
    runs one tile at a time). ExportError names each exporter's failure otherwise."""
    key = (spec.weights, _mtime(spec.weights))
    if key in _ZOO_TRACES:  # the same checkpoint exported again (another precision or target): no new trace
        raw, name, max_batch = _ZOO_TRACES[key]
        return prepare(copy.deepcopy(raw), optimize=optimize, target=target), name, max_batch
    failures = []
    for batch in (2, 1):
        for name, tracer in ZOO_EXPORTERS.items():
            try:
                raw = tracer(net, spec, batch=batch)
                graph = prepare(copy.deepcopy(raw), optimize=optimize, target=target)
            except Exception as exc:
                failures.append(f"{name} (batch {batch}): {type(exc).__name__}: {one_line(exc)[:300]}")
                continue
            worst, where = size_parity(graph, net, spec, batches=(2, 1) if batch == 2 else (1,))
            if worst >= PARITY_FLOORS["fp32"]:
                _ZOO_TRACES.clear()  # one checkpoint at a time: traces of large models are large
                _ZOO_TRACES[key] = (raw, name, 0 if batch == 2 else 1)
                return graph, name, 0 if batch == 2 else 1
            failures.append(f"{name} (batch {batch}): {worst:.1f} dB against PyTorch at {where}")
    raise ExportError(f"{spec.name} ({spec.architecture}) does not export: " + "; ".join(failures))


def measure_islands(graph: onnx.ModelProto, net: torch.nn.Module, spec: ModelSpec, options: ExportOptions) -> IslandResult:
    """The FP32 islands of the FP16 file, measured on the bundled samples at the export's check size
    (``restormer_deploy.export.islands``); ``graph`` gets unique node names."""
    size = self_check_size(spec, options.verify_size)
    inputs = [sample_inputs(spec, size, name) for name in SAMPLES]
    names = [i.name for i in graph.graph.input if i.name not in {x.name for x in graph.graph.initializer}]
    feeds = [dict(zip(names, x)) for x in inputs]
    refs = _torch_outputs(net, inputs)

    def convert(model: onnx.ModelProto, islands) -> onnx.ModelProto:
        return apply_passes(model, precision="fp16", converse_lowering=options.converse_lowering, io_fp16=options.io_fp16,
                            inline=options.inline, islands=islands)

    return fp16_with_islands(graph, feeds, refs, convert=convert, floor=PARITY_FLOORS["fp16"])


def export(model: str, out: str | os.PathLike, *, weights: str | os.PathLike | None = None,
           options: ExportOptions = ExportOptions(), quantizer: Quantizer | None = None) -> ExportResult:
    """Export MODEL to ``out``; the file appears only after the self-check passed.

    ``quantizer`` (``precision="int8"`` only, e.g. ``restormer_deploy.calibration.int8.Int8Quantizer``) turns the
    FP32 graph into the Q/DQ graph; its ``on_accept`` runs once the verified file is written."""
    t0 = time.perf_counter()
    out = Path(out)
    _check_request(out, options, quantizer)
    net, spec = load_model(model, weights)
    if quantizer is not None:
        quantizer.check(spec)
    lowering = resolve_lowering(options.converse_lowering, spec, target=options.target, tensorrt=options.tensorrt)
    options = dataclasses.replace(options, converse_lowering=lowering)
    extra: dict[str, str] = {}
    if is_zoo_architecture(spec.architecture):
        graph, extra["exporter"], max_batch = trace_zoo(net, spec, target=options.target, optimize=options.optimize)
        spec = dataclasses.replace(spec, max_batch=max_batch)
    else:
        graph = prepare(trace(net, spec, opset=options.opset), optimize=options.optimize, target=options.target)
    converse2d = node_counts(graph).get("restormer::Converse2D", 0)
    quantized = quantizer(graph, spec, net) if quantizer is not None else None
    islands: dict[str, str] = {}
    if options.precision == "fp16":
        chosen = measure_islands(graph, net, spec, options)
        islands = chosen.islands
        extra.update(fp32_islands=json.dumps(islands, sort_keys=True),
                     psnr_fp16_arithmetic=f"{chosen.psnr_fp16_arithmetic:.2f}")
        if chosen.psnr_fp16_arithmetic < PARITY_FLOORS["fp16"]:  # nan (not emulated) passes: ORT's check still runs
            raise ExportError(f"self-check failed: under FP16 arithmetic (emulated) the FP16 graph reaches "
                              f"{chosen.psnr_fp16_arithmetic:.1f} dB against FP32, under the {PARITY_FLOORS['fp16']:.0f} dB "
                              f"floor, with {len(islands)} FP32 islands after {chosen.rounds} localisation rounds"
                              + (f" (last added: {chosen.added[-1]})" if chosen.added else ""))
    onnx_model = finish(quantized or graph, spec, options, source_sha256=_source_sha256(spec, weights), islands=islands,
                        extra=extra)
    size = self_check_size(spec, options.verify_size)
    max_abs, psnr = write_verified(out, onnx_model, net, spec, precision=options.precision, size=size)
    if quantized is not None:
        quantized.on_accept()
    return ExportResult(path=str(out), precision=options.precision, converse_lowering=lowering, max_abs_err=max_abs,
                        psnr_vs_torch=psnr, nodes=node_counts(onnx_model), seconds=time.perf_counter() - t0,
                        int8=quantized.report if quantized is not None else None, converse2d=converse2d,
                        fp32_islands=len(islands), exporter=extra.get("exporter", "dynamo"),
                        psnr_fp16_arithmetic=float(extra["psnr_fp16_arithmetic"]) if "psnr_fp16_arithmetic" in extra else None)
