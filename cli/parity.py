"""restore-parity: an exported artefact (ONNX / TensorRT engine / checkpoint) against the PyTorch reference, on real images."""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from cli.common import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, console, fail, out, run, write_json
from restormer.metrics import PSNR_CAP, psnr_peak1
from engines.backends import BACKENDS, BackendError, PyTorchRunner, as_polygraphy, load_runner
from restormer.tiling import pad_reflect, padded_size
from restormer.checkpoints import WeightsError
from restormer.degrade import SPEC_GRAMMAR, parse_degradation
from restormer.evaluate import _score, check_compatible
from restormer.imageio import ImageReadError, list_images, read_image

# PSNR floors vs the PyTorch FP32 reference (peak 1, outputs clamped to [0, 1]) and the task-PSNR drop.
MIN_PSNR = {"fp32": 60.0, "fp16": 45.0, "int8": 35.0}
MAX_DROP = 0.3

EPILOG = f"""
[bold]Examples[/]

  restore-parity converse-dncnn.fp16.onnx --reference converse-dncnn --images ../shared/data/denoise/Set12

  restore-parity model.engine --reference restormer-denoise-color --weights gaussian_color_denoising_blind.pth \\
      --images CBSD68 --degrade noise:25 --limit 8 --crop 256 --json parity.json

  restore-parity model.onnx --reference ckpt.safetensors --images imgs/ --localize

Runs the artefact and the PyTorch reference on the same degraded images with polygraphy's
Comparator (our runners wrapped as polygraphy runners) and compares with our own function: PSNR
of the artefact against PyTorch with peak 1.0 on outputs clamped to [0, 1] (polygraphy's own PSNR
is not used), and the task PSNR of both against the ground truth (as restore-eval: Y channel /
border for SR) and its drop.

Thresholds by the artefact's precision (ONNX metadata / engine sidecar): fp32 >= 60 dB,
fp16 >= 45 dB, int8 >= 35 dB against PyTorch on every image; the task-PSNR drop must be <= 0.3 dB.
--min-psnr / --max-drop override them. --localize exposes the outputs of the custom nodes
(Converse2D, TransposedAttention) of the ONNX graph and of the matching PyTorch modules and
reports the first that diverges.

Degradation: {SPEC_GRAMMAR} (default: the reference preset's protocol).

Exit status: 0 passed; 1 a threshold failed; 2 bad usage or input.
"""

app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


def _task_psnr(y: np.ndarray, gt: np.ndarray, border: int, y_channel: bool) -> float:
    """(1, C, H, W) float output vs the uint ground truth, on the 0-255 scale as restore-eval."""
    peak = 255.0 if gt.dtype == np.uint8 else 65535.0
    img = (np.clip(y[0].transpose(1, 2, 0), 0, 1) * peak).round()
    if gt.dtype == np.uint8:
        img = img.astype(np.uint8)
    else:
        img, gt = img * (255.0 / peak), gt.astype(np.float64) * (255.0 / peak)
    return float(_score(img, gt, border, y_channel)[0])


