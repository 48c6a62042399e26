"""The 5-kernel deblurring table on a whole folder (CBSD68 by default), resumable.

Protocol of the official ConverseNet test script (wrap-around blur of the uint8 image cropped to a
multiple of 8, noise 2.55/255 after np.random.seed(0), PSNR on RGB uint8 with 1 pixel shaved).
Every (kernel, image) result is appended to a JSON-lines file as soon as it is computed, so an
interrupted run continues where it stopped. Prints the table next to the paper's BSD100 numbers
(CBSD68 is a 68-image subset of BSD100).

    python benchmarks/deblur_table.py --model converse-usrnet --out docs/results/cbsd68_converse-usrnet.jsonl
    python benchmarks/deblur_table.py --model converse-usrnet --out ... --report   # table only
    # on 2 cores, two single-threaded processes on disjoint kernels beat one with 2 threads:
    python benchmarks/deblur_table.py --out ... --threads 1 --kernel 1 --kernel 2 --kernel 3 &
    python benchmarks/deblur_table.py --out ... --threads 1 --kernel 4 --kernel 5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from restormer_deploy.restormer.degrade import parse_degradation
from restormer_deploy.restormer.evaluate import evaluate
from restormer_deploy.restormer.imageio import list_images
from restormer_deploy.restormer.presets import load_model, shared_dir

PAPER_BSD100 = {"converse-usrnet": [32.46, 31.20, 38.40, 32.21, 34.62]}


def done(path: Path) -> dict[tuple[int, str], dict]:
    rows = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[(row["kernel"], row["name"])] = row
    return rows


def report(model: str, rows: dict, count: int) -> None:
    paper = PAPER_BSD100.get(model, [None] * 5)
    print(f"| kernel | images | PSNR here (CBSD68) | input PSNR | paper (BSD100) |")
    print("|---|---:|---:|---:|---:|")
    for k in range(1, 6):
        r = [v for (kk, _), v in rows.items() if kk == k and v.get("psnr") is not None]
        if r:
            ref = f"{paper[k - 1]:.2f}" if paper[k - 1] else "-"
            print(f"| {k} | {len(r)}/{count} | {np.mean([v['psnr'] for v in r]):.2f} | "
                  f"{np.mean([v['input_psnr'] for v in r]):.2f} | {ref} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="converse-usrnet")
    ap.add_argument("--data", type=Path, default=shared_dir() / "data" / "denoise" / "CBSD68")
    ap.add_argument("--kernels", type=Path, default=shared_dir() / "data" / "kernels" / "conversenet")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--report", action="store_true", help="only print the table of what is done")
    ap.add_argument("--kernel", type=int, action="append", choices=range(1, 6),
                    help="only these kernels (repeatable); two processes on disjoint kernels may share --out")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    images = list_images(args.data)
    rows = done(args.out)
    if not args.report:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        net, spec = load_model(args.model)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for k in sorted(set(args.kernel or range(1, 6))):
            degradation = parse_degradation(f"blur:{args.kernels / f'kernel_{k}.npy'}+noise:2.55")
            for path in images:
                if (k, path.name) in rows:
                    continue
                (r,) = evaluate(net, spec, [path], degradation, seed=0)
                row = {"kernel": k, **r.__dict__}
                with open(args.out, "a") as f:  # one small O_APPEND write per row: safe for two writers
                    f.write(json.dumps(row) + "\n")
                rows[(k, path.name)] = row
                print(f"kernel {k} {path.name}: {r.psnr:.2f} dB ({r.seconds:.1f} s)", flush=True)
    report(args.model, rows, len(images))
    return 0


if __name__ == "__main__":
    sys.exit(main())
