"""Seams of tiled inference: tiled against untiled output on a 512x512 image (tile 128, overlap 32).

* Converse-DnCNN (official weights, grey ``Set12/08.png``, 512², σ 25): a convolutional network,
  so the tiled output should equal the untiled one up to the blend (target >= 50 dB);
* the built-in ``default`` Restormer (colour ``skimage.data.astronaut()``, 512², σ 25): its
  attention uses statistics of the whole tile, so outputs differ by design; the target is a task
  PSNR (against the clean image) within 0.05 dB of the untiled one.

    python benchmarks/tile_seams.py [--tile 128] [--overlap 32] [--model default|CHECKPOINT.safetensors]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from restormer_deploy.restormer.tiling import restore_array
from restormer_deploy.restormer.degrade import add_gaussian_noise
from restormer_deploy.restormer.imageio import from_float, read_image
from restormer_deploy.restormer.metrics import psnr, psnr_peak1
from restormer_deploy.restormer.presets import load_model, shared_dir


def case(model: str, clean: np.ndarray, tile: int, overlap: int) -> dict:
    net, spec = load_model(model)
    noisy = add_gaussian_noise(clean.astype(np.float32) / 255.0, 25.0, seed=0)  # HxWxC float
    x = noisy.transpose(2, 0, 1)

    def fn(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(batch)).numpy()

    whole = restore_array(fn, spec, x)
    tiled = restore_array(fn, spec, x, tile=tile, overlap=overlap)
    to_img = lambda y: from_float(y.transpose(1, 2, 0))  # noqa: E731
    return {"model": model, "tiled_vs_untiled_db": psnr_peak1(tiled, whole),
            "task_untiled": psnr(to_img(whole), clean), "task_tiled": psnr(to_img(tiled), clean)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="default", help="the Restormer case: a preset or one of our checkpoints")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from skimage import data

    rows = [case(args.model, data.astronaut(), args.tile, args.overlap)]
    set12 = shared_dir() / "data" / "denoise" / "Set12" / "08.png"
    if set12.is_file():
        rows.insert(0, case("converse-dncnn", read_image(set12, channels=1), args.tile, args.overlap))
    else:
        print(f"skipping Converse-DnCNN: {set12} not found")
    print(f"tile {args.tile}, overlap {args.overlap}, 512x512, noise sigma 25 (seed 0)")
    print("| model | tiled vs untiled (dB) | task PSNR untiled | task PSNR tiled | change |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['tiled_vs_untiled_db']:.2f} | {r['task_untiled']:.2f} | {r['task_tiled']:.2f} | "
              f"{r['task_tiled'] - r['task_untiled']:+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