def _load_samples(paths, spec, degradation, seed, crop, unreadable: list | None = None):
    """The images as samples; an unreadable one is reported (one line), counted in ``unreadable`` and
    skipped, as restore-eval does, instead of ending the run."""
    channels = min(spec.in_channels, 3)
    samples = []
    for p in paths:
        try:
            img = read_image(p, channels=channels)
        except (ImageReadError, OSError, ValueError) as exc:
            if unreadable is None:
                raise
            unreadable.append(str(p))
            console.print(f"[bold red]error:[/] {p}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                          highlight=False, soft_wrap=True)
            continue
        if crop:
            h, w = img.shape[:2]
            top, left = max((h - crop) // 2, 0), max((w - crop) // 2, 0)
            img = img[top:top + crop, left:left + crop]
        if degradation is None:
            x = np.float32(img / (255.0 if img.dtype == np.uint8 else 65535.0))
            samples.append((p.name, x, None, None, 0, False))
        else:
            s = degradation.apply(img, seed)
            samples.append((p.name, s.lq, s.kernel, s.gt, s.border, s.y_channel))
    return samples


def _feed(spec, lq: np.ndarray, kernel) -> tuple[OrderedDict, tuple[int, int]]:
    x = np.ascontiguousarray(lq.transpose(2, 0, 1)[None], dtype=np.float32)
    h, w = x.shape[-2:]
    m = max(spec.pad_multiple, 1)
    x = pad_reflect(x, padded_size(h, m, 16), padded_size(w, m, 16))
    feed = OrderedDict(input=x)
    if spec.needs_kernel:
        feed["kernel"] = np.ascontiguousarray(kernel[None, None], dtype=np.float32)
    return feed, (h, w)


def _finite(obj):
    """JSON has no inf/NaN: +inf (identical images) -> the 200 dB cap, NaN / -inf -> null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return PSNR_CAP if obj == math.inf else None
    return obj


CUSTOM_OPS = ("Converse2D", "TransposedAttention")


def snr_db(got: np.ndarray, ref: np.ndarray) -> float:
    """Signal-to-error ratio of an intermediate tensor (features are not images: no peak, no clamp)."""
    err = float(np.sum((got.astype(np.float64) - ref.astype(np.float64)) ** 2))
    sig = float(np.sum(ref.astype(np.float64) ** 2))
    if err <= sig * 10 ** (-PSNR_CAP / 10):
        return PSNR_CAP
    return float(10 * math.log10(max(sig, 1e-30) / err))


def localize_divergence(artifact: str, ref: PyTorchRunner, feed: dict, threshold: float) -> dict:
    """Expose the outputs of the custom nodes of the ONNX graph, record the matching PyTorch op calls
    (k-th Converse2D node <-> k-th converse2d call, likewise TransposedAttention) on the same input,
    and report the first whose signal-to-error ratio is below ``threshold`` dB."""
    import onnx
    import onnxruntime as ort
    import torch

    import restormer.converse_arch as carch
    import restormer.restormer_arch as rarch

    if not artifact.lower().endswith(".onnx"):
        return {"error": "--localize needs an .onnx artefact (engines hide their intermediate tensors)"}
    model = onnx.load(artifact)
    nodes = [n for n in model.graph.node if n.op_type in CUSTOM_OPS]
    if not nodes:
        return {"nodes": [], "first_diverging": None,
                "message": "no Converse2D/TransposedAttention nodes in the graph (inlined or matmul lowering): nothing to localize"}
    from engines.tensorrt.lint import aborts_inference

    try:  # (a crafted Split can make onnx's C++ inference abort the process: skipped then)
        inferred = {} if aborts_inference(model) else {
            vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
    except Exception:
        inferred = {}
    known = {o.name for o in model.graph.output}
    for n in nodes:
        if n.output[0] not in known:
            vi = inferred.get(n.output[0]) or onnx.helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, None)
            model.graph.output.append(vi)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    dtypes = {i.name: (np.float16 if i.type == "tensor(float16)" else np.float32) for i in session.get_inputs()}
    names = [n.output[0] for n in nodes]
    values = session.run(names, {k: v.astype(dtypes.get(k, np.float32)) for k, v in feed.items()})

    calls: dict[str, list[np.ndarray]] = {op: [] for op in CUSTOM_OPS}

    def recorder(fn, op):
        def wrapped(*args, **kwargs):
            y = fn(*args, **kwargs)
            calls[op].append(y.detach().float().cpu().numpy())
            return y
        return wrapped

    originals = (carch.converse2d, rarch.transposed_attention)
    carch.converse2d = recorder(originals[0], "Converse2D")
    rarch.transposed_attention = recorder(originals[1], "TransposedAttention")
    try:
        ref.activate()
        with torch.inference_mode():
            ref.infer({k: np.asarray(v, np.float32) for k, v in feed.items()})
    finally:
        carch.converse2d, rarch.transposed_attention = originals

    report, seen, first = [], {op: 0 for op in CUSTOM_OPS}, None
    for node, got in zip(nodes, values):
        k = seen[node.op_type]
        seen[node.op_type] += 1
        entry = {"node": node.name or node.output[0], "op": node.op_type, "index": k}
        if k >= len(calls[node.op_type]) or calls[node.op_type][k].shape != got.shape:
            entry["error"] = "no matching PyTorch call"
        else:
            entry["snr_db"] = snr_db(np.asarray(got, np.float32), calls[node.op_type][k])
            if first is None and entry["snr_db"] < threshold:
                first = entry
        report.append(entry)
    message = (f"first diverging node: {first['node']} ({first['op']} #{first['index']}), "
               f"SNR {first['snr_db']:.1f} dB < {threshold:g} dB" if first else
               f"all {len(report)} custom nodes agree with PyTorch (SNR >= {threshold:g} dB)")
    return {"nodes": report, "first_diverging": first, "message": message}


@app.command(help=__doc__.strip() if __doc__ else None, epilog=EPILOG)
def main(
    artifact: str = typer.Argument(..., help="The artefact: .onnx, .engine/.plan, or a checkpoint/preset."),
    reference: str = typer.Option(..., "--reference", help="PyTorch reference: preset or .safetensors checkpoint."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights for the reference preset (.pth / .safetensors)."),
    images: Path = typer.Option(..., "--images", help="Folder of clean images."),
    degrade: Optional[str] = typer.Option(None, "--degrade", help=f"Degradation SPEC ({SPEC_GRAMMAR}); default: the preset's protocol."),
    min_psnr: Optional[float] = typer.Option(None, "--min-psnr", help="PSNR floor vs PyTorch (default by precision: 60/45/35 dB)."),
    max_drop: float = typer.Option(MAX_DROP, "--max-drop", help="Largest allowed task-PSNR drop (dB)."),
    backend: str = typer.Option("auto", "--backend", help=f"Backend for the artefact: {', '.join(BACKENDS)}."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N images."),
    crop: Optional[int] = typer.Option(None, "--crop", min=8, help="Central N x N crop of every image."),
    seed: int = typer.Option(0, "--seed", help="Noise seed (reset per image)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads."),
    localize: bool = typer.Option(False, "--localize", help="Report the first diverging custom node / layer (ONNX artefacts)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results here."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show polygraphy's log."),
) -> None:
    try:
        if json_out and not json_out.parent.is_dir():
            raise ValueError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        art = load_runner(artifact, backend, threads=threads)
        ref = PyTorchRunner(reference, weights=weights)
        spec = ref.spec
        for key in ("in_channels", "out_channels", "scale", "needs_kernel"):
            if getattr(art.spec, key) != getattr(spec, key):
                raise ValueError(f"{artifact} has {key}={getattr(art.spec, key)} but the reference "
                                 f"{reference} has {getattr(spec, key)}: not the same model")
        spec_text = degrade or spec.degrade or (art.spec.degrade if art.spec else None)
        degradation = parse_degradation(spec_text) if spec_text else None
        if degradation is not None:
            check_compatible(spec, degradation)
        elif spec.needs_kernel:
            raise ValueError(f"{spec.name} needs a blur kernel: pass --degrade blur:KERNELFILE[:INDEX]+noise:SIGMA")
        paths = list_images(images)[:limit]
        if not paths:
            raise ValueError(f"no images (png/jpg/bmp/tif) in {images}")
        unreadable: list[str] = []
        samples = _load_samples(paths, spec, degradation, seed, crop, unreadable)
        if not samples:
            raise ValueError(f"none of the {len(paths)} image(s) in {images} could be read")
        if threads:
            import torch

            torch.set_num_threads(threads)
        ref.keep_loaded = True
        ref.activate()  # load the weights now so that a bad file is a usage error
    except (ValueError, FileNotFoundError, NotADirectoryError, WeightsError, BackendError, ImageReadError) as exc:
        raise fail(str(exc).splitlines()[0])

    precision = art.precision
    floor = min_psnr if min_psnr is not None else MIN_PSNR.get(precision, MIN_PSNR["fp32"])
    feeds, sizes = [], []
    for _, lq, kernel, *_rest in samples:
        feed, size = _feed(spec, lq, kernel)
        feeds.append(feed)
        sizes.append(size)

    from polygraphy.comparator import Comparator
    from polygraphy.logger import G_LOGGER

    if not verbose:
        G_LOGGER.module_severity = G_LOGGER.WARNING

    rows: list[dict] = []
    s = spec.scale

    def compare(res_art, res_ref):
        i = len(rows)
        name, _, _, gt, border, y_channel = samples[i]
        h, w = sizes[i]
        ya = np.asarray(next(iter(res_art.values())), np.float32)[..., : h * s, : w * s]
        yr = np.asarray(next(iter(res_ref.values())), np.float32)[..., : h * s, : w * s]
        row = {"name": name, "psnr_vs_reference": psnr_peak1(ya, yr),
               "finite": bool(np.isfinite(ya).all())}
        row["max_abs_err"] = float(np.max(np.abs(ya - yr))) if row["finite"] and ya.size else None
        if not row["finite"]:
            row["psnr_vs_reference"] = 0.0
        if gt is not None:
            row["task_psnr_reference"] = _task_psnr(yr, gt, border, y_channel)
            row["task_psnr_artifact"] = _task_psnr(np.nan_to_num(ya), gt, border, y_channel)
            row["task_psnr_drop"] = row["task_psnr_reference"] - row["task_psnr_artifact"]
        rows.append(row)
        return OrderedDict(output=row["psnr_vs_reference"] >= floor and row["finite"])

    ref.deactivate()
    runners = [as_polygraphy(art, f"artifact[{art.name}]"), as_polygraphy(ref, "reference[torch-cpu]")]
    try:
        results = Comparator.run(runners, data_loader=feeds)
        accuracy = Comparator.compare_accuracy(results, compare_func=compare)
    except Exception as exc:  # any runtime failure (ONNX Runtime, polygraphy's wrapper): one line, exit 2
        raise fail(f"inference failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")

    psnrs = [r["psnr_vs_reference"] for r in rows]
    has_task = rows and "task_psnr_reference" in rows[0]
    task_ref = float(np.mean([r["task_psnr_reference"] for r in rows])) if has_task else None
    task_art = float(np.mean([r["task_psnr_artifact"] for r in rows])) if has_task else None
    drop = (task_ref - task_art) if has_task else None
    psnr_ok = bool(accuracy) and min(psnrs) >= floor
    drop_ok = drop is None or drop <= max_drop
    summary = {
        "artifact": artifact, "reference": reference, "backend": art.name, "precision": precision,
        "degrade": spec_text, "images": rows, "threshold_psnr": floor, "max_drop": max_drop,
        "passed": psnr_ok and drop_ok,
        "min_psnr_vs_reference": float(min(psnrs)), "mean_psnr_vs_reference": float(np.mean(psnrs)),
        "task_psnr_reference": task_ref, "task_psnr_artifact": task_art, "task_psnr_drop": drop,
        "unreadable": unreadable,
    }

    if localize:
        try:
            summary["localize"] = localize_divergence(artifact, ref, feeds[0], floor)
        except Exception as exc:  # diagnostics never change the verdict
            summary["localize"] = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}

    table = Table("image", "PSNR vs torch", "max |err|", "task ref", "task art", "drop",
                  title=f"{artifact} ({art.name}, {precision}) vs {reference}")
    for r in rows:
        bad = r["psnr_vs_reference"] < floor
        table.add_row(r["name"], f"[{'red' if bad else 'green'}]{r['psnr_vs_reference']:.2f}[/]",
                      f"{r['max_abs_err']:.2e}" if r["max_abs_err"] is not None else "NaN/Inf",
                      *(f"{r[k]:.3f}" if k in r else "-" for k in ("task_psnr_reference", "task_psnr_artifact", "task_psnr_drop")))
    out.print(table)
    line = (f"min PSNR vs PyTorch {summary['min_psnr_vs_reference']:.2f} dB (floor {floor:g} for {precision}), "
            f"mean {summary['mean_psnr_vs_reference']:.2f} dB")
    if has_task:
        line += f"; task PSNR {task_ref:.3f} -> {task_art:.3f} dB (drop {drop:+.3f}, max {max_drop:g})"
    out.print(line)
    loc = summary.get("localize")
    if loc:
        out.print(f"localize: {loc.get('message') or loc.get('error')}")
    out.print("[bold green]PASSED[/]" if summary["passed"] else "[bold red]FAILED[/]")
    if json_out:
        write_json(json_out, _finite(summary))
    if not summary["passed"]:
        raise typer.Exit(EXIT_CHECK_FAILED)
    if unreadable:  # the verdict stands for the images read; the unreadable ones are bad input
        console.print(f"[bold red]error:[/] {len(unreadable)} image(s) could not be read (listed above)", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
