"""INT8: calibration, per-layer sensitivity, a greedy mixed-precision search, Q/DQ ONNX.

``quantize_graph(fp32_graph, spec, options)`` is the one quantizer: an FP32 ONNX graph in, the Q/DQ
graph, its report and the range cache's writer out. Two callers:

* ``restormer_deploy.calibration.onnx_in.quantize_file`` (``restore-quantize IN.onnx``): an FP32 file
  written by this project, verified against that file on held-out images; no torch needed;
* ``Int8Quantizer``, the exporter's quantizer (``restormer_deploy.export.stages.Quantizer``)::

    export(model, out, options=ExportOptions(precision="int8"), quantizer=Int8Quantizer(Int8Options(...)))

  on the FP32 graph of a trace (rewritten by ``restormer_deploy.export.optimize``, the reference
  functions attached so that ONNX Runtime runs it); the exporter then applies its precision passes
  (FP16 for what stays in higher precision with ``fallback="fp16"``, for TensorRT; nothing with
  ``"fp32"``, ONNX Runtime CPU), the optional Converse2D lowering and the metadata (``precision=int8``).

``quantize_graph``:

1. the calibration (and search) images (``restormer_deploy.calibration.data``; ``Int8Quantizer`` reads
   them in ``check(spec)`` before the trace so that bad input fails fast);
2. ranges of every Conv/MatMul input and output from ONNX Runtime's calibrators, or from the JSON
   cache (``restormer_deploy.calibration.ranges``);
3. the candidate layers (not the first and last, not ``--exclude``, ...);
4. sensitivity and the greedy search (``restormer_deploy.calibration.search``), at one thread by default;
5. Q/DQ insertion (``restormer_deploy.calibration.qdq``) and the report (``restormer_deploy.calibration.report``).

Nothing here imports torch or the exporter at module level (``restore-quantize`` runs without torch).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx

from restormer_deploy.calibration.data import CalibrationError, ImageSet, load_images, select_paths
from restormer_deploy.calibration.options import Int8Options  # noqa: F401  (also importable from here)
from restormer_deploy.calibration.qdq import (Layer, consumers, conv_macs, find_layers, insert_qdq, is_lowered_solve,
                                              output_takes_no_q)
from restormer_deploy.calibration.ranges import Ranges, amax_of, calibrate, fingerprint, load_cache, save_cache
from restormer_deploy.calibration.report import int8_report
from restormer_deploy.calibration.search import greedy_search
from restormer_deploy.calibration.speed import cpu_speed
from restormer_deploy.export.ort_session import cpu_session

if TYPE_CHECKING:
    from restormer_deploy.export.stages import Quantized
    from restormer_deploy.restormer.presets import ModelSpec


class Int8Quantizer:
    """``restormer_deploy.export.stages.Quantizer`` for INT8 Q/DQ files; ``log``: progress lines (``print``)."""

    def __init__(self, options: Int8Options, *, log: Callable[[str], None] = print) -> None:
        self.options = options
        self.log = log
        self._sets: tuple[ModelSpec, tuple[ImageSet, ImageSet]] | None = None

    def check(self, spec: ModelSpec | None = None) -> None:
        self.options.check()
        if spec is not None:  # read once here (bad images fail before the trace), used by the call
            self._sets = (spec, load_sets(spec, self.options))

    def __call__(self, fp32_graph: onnx.ModelProto, spec: ModelSpec, net=None) -> Quantized:
        sets = self._sets[1] if self._sets is not None and self._sets[0] is spec else None
        return build_int8(fp32_graph, spec, self.options, sets=sets, log=self.log)


def build_int8(graph: onnx.ModelProto, spec: ModelSpec, opts: Int8Options, *,
               sets: tuple[ImageSet, ImageSet] | None = None, log=print) -> Quantized:
    """``quantize_graph`` as the exporter's ``Quantized`` (the range cache's writer as ``on_accept``:
    the exporter calls it once the file is accepted, so nothing is written on error)."""
    from restormer_deploy.export.stages import Quantized  # the exporter's type: torch is there anyway

    done = quantize_graph(graph, spec, opts, sets=sets, log=log)
    return Quantized(model=done.model, fallback=opts.fallback, metadata=done.metadata, report=done.report,
                     on_accept=done.save_cache)


# --------------------------------------------------------------------------- the stages


def load_sets(spec: ModelSpec, opts: Int8Options) -> tuple[ImageSet, ImageSet]:
    """The calibration images and the search images."""
    calib_paths = select_paths(opts.calib_dir, opts.calib_count)
    calib = load_images(calib_paths, spec, opts.calib_size or None, opts.degrade, opts.seed,
                        asked=opts.calib_count, what="calibration")
    if opts.search_dir is None:
        search = load_images(calib_paths, spec, opts.search_size or None, opts.degrade, opts.seed + 10_000,
                             what="search")
        search.notes.append("no --search-dir: the search uses the calibration images (other crops and noise)")
    else:
        paths = select_paths(opts.search_dir, opts.search_count)
        search = load_images(paths, spec, opts.search_size or None, opts.degrade, opts.seed,
                             asked=opts.search_count, what="search")
    return calib, search


def calibrated_ranges(graph: onnx.ModelProto, layers: list[Layer], calib: ImageSet, spec: ModelSpec,
                      opts: Int8Options, *, log=print) -> Ranges:
    """The ranges of every layer's inputs and outputs: from the cache when it matches, else calibrated."""
    settings = {"method": opts.calib_method, "images": calib.names, "crop": opts.calib_size or None,
                "degrade": opts.degrade if opts.degrade is not None else spec.degrade, "seed": opts.seed}
    fp = fingerprint(graph)
    ranges, cache_state = None, "not used"
    if opts.calib_cache is not None:
        ranges, why = load_cache(opts.calib_cache, fp, settings)
        cache_state = "hit" if ranges is not None else f"miss: {why}"
    if ranges is None:
        log(f"calibrating on {len(calib.names)} images ({opts.calib_method}) ...")
        ranges = calibrate(graph, calib.inputs, opts.calib_method, threads=opts.threads)
    needed = {t for layer in layers for t in layer.inputs + layer.outputs}
    missing = sorted(needed - ranges.keys())
    if missing and cache_state == "hit":
        raise CalibrationError(f"the calibration cache {opts.calib_cache} has no range for {missing[0]!r}")
    amax = amax_of(ranges)
    for t in missing:  # integer tensors etc.: nothing to calibrate; such layers cannot be quantized
        amax.pop(t, None)

    def save() -> None:
        if opts.calib_cache is not None and cache_state != "hit":
            save_cache(opts.calib_cache, fp, settings, ranges)

    return Ranges(amax=amax, settings=settings, cache_state=cache_state, save=save)


