"""Converse2D speed: this project's solve against the official algorithm, side by side.

Both run in float32 with 2 threads; median of 20 runs after 3 warm-ups; nothing cached between
calls (the kernel spectrum is rebuilt every time in both). Prints the ratios.

    python benchmarks/converse2d_speed.py [--runs 20] [--threads 2]
"""

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import latency_ms  # noqa: E402

from restormer_deploy.restormer.ops import converse2d  # noqa: E402

# Loaded from its file: tests/ on sys.path would shadow restormer/ with tests/restormer/.
_ref = importlib.util.spec_from_file_location("converse_reference",
                                              Path(__file__).resolve().parents[1] / "tests" / "converse_reference.py")
converse_reference = importlib.util.module_from_spec(_ref)
_ref.loader.exec_module(converse_reference)
converse2d_official = converse_reference.converse2d_official

CASES = [
    # name, C, H, W, k, scale, padding, mode, target speed-up
    ("s=1: C=64 128x128 k=5 pad 4 replicate", 64, 128, 128, 5, 1, 4, "replicate", 3.0),
    ("s=2: C=64 64x64->128x128 k=2 pad 2 replicate", 64, 64, 64, 2, 2, 2, "replicate", 2.0),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.runs} runs")
    print(f"| case | official ms | ours ms | speed-up | target |")
    print(f"|---|---:|---:|---:|---:|")
    ok = True
    for name, c, h, w, k, s, p, mode, target in CASES:
        x = torch.rand(1, c, h, w)
        kernel = torch.softmax(torch.randn(1, c, k * k), -1).reshape(1, c, k, k)
        lam = torch.sigmoid(torch.zeros(1, c, 1, 1) - 9) + 1e-5
        with torch.inference_mode():
            ref = latency_ms(lambda: converse2d_official(x, kernel, lam, s, p, mode), args.runs)[0]
            ours = latency_ms(lambda: converse2d(x, kernel, lam, s, p, mode), args.runs)[0]
        ratio = ref / ours
        ok &= ratio >= target
        print(f"| {name} | {ref:.1f} | {ours:.1f} | {ratio:.2f}x | >= {target:.0f}x |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
