"""INT8 export: calibration, per-layer sensitivity, a greedy mixed-precision search, Q/DQ ONNX.

Pipeline (``build_int8``), called by ``export.onnx_export.export(precision="int8")``:

1. read the calibration (and search) images, fail fast on bad input (``calibration.data``);
2. trace the model and run the FP32 rewrites (``export.optimize``); the reference functions are
   attached so that ONNX Runtime can run the FP32 graph for calibration;
3. ranges of every Conv/MatMul input and output from ONNX Runtime's calibrators, or from the JSON
   cache (``calibration.ranges``);
4. sensitivity: for every candidate layer, the task-PSNR loss on the search images when only that
   layer is INT8; then greedy: start with every candidate in INT8 and move the most sensitive one
   back to higher precision until the loss of the whole model is within the budget;
5. Q/DQ insertion (``calibration.qdq``), then the FP16 pass for what stays in higher precision
   (``fallback="fp16"``, for TensorRT) or nothing (``"fp32"``, ONNX Runtime CPU), the optional
   Converse2D lowering, metadata ``precision=int8``.

The search runs the FP32-fallback graph in ONNX Runtime on the CPU (FP16 changes the result by far
less than INT8 does), at one thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx.inliner

from calibration.data import CalibrationError, ImageSet, load_images, select_paths
from calibration.qdq import Layer, consumers, conv_macs, find_layers, insert_qdq, output_takes_no_q, qdq_summary
from calibration.ranges import METHODS, amax_of, calibrate, fingerprint, load_cache, save_cache
from restormer.imageio import from_float
from restormer.metrics import psnr, psnr_peak1, rgb_to_y
from restormer.presets import ModelSpec

FALLBACKS = ("fp16", "fp32")
MIN_INT8_MAC_SHARE = 0.80


@dataclass
class Int8Options:
    calib_dir: Path | None = None
    calib_count: int = 20
    calib_size: int | None = 128          # crop size; None or 0 = full images
    calib_method: str = "minmax"
    degrade: str | None = None            # default: the preset's
    seed: int = 0
    psnr_budget: float = 0.3
    fallback: str = "fp16"
    search_dir: Path | None = None        # default: the calibration images
    search_count: int | None = None
    search_size: int | None = 128
    exclude: list[str] = field(default_factory=list)
    quantize_ends: bool = False           # also quantize the first and last layer
    calib_cache: Path | None = None
    mac_size: int = 256
    sensitivity: bool = True              # per-layer analysis and greedy search
    threads: int = 1

    def check(self) -> None:
        if self.calib_dir is None:
            raise CalibrationError("--precision int8 needs --calib-dir DIR (a folder of clean images)")
        if self.calib_method not in METHODS:
            raise CalibrationError(f"--calib-method must be one of {', '.join(METHODS)}, got {self.calib_method!r}")
        if self.fallback not in FALLBACKS:
            raise CalibrationError(f"--fallback must be fp16 or fp32, got {self.fallback!r}")
        if not (self.psnr_budget >= 0):
            raise CalibrationError(f"--psnr-budget must be >= 0 dB, got {self.psnr_budget}")
        if self.calib_count < 1:
            raise CalibrationError(f"--calib-count must be >= 1, got {self.calib_count}")
        if self.calib_cache is not None and not Path(self.calib_cache).parent.is_dir():
            raise CalibrationError(f"cannot write {self.calib_cache}: folder {Path(self.calib_cache).parent} does not exist")


# --------------------------------------------------------------------------- running ONNX Runtime


def session(model: onnx.ModelProto | str, threads: int = 1, level: str = "basic"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if level == "basic"
                                        else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_set(sess, images: ImageSet) -> list[np.ndarray]:
    names = [i.name for i in sess.get_inputs()]
    outs = []
    for arrays, (h, w) in zip(images.inputs, images.sizes):
        feeds = {}
        for meta, value in zip(sess.get_inputs(), arrays):
            feeds[meta.name] = value.astype(np.float16 if meta.type == "tensor(float16)" else np.float32)
        y = sess.run(None, feeds)[0].astype(np.float32)[0, :, :h, :w]
        outs.append(y.transpose(1, 2, 0))
    del names
    return outs


def task_psnr(outputs: list[np.ndarray], images: ImageSet) -> float:
    """Mean PSNR of the outputs (rounded to 8 bits, as ``restore-eval``) against the ground truths."""
    values = []
    for y, gt, (border, y_channel) in zip(outputs, images.targets, images.scoring):
        out = from_float(y)
        if y_channel and out.shape[2] == 3:
            out, gt = rgb_to_y(out), rgb_to_y(gt)
        values.append(min(psnr(out, gt, border), 100.0))
    return float(np.mean(values))


def psnr_vs(outputs: list[np.ndarray], refs: list[np.ndarray]) -> float:
    """Mean PSNR (peak 1, clamped to [0, 1]) of outputs against reference outputs."""
    return float(np.mean([psnr_peak1(a, b) for a, b in zip(outputs, refs)]))


def layer_shapes(model: onnx.ModelProto, layers: list[Layer], spec: ModelSpec, size: int, threads: int = 1) -> dict:
    """Shapes of every layer's inputs and outputs in one FP32 run at ``size`` x ``size`` (batch 1)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    wanted = {t for layer in layers for t in layer.inputs + layer.outputs}
    existing = {o.name for o in probe.graph.output}
    for name in sorted(wanted - existing):
        probe.graph.output.add().name = name
    sess = session(probe, threads)
    size = max(spec.pad_multiple, size - size % spec.pad_multiple)
    feeds = {}
    for meta in sess.get_inputs():
        if meta.name == "kernel":
            feeds[meta.name] = np.full((1, 1, 7, 7), 1 / 49, np.float32)
        else:
            feeds[meta.name] = np.zeros((1, spec.in_channels, size, size), np.float32) + 0.5
    names = [o.name for o in sess.get_outputs()]
    return {n: tuple(v.shape) for n, v in zip(names, sess.run(None, feeds))}


