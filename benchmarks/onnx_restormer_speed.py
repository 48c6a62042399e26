"""Full-size Restormer in ONNX Runtime (CPU) against PyTorch eager (CPU), side by side in one run.

The default ``Restormer()`` (26.1M parameters; ``--layernorm BiasFree`` for the denoising
variant) with random weights, batch 1, ``--size``² input in [0, 1]. The model is traced once and
written twice: the plain export (``optimize=False``: what the exporter wrote before
``export/optimize.py``) and the optimised export (``restore-export``'s default). Rows:

* ``PyTorch eager``: ``torch.inference_mode``, ``torch.set_num_threads(threads)``;
* ``ORT, <export>, default session``: ONNX Runtime's defaults (``ORT_ENABLE_ALL``, spinning
  threads) with ``threads`` intra-op threads, one inter-op thread, sequential execution;
* ``ORT, <export>, make_session``: ``restormer_deploy.export.ort_session.make_session`` (what the runtime uses):
  the same plus its two NCHWc layout passes and no spinning (``--spin`` to keep it).

``plain export, default session`` is the state before this benchmark's issue; ``optimised export,
make_session`` the state after.

All backends are timed interleaved (one call of each per round, after ``--warmup`` calls each), so
a background load affects them alike; the table shows median and p90 over ``--runs`` rounds. Model
work is counted with ``torch.utils.flop_counter.FlopCounterMode`` on the PyTorch model (all
convolutions plus the attention products; 2 FLOP per MAC); the machine's FP32 GEMM rate is a
4096² ``torch.matmul`` on the same number of threads, measured in the same run (best of 5). Every
ONNX Runtime output is checked against PyTorch (max abs error <= 1e-4, else exit status 1).

    python benchmarks/onnx_restormer_speed.py [--size 256] [--runs 10] [--threads 2] [--layernorm WithBias]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from restormer_deploy.export.onnx_export import node_counts
from restormer_deploy.export.ort_session import make_session
from restormer_deploy.export.stages import ExportOptions, finish, prepare, trace
from restormer_deploy.restormer.presets import ModelSpec
from restormer_deploy.restormer.restormer_arch import Restormer

MAX_ABS_ERR = 1e-4


def build_model(layernorm: str, seed: int) -> torch.nn.Module:
    """Default-size Restormer; default init plus random LayerNorm affine and temperatures."""
    torch.manual_seed(seed)
    net = Restormer(LayerNorm_type=layernorm).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".norm" in name:  # ones / zeros at init: make them matter
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("temperature"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
    return net


def gemm_rate(threads: int, n: int = 4096, reps: int = 5) -> tuple[float, float]:
    """(best, median) GFLOP/s of an n×n×n FP32 torch.matmul."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return max(rates), statistics.median(rates)


def model_flops(net: torch.nn.Module, x: torch.Tensor) -> tuple[float, dict[str, float]]:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x)
    by_op = {str(k).split(".")[1] if "." in str(k) else str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    return float(counter.get_total_flops()), by_op


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="input height and width (multiple of 8)")
    ap.add_argument("--runs", type=int, default=10, help="timed rounds (median and p90 over them)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls of each backend first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layernorm", choices=("WithBias", "BiasFree"), default="WithBias")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-plain", action="store_true", help="skip the two plain-export rows")
    ap.add_argument("--spin", action="store_true", help="let make_session's idle threads spin (ORT's default)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="folder to keep plain.onnx, optimized.onnx and ONNX Runtime's optimised model in")
    args = ap.parse_args()
    if args.size % 8:
        ap.error("--size must be a multiple of 8")

    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    spec = ModelSpec("benchmark", "restormer", "denoise", {"LayerNorm_type": args.layernorm}, pad_multiple=8)
    net = build_model(args.layernorm, args.seed)
    params = sum(p.numel() for p in net.parameters())
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.seed + 2))
    xn = x.numpy()

    t0 = time.perf_counter()
    traced = trace(net, spec)
    plain = onnx.ModelProto()
    plain.CopyFrom(traced)
    plain = finish(prepare(plain, optimize=False), spec, ExportOptions())
    optimized = finish(prepare(traced, optimize=True), spec, ExportOptions())
    export_s = time.perf_counter() - t0
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        onnx.save(plain, str(args.keep / "plain.onnx"))
        onnx.save(optimized, str(args.keep / "optimized.onnx"))
    keep = (lambda name: str(args.keep / name)) if args.keep else (lambda name: None)

    sessions = {}
    t0 = time.perf_counter()
    if not args.no_plain:
        sessions["ORT, plain export, default session"] = make_session(
            plain, args.threads, layout=False, spin=True, optimized_model_filepath=keep("plain.ort.onnx"))
        sessions["ORT, plain export, make_session"] = make_session(plain, args.threads, spin=args.spin)
    sessions["ORT, optimised export, default session"] = make_session(optimized, args.threads, layout=False, spin=True)
    sessions["ORT, optimised export, make_session"] = make_session(
        optimized, args.threads, spin=args.spin, optimized_model_filepath=keep("optimized.ort.onnx"))
    session_s = time.perf_counter() - t0

    with torch.inference_mode():
        ref = net(x).numpy()
    errors = {}
    for name, session in sessions.items():
        got = session.run(None, {"input": xn})[0]
        errors[name] = float(np.abs(got - ref).max())

    backends = {"PyTorch eager": lambda: net(x)}
    for name, session in sessions.items():
        backends[name] = lambda s=session: s.run(None, {"input": xn})
    times: dict[str, list[float]] = {name: [] for name in backends}
    with torch.inference_mode():
        for _ in range(args.warmup):
            for fn in backends.values():
                fn()
        for _ in range(args.runs):
            for name, fn in backends.items():
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1e3)

    flops, by_op = model_flops(net, x)
    peak, peak_median = gemm_rate(args.threads)

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"Restormer {args.layernorm}, {params / 1e6:.1f}M parameters, 1×3×{args.size}×{args.size}, "
          f"{args.threads} threads; torch {torch.__version__}, onnxruntime {ort.__version__}; {cpu}")
    print(f"model work: {flops / 1e9:.1f} GFLOP = {flops / 2e9:.1f} GMAC ("
          + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in sorted(by_op.items())) + " GFLOP)")
    print(f"FP32 GEMM rate (4096² torch.matmul, {args.threads} threads): best {peak:.1f} GFLOP/s, median {peak_median:.1f}")
    print(f"export {export_s:.0f} s, ORT sessions {session_s:.0f} s; median of {args.runs} interleaved rounds after "
          f"{args.warmup} warm-up calls each")
    print()
    eager = statistics.median(times["PyTorch eager"])
    print("| backend | median ms | p90 ms | speed-up vs eager | GFLOP/s | fraction of GEMM peak | max abs err |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, values in times.items():
        med = statistics.median(values)
        rate = flops / (med / 1e3) / 1e9
        err = f"{errors[name]:.1e}" if name in errors else "(reference)"
        print(f"| {name} | {med:.0f} | {percentile(values, 0.9):.0f} | {eager / med:.2f}× | {rate:.1f} | "
              f"{rate / peak:.1%} | {err} |")
    print()
    counts = node_counts(optimized)
    print("optimised export nodes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
    bad = {name: err for name, err in errors.items() if not err <= MAX_ABS_ERR}
    if bad:
        print(f"FAILED: max abs error above {MAX_ABS_ERR:g}: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
