"""restore-bench: latency, throughput, peak memory and FLOPs of artefacts on the installed runtimes."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from cli.common import EXIT_BAD_INPUT, console, fail, out, run, write_json
from engines.backends import BACKENDS, BackendError, load_runner
from restormer.checkpoints import WeightsError
from restormer.presets import PRESETS, build, resolve

EPILOG = f"""
[bold]Examples[/]

  restore-bench converse-dncnn.onnx converse-dncnn.fp16.onnx converse-dncnn --size 256x256

  restore-bench model.onnx --size 512x512 --iters 20 --threads 2 --json bench.json

Each ARTIFACT (.onnx, .engine/.plan, .safetensors checkpoint or preset; backends: {", ".join(BACKENDS)})
is run on a random input of --size after --warmup runs; latency is the median and 90th percentile
of --iters timed runs (wall clock around one inference, including host<->device copies).
Throughput is images/s and megapixels/s at that latency. Peak memory is the growth of the
process's peak resident set (VmHWM in /proc/self/status, reset through /proc/self/clear_refs
before each artefact when the kernel allows it; otherwise ru_maxrss) from the moment before the
artefact is loaded. FLOPs are counted with torch.utils.flop_counter on the PyTorch model of the
same architecture (the preset from the ONNX metadata, or --reference); convolutions and matrix
products are counted, the FFTs inside Converse2D are not. The table is printed as markdown.

Exit status: 0 success; 2 on bad usage or an artefact that cannot be run.
"""

app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text) or re.fullmatch(r"\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"--size must be HxW (e.g. 256x256), got {text!r}")
    h, w = (int(m.group(1)), int(m.group(2))) if m.lastindex == 2 else (int(m.group(1)),) * 2
    if h < 1 or w < 1:
        raise ValueError(f"--size must be positive, got {text!r}")
    return h, w


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0


def current_rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return (kb or 0) / 1024.0


def count_flops(spec, shape: tuple[int, ...], kernel_shape=None) -> float | None:
    """FLOPs of one forward of the spec's architecture (random weights: FLOPs do not depend on them)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        net = build(spec).eval()
    except Exception:
        return None
    args = [torch.rand(*shape)]
    if spec.needs_kernel:
        args.append(torch.full(kernel_shape or (shape[0], 1, 7, 7), 1 / 49))
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        net(*args)
    return float(counter.get_total_flops())


def _reference_spec(runner, reference: str | None):
    if reference:
        return resolve(reference)
    from engines.backends import PyTorchRunner

    if isinstance(runner, PyTorchRunner):
        return runner.spec  # the checkpoint's own configuration
    return PRESETS.get(runner.spec.name)  # ONNX / engine: the preset named in the metadata, if any


def bench_one(artifact: str, backend: str, size: tuple[int, int], batch: int, warmup: int, iters: int,
              threads: int | None, reference: str | None) -> dict:
    h, w = size
    reset = reset_peak()
    base = current_rss_mb() if reset else peak_rss_mb()
    runner = load_runner(artifact, backend, threads=threads)
    spec = runner.spec
    m = max(spec.pad_multiple, 1)
    ph, pw = -(-h // m) * m, -(-w // m) * m
    x = np.random.default_rng(0).random((batch, spec.in_channels, ph, pw), dtype=np.float32)
    kernel = np.full((1, 1, 7, 7), 1 / 49, np.float32) if spec.needs_kernel else None
    times = []
    with runner:
        for _ in range(warmup):
            runner.run(x, kernel)
        for _ in range(iters):
            t0 = time.perf_counter()
            runner.run(x, kernel)
            times.append(time.perf_counter() - t0)
        peak = peak_rss_mb() - base
    ms = np.array(times) * 1000
    median, p90 = float(np.median(ms)), float(np.percentile(ms, 90))
    row = {
        "artifact": artifact, "backend": runner.name, "precision": runner.precision, "size": f"{h}x{w}",
        "batch": batch, "median_ms": round(median, 3), "p90_ms": round(p90, 3),
        "images_per_s": round(batch * 1000 / median, 3), "mpix_per_s": round(batch * h * w / 1e6 * 1000 / median, 3),
        "peak_mem_mb": round(max(peak, 0.0), 1), "gflops": None, "gflop_per_s": None,
    }
    ref_spec = _reference_spec(runner, reference)
    if ref_spec is not None:
        flops = count_flops(ref_spec, (batch, spec.in_channels, ph, pw))
        if flops:
            row["gflops"] = round(flops / 1e9, 3)
            row["gflop_per_s"] = round(flops / 1e9 * 1000 / median, 2)
    return row


def markdown(rows: list[dict]) -> str:
    head = ["artifact", "backend", "precision", "size", "batch", "median ms", "p90 ms", "img/s", "MP/s",
            "peak MB", "GFLOPs", "GFLOP/s"]
    keys = ["artifact", "backend", "precision", "size", "batch", "median_ms", "p90_ms", "images_per_s", "mpix_per_s",
            "peak_mem_mb", "gflops", "gflop_per_s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        cells = [Path(str(r[k])).name if k == "artifact" else ("-" if r[k] is None else str(r[k])) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@app.command(help=__doc__.strip() if __doc__ else None, epilog=EPILOG)
def main(
    artifacts: List[str] = typer.Argument(..., help="Artefacts: .onnx, .engine/.plan, .safetensors or preset names."),
    size: str = typer.Option("256x256", "--size", help="Input size HxW."),
    batch: int = typer.Option(1, "--batch", min=1, help="Batch size."),
    warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed runs first."),
    iters: int = typer.Option(10, "--iters", min=1, help="Timed runs."),
    backend: str = typer.Option("auto", "--backend", help=f"One of {', '.join(BACKENDS)}."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Preset/checkpoint to count FLOPs on (default: from the metadata)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write rows[...] here."),
) -> None:
    try:
        hw = parse_size(size)
        if backend not in BACKENDS:
            raise ValueError(f"unknown --backend {backend!r}; choose from {', '.join(BACKENDS)}")
        if json_out and not json_out.parent.is_dir():
            raise ValueError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        if threads:
            import torch

            torch.set_num_threads(threads)
    except (ValueError, FileNotFoundError, WeightsError, BackendError, MemoryError) as exc:
        raise fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    rows, errors = [], []
    for artifact in artifacts:  # one artefact failing does not lose the others' results
        try:
            rows.append(bench_one(artifact, backend, hw, batch, warmup, iters, threads, reference))
        except (ValueError, FileNotFoundError, WeightsError, BackendError, MemoryError, OSError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            errors.append({"artifact": artifact, "error": message})
            console.print(f"[bold red]error:[/] {artifact}: {message}", highlight=False, soft_wrap=True)
    if rows:
        out.print(markdown(rows), markup=False, highlight=False, soft_wrap=True)
    if json_out:
        write_json(json_out, {"size": f"{hw[0]}x{hw[1]}", "batch": batch, "iters": iters, "rows": rows, "errors": errors})
    if errors:
        raise typer.Exit(EXIT_BAD_INPUT)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