# --------------------------------------------------------------------------- the pipeline


def _load_sets(spec: ModelSpec, opts: Int8Options) -> tuple[ImageSet, ImageSet]:
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


def build_int8(net, spec: ModelSpec, opts: Int8Options, converse_lowering: str, io_fp16: bool, inline: bool,
               source_sha256: str, opset: int, optimize: bool = True, log=print, *, target: str = "ort"):
    """The INT8 Q/DQ model (not yet verified or written), its report, and a callable that writes
    the range cache (to call only once the model is accepted: nothing is written on error)."""
    from export.fp16 import convert_to_fp16
    from export.functions import attach_functions, mark_constant_kernels
    from export.lowering import lower_converse2d
    from export.onnx_export import set_metadata, strip_trace_metadata, trace
    from export.optimize import optimize_for_inference

    t0 = time.perf_counter()
    opts.check()
    calib, search = _load_sets(spec, opts)

    graph = trace(net, spec, opset)
    strip_trace_metadata(graph)
    if optimize:
        graph, _ = optimize_for_inference(graph, target=target)
    graph = attach_functions(graph)
    layers = find_layers(graph)
    if not layers:
        raise CalibrationError(f"{spec.name} has no Conv/MatMul layer to quantize")

    # ranges
    settings = {"method": opts.calib_method, "images": calib.names, "crop": opts.calib_size or None,
                "degrade": opts.degrade if opts.degrade is not None else spec.degrade, "seed": opts.seed}
    fp = fingerprint(graph)
    ranges, why, cache_state = None, "", "not used"
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
    quantizable = [l for l in layers if all(t in amax for t in l.inputs)]

    shapes = layer_shapes(graph, layers, spec, opts.mac_size, opts.threads)
    conv_macs(graph, layers, shapes)
    total_macs = sum(l.macs for l in layers) or 1

    excluded = _excluded(layers, opts)
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
    candidates = [l for l in quantizable if l.name not in excluded]

    int32_bias = uint8 = opts.fallback == "fp32"  # the ONNX Runtime CPU file
    ref_sess = session(graph, opts.threads)
    fp32_out = run_set(ref_sess, search)
    fp32_psnr = task_psnr(fp32_out, search)

    def evaluate(chosen: list[Layer]) -> tuple[float, float]:
        outs = run_set(session(insert_qdq(graph, chosen, amax, int32_bias, uint8_activations=uint8), opts.threads), search)
        return task_psnr(outs, search), psnr_vs(outs, fp32_out)

    sensitivity: dict[str, float] = {}
    kept: dict[str, str] = {}
    steps = []
    if opts.sensitivity and candidates:
        log(f"sensitivity of {len(candidates)} layers on {len(search.names)} search images ...")
        for layer in candidates:
            sensitivity[layer.name] = fp32_psnr - evaluate([layer])[0]
    chosen = list(candidates)
    int8_psnr, int8_vs_fp32 = evaluate(chosen)
    steps.append({"kept": [], "drop_db": fp32_psnr - int8_psnr})
    if opts.sensitivity:
        order = sorted(candidates, key=lambda l: -sensitivity[l.name])
        while fp32_psnr - int8_psnr > opts.psnr_budget and chosen:
            worst = next(l for l in order if l in chosen)
            chosen.remove(worst)
            kept[worst.name] = f"sensitivity {sensitivity[worst.name]:.3f} dB"
            int8_psnr, int8_vs_fp32 = evaluate(chosen)
            steps.append({"kept": worst.name, "drop_db": fp32_psnr - int8_psnr})
    within = fp32_psnr - int8_psnr <= opts.psnr_budget
    if not within:
        log(f"warning: INT8 loses {fp32_psnr - int8_psnr:.2f} dB on the search images, over the "
            f"{opts.psnr_budget} dB budget")
    int8_macs = sum(l.macs for l in chosen)

    # the file
    model = insert_qdq(graph, chosen, amax, int32_bias, uint8_activations=uint8)
    if opts.fallback == "fp16":
        model = convert_to_fp16(model, io_fp16=io_fp16)
    mark_constant_kernels(model)
    if converse_lowering in ("matmul", "dft"):
        model = lower_converse2d(model, converse_lowering)
    for node in model.graph.node:
        keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.class_hierarchy"]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    if inline:
        model = onnx.inliner.inline_local_functions(model)
    set_metadata(model, spec, "int8", source_sha256)
    model.metadata_props.add(key="int8_fallback", value=opts.fallback)
    model.metadata_props.add(key="int8_calibration", value=f"{opts.calib_method}, {len(calib.names)} images")

    def save_ranges() -> None:  # called by the exporter once the file has passed its self-check
        if opts.calib_cache is not None and cache_state != "hit":
            save_cache(opts.calib_cache, fp, settings, ranges)

    chosen_names = {l.name for l in chosen}
    reasons = {**excluded, **kept}
    report = {
        "calibration": {"dir": str(opts.calib_dir), **calib.describe(), "crop": opts.calib_size or None,
                        "degrade": settings["degrade"], "seed": opts.seed, "method": opts.calib_method,
                        "cache": str(opts.calib_cache) if opts.calib_cache else None, "cache_state": cache_state},
        "search": {"dir": str(opts.search_dir or opts.calib_dir), **search.describe(), "crop": opts.search_size or None},
        "fallback": opts.fallback,
        "psnr_budget_db": opts.psnr_budget,
        "psnr": {"fp32_vs_gt": fp32_psnr, "int8_vs_gt": int8_psnr, "int8_vs_fp32": int8_vs_fp32,
                 "drop_db": fp32_psnr - int8_psnr, "within_budget": within},
        "mac_reference_size": opts.mac_size,
        "int8_mac_share": int8_macs / total_macs,
        "total_macs": total_macs,
        "layers_total": len(layers),
        "layers_int8": len(chosen),
        "excluded": {name: reasons[name] for name in reasons if name not in chosen_names},
        "greedy_steps": steps,
        "layers": [
            {
                "name": l.name, "op": l.op_type, "nodes": len(l.nodes), "macs": l.macs,
                "mac_share": l.macs / total_macs,
                "precision": "int8" if l.name in chosen_names else opts.fallback,
                "reason": reasons.get(l.name, ""),
                "input_amax": {t: amax.get(t) for t in l.inputs},
                "output_amax": {t: amax.get(t) for t in l.outputs},
                "sensitivity_db": sensitivity.get(l.name),
            }
            for l in layers
        ],
        "qdq": qdq_summary(model),
        "seconds": time.perf_counter() - t0,
    }
    return model, report, save_ranges
