"""Peak memory of tiled ``restore-run`` against image size: the network's memory must not grow with the image.

For each size, a fresh ``restore-run MODEL img.png -o OUT --tile T`` process (PyTorch backend, so
the whole run is one process) and its peak RSS (``getrusage(RUSAGE_CHILDREN)``, max resident set
of the waited-for child). The whole-image buffers of the tiled path are the ones the issue names:
the float32 input, the float32 output accumulator and the float32 blend-weight sum (``restore-run``
frees the decoded image before the tiles run and converts the result in place after). The run
passes when RSS grows by at most 1.2x what those buffers grow by, from the smallest size to each
larger one.

    python benchmarks/tile_memory.py [--model default] [--tile 256] [--sizes 1024 2048 4096]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from restormer_deploy.restormer.imageio import write_image


def buffers_mb(side: int, channels: int = 3) -> float:
    pixels = side * side
    return (pixels * channels * (4 + 4) + pixels * 4) / 2**20


def peak_rss_mb(cmd: list[str]) -> float:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux; max over children so far


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    exe = str(Path(sys.executable).parent / "restore-run")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for side in sorted(args.sizes):  # ascending: RUSAGE_CHILDREN keeps the maximum so far
            img = Path(tmp) / f"img{side}.png"
            write_image(img, (rng.random((side, side, 3)) * 255).astype(np.uint8))
            cmd = [exe, args.model, str(img), "-o", str(Path(tmp) / f"out{side}"), "--tile", str(args.tile),
                   "--tile-overlap", str(args.overlap), "--backend", "torch-cpu", "--threads", str(args.threads)]
            rows.append((side, peak_rss_mb(cmd), buffers_mb(side)))
    base_side, base_rss, base_buf = rows[0]
    print(f"restore-run {args.model} --tile {args.tile} --tile-overlap {args.overlap} (PyTorch CPU), peak RSS per process")
    print("| image | peak RSS MB | whole-image buffers MB | RSS growth vs smallest | buffer growth | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    ok = True
    for side, rss, buf in rows:
        grow, bgrow = rss - base_rss, buf - base_buf
        ratio = grow / bgrow if bgrow > 0 else float("nan")
        ok &= side == base_side or ratio <= 1.2
        print(f"| {side}² | {rss:.0f} | {buf:.0f} | {grow:+.0f} | {bgrow:+.0f} | {ratio:.2f} |" if side != base_side
              else f"| {side}² | {rss:.0f} | {buf:.0f} | - | - | - |")
    print("PASS: the network's memory does not grow with the image" if ok else "FAIL: RSS grows faster than 1.2x the buffers")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