def layer_shapes(model: onnx.ModelProto, layers: list[Layer], spec: ModelSpec, size: int, threads: int = 1) -> dict:
    """Shapes of every layer's inputs and outputs in one FP32 run at ``size`` x ``size`` (batch 1)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    wanted = {t for layer in layers for t in layer.inputs + layer.outputs}
    existing = {o.name for o in probe.graph.output}
    for name in sorted(wanted - existing):
        probe.graph.output.add().name = name
    sess = cpu_session(probe, threads=threads)
    size = max(spec.pad_multiple, size - size % spec.pad_multiple)
    feeds = {}
    for meta in sess.get_inputs():
        if meta.name == "kernel":
            feeds[meta.name] = np.full((1, 1, 7, 7), 1 / 49, np.float32)
        else:
            feeds[meta.name] = np.zeros((1, spec.in_channels, size, size), np.float32) + 0.5
    names = [o.name for o in sess.get_outputs()]
    return {n: tuple(v.shape) for n, v in zip(names, sess.run(None, feeds))}


def _excluded(layers: list[Layer], opts: Int8Options) -> dict[str, str]:
    out = {}
    if not opts.quantize_ends and layers:
        out[layers[0].name] = "first layer (default)"
        out[layers[-1].name] = "last layer (default)"
    known = {l.name: l.name for l in layers}
    known.update({n: l.name for l in layers for n in l.nodes})
    for name in opts.exclude:
        if name not in known:
            sample = ", ".join(l.name for l in layers[:4])
            raise CalibrationError(f"--exclude {name!r}: no such Conv/MatMul layer (layers are named like {sample}, ...)")
        out.setdefault(known[name], "--exclude")
    return out


def select_candidates(graph: onnx.ModelProto, layers: list[Layer], amax: dict[str, float],
                      opts: Int8Options) -> tuple[list[Layer], dict[str, str]]:
    """(the layers the search may quantize, {layer: why it stays in higher precision})."""
    excluded = _excluded(layers, opts)
    quantizable = [l for l in layers if all(t in amax for t in l.inputs)]
    for l in layers:
        if l not in quantizable:
            excluded.setdefault(l.name, "no calibrated range")
    if opts.fallback == "fp32":
        # ONNX Runtime fuses DQ -> Conv -> Q into QLinearConv only with a Q on the output; a layer
        # whose output feeds a custom node (or is a graph output) cannot have one and would run as
        # a float Conv on dequantized weights, slower than plain FP32. TensorRT (fp16 fallback) fuses
        # such a layer with a float output, so there it stays INT8.
        uses, outputs = consumers(graph), {o.name for o in graph.graph.output}
        for l in layers:
            if any(output_takes_no_q(t, uses, outputs) for t in l.outputs):
                excluded.setdefault(l.name, "output feeds a custom node: no QLinearConv in ONNX Runtime (fp32 file)")
    return [l for l in quantizable if l.name not in excluded], excluded


# --------------------------------------------------------------------------- the composition


@dataclass(kw_only=True)
class Int8Graph:
    model: onnx.ModelProto               # the Q/DQ graph (float parts FP32; the exporter may make them FP16)
    report: dict                         # restormer_deploy.calibration.report.int8_report, plus "cpu_speed"
    metadata: dict[str, str]             # the file's int8_* metadata
    save_cache: Callable[[], None]       # writes the range cache: call it once the file is accepted


def quantize_graph(graph: onnx.ModelProto, spec, opts: Int8Options, *,
                   sets: tuple[ImageSet, ImageSet] | None = None, log=print) -> Int8Graph:
    """The Q/DQ graph of the FP32 ``graph`` (not modified). ``spec``: a ModelSpec or an
    ``onnx_in.OnnxSpec`` (what the images need: channels, scale, pad multiple, kernel, degradation)."""
    t0 = time.perf_counter()
    opts.check()
    calib, search = sets if sets is not None else load_sets(spec, opts)
    # an exported file's lowered Converse2D solves are no layers (the export quantizes before lowering)
    layers = [layer for layer in find_layers(graph) if not is_lowered_solve(layer)]
    if not layers:
        raise CalibrationError(f"{spec.name} has no Conv/MatMul layer with constant weights to quantize")
    ranges = calibrated_ranges(graph, layers, calib, spec, opts, log=log)
    conv_macs(graph, layers, layer_shapes(graph, layers, spec, opts.mac_size, opts.threads))
    candidates, excluded = select_candidates(graph, layers, ranges.amax, opts)
    ort_file = opts.fallback == "fp32"  # the ONNX Runtime CPU file: int32 biases, uint8 activations

    def quantize(chosen: list[Layer]) -> onnx.ModelProto:
        return insert_qdq(graph, chosen, ranges.amax, ort_file, uint8_activations=ort_file, saturation_safe=ort_file)

    found = greedy_search(graph, candidates, search, quantize=quantize, budget=opts.psnr_budget,
                          sensitivity=opts.sensitivity, threads=opts.threads, log=log)
    model = quantize(found.chosen)
    report = int8_report(opts=opts, calib=calib, search=search, ranges=ranges, layers=layers, found=found,
                         excluded=excluded, model=model, seconds=time.perf_counter() - t0)
    if opts.speed_check and ort_file:
        log(f"timing FP32 and INT8 in ONNX Runtime on the CPU ({opts.mac_size}x{opts.mac_size}, 1 thread) ...")
        report["cpu_speed"] = cpu_speed(graph, model, spec, opts.mac_size)
    metadata = {"int8_fallback": opts.fallback, "int8_calibration": f"{opts.calib_method}, {len(calib.names)} images"}
    return Int8Graph(model=model, report=report, metadata=metadata, save_cache=ranges.save)
