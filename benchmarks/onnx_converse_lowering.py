"""Converse-DnCNN in ONNX Runtime (CPU) with both Converse2D lowerings, against PyTorch eager.

Exports the preset twice (``function``: Converse2D nodes run through their DFT function;
``matmul``: the plugin-free MatMul lowering), then times the two ORT sessions and the PyTorch
model side by side in one run, 2 threads each. Also prints the FLOPs of one Converse2D layer under
each lowering. This is the measurement behind ``--converse-lowering auto`` (= matmul for ONNX
Runtime).

    python benchmarks/onnx_converse_lowering.py [--size 128] [--runs 5] [--preset converse-dncnn]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from restormer_deploy.export.lowering import fft_flops, matmul_lowering_flops
from restormer_deploy.export.onnx_export import ExportOptions, export
from restormer_deploy.restormer.presets import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import latency_ms  # noqa: E402


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="converse-dncnn")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net, spec = load_model(args.preset)
    x = np.random.default_rng(0).random((1, spec.in_channels, args.size, args.size), dtype=np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lowering in ("function", "matmul"):
            path = Path(tmp) / f"{lowering}.onnx"
            export(args.preset, path, options=ExportOptions(converse_lowering=lowering, verify_size=32))
            s = session(path, args.threads)
            y = s.run(None, {"input": x})[0]
            ms, p90 = latency_ms(lambda: s.run(None, {"input": x}), args.runs)
            rows.append((f"ORT, Converse2D {lowering}", ms, p90, y))
    with torch.inference_mode():
        xt = torch.from_numpy(x)
        ref = net(xt).numpy()
        ms, p90 = latency_ms(lambda: net(xt), args.runs)
    torch_ms = ms
    print(f"{args.preset}, {args.size}x{args.size}, {args.threads} threads, median of {args.runs} runs")
    print("| backend | median ms | p90 ms | vs PyTorch | max abs err vs PyTorch |")
    print("|---|---:|---:|---:|---:|")
    print(f"| PyTorch eager | {torch_ms:.0f} | {p90:.0f} | 1.00x | - |")
    for name, ms, p90, y in rows:
        print(f"| {name} | {ms:.0f} | {p90:.0f} | {torch_ms / ms:.2f}x | {np.abs(y - ref).max():.1e} |")
    c = 2 * spec.config.get("num_features", 64)
    k, p = spec.config.get("kernel_size", 7), spec.config.get("padding", 6)
    mm = matmul_lowering_flops(c, args.size, args.size, k, 1, p)["total"]
    fft = fft_flops(c, args.size, args.size, k, 1, p)["total"]
    print(f"\nOne Converse2D layer (C={c}, k={k}, padding {p}): matmul lowering {mm / 1e6:.0f} MFLOP, "
          f"FFT {fft / 1e6:.0f} MFLOP, {mm / fft:.1f}x the FLOPs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
