"""Latency, throughput, peak memory and FLOPs of one artefact on an installed runtime (restore-bench).

Latency is the median and 90th percentile of timed runs (wall clock around one inference, including
host<->device copies) after untimed warm-up runs. Peak memory is the growth of the process's peak
resident set (VmHWM in /proc/self/status, reset through /proc/self/clear_refs before the artefact
when the kernel allows it; otherwise ru_maxrss) from the moment before the artefact is loaded.
FLOPs are counted with torch.utils.flop_counter on the PyTorch model of the same architecture.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from restormer_deploy.engines.backends import PyTorchRunner, load_runner
from restormer_deploy.restormer.presets import PRESETS, ModelSpec, build, resolve


@dataclass
class BenchRow:
    """One artefact's measurements (the keys of restore-bench --json rows[...])."""

    artifact: str
    backend: str
    precision: str
    size: str             # "HxW"
    batch: int
    median_ms: float
    p90_ms: float
    images_per_s: float
    mpix_per_s: float
    peak_mem_mb: float
    gflops: float | None = None
    gflop_per_s: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- memory


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM); False where the kernel does not allow it."""
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


# --------------------------------------------------------------------------- FLOPs


def count_flops(spec: ModelSpec, shape: tuple[int, ...], *, kernel_shape=None) -> float | None:
    """FLOPs of one forward of the spec's architecture (random weights: FLOPs do not depend on them).
    Convolutions and matrix products are counted, the FFTs inside Converse2D are not."""
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


def _reference_spec(runner, reference: str | None) -> ModelSpec | None:
    if reference:
        return resolve(reference)
    if isinstance(runner, PyTorchRunner):
        return runner.spec  # the checkpoint's own configuration
    return PRESETS.get(runner.spec.name)  # ONNX / engine: the preset named in the metadata, if any


# --------------------------------------------------------------------------- one artefact


def _timed_runs(runner, x, kernel, *, warmup: int, iters: int, on_run=None) -> list[float]:
    for i in range(warmup):
        runner.run(x, kernel)
        if on_run:
            on_run(i + 1, warmup + iters)
    times = []
    for i in range(iters):
        t0 = time.perf_counter()
        runner.run(x, kernel)
        times.append(time.perf_counter() - t0)
        if on_run:  # outside the timed span
            on_run(warmup + i + 1, warmup + iters)
    return times


def bench_one(artifact: str, backend: str = "auto", *, size: tuple[int, int], batch: int = 1, warmup: int = 2,
              iters: int = 10, threads: int | None = None, reference: str | None = None,
              on_run: Callable[[int, int], None] | None = None) -> BenchRow:
    """Load ``artifact`` on ``backend`` and measure it on a random (batch, C, H, W) input padded to
    the model's multiple; FLOPs on ``reference`` (default: the preset of the metadata).
    ``on_run(done, total)`` is called after each warm-up and timed run."""
    h, w = size
    reset = reset_peak()
    base = current_rss_mb() if reset else peak_rss_mb()
    runner = load_runner(artifact, backend, threads=threads)
    spec = runner.spec
    m = max(spec.pad_multiple, 1)
    ph, pw = -(-h // m) * m, -(-w // m) * m
    x = np.random.default_rng(0).random((batch, spec.in_channels, ph, pw), dtype=np.float32)
    kernel = np.full((1, 1, 7, 7), 1 / 49, np.float32) if spec.needs_kernel else None
    with runner:
        times = _timed_runs(runner, x, kernel, warmup=warmup, iters=iters, on_run=on_run)
        peak = peak_rss_mb() - base
    ms = np.array(times) * 1000
    median, p90 = float(np.median(ms)), float(np.percentile(ms, 90))
    row = BenchRow(
        artifact=artifact, backend=runner.name, precision=runner.precision, size=f"{h}x{w}", batch=batch,
        median_ms=round(median, 3), p90_ms=round(p90, 3), images_per_s=batch * 1000 / median,
        mpix_per_s=batch * h * w / 1e6 * 1000 / median, peak_mem_mb=round(max(peak, 0.0), 1))
    ref_spec = _reference_spec(runner, reference)
    if ref_spec is not None:
        flops = count_flops(ref_spec, (batch, spec.in_channels, ph, pw))
        if flops:
            row.gflops = round(flops / 1e9, 3)
            row.gflop_per_s = flops / 1e9 * 1000 / median
    return row


_COLUMNS = {"artifact": "artifact", "backend": "backend", "precision": "precision", "size": "size", "batch": "batch",
            "median_ms": "median ms", "p90_ms": "p90 ms", "images_per_s": "img/s", "mpix_per_s": "MP/s",
            "peak_mem_mb": "peak MB", "gflops": "GFLOPs", "gflop_per_s": "GFLOP/s"}


_RATES = ("images_per_s", "mpix_per_s", "gflop_per_s")  # shown to 3 significant figures (--json: full)


def significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures without an exponent: 0.000384, 0.0412, 12.3, 1234."""
    if value == 0 or not math.isfinite(value):
        return str(value)
    value = float(f"{value:.{digits - 1}e}")  # rounded first: 0.9996 -> 1.00, not 1.000
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    return f"{value:.{decimals}f}"


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "artifact":
        return Path(str(value)).name
    return significant(value) if key in _RATES else str(value)


def markdown(rows: list[BenchRow]) -> str:
    """The rows as a markdown table (the artefact by its file name; '-' for what was not measured)."""
    lines = ["| " + " | ".join(_COLUMNS.values()) + " |", "|" + "|".join(["---"] * len(_COLUMNS)) + "|"]
    for r in rows:
        cells = [_cell(k, getattr(r, k)) for k in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
