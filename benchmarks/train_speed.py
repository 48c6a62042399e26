"""CPU training speed of the default model, side by side: fp32, bf16 autocast, channels_last,
torch.compile, and combinations (issue 18). Prints seconds per step, the ratio to fp32, and the
validation PSNR after the same number of steps from the same start (so a faster variant that trains
worse shows it).

    python benchmarks/train_speed.py --steps 20 --patch 128 --batch 4 --threads 1 [--json out.json]

Every variant starts from the shipped weights with the same seed and sees the same batches (noise
σ uniform in [0, 50] on random crops of the bundled sample photos); the PSNR is on fixed crops of
the same photos at σ 25, so it compares variants, not the model's quality.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from restormer_deploy.restormer.imageio import list_images, read_image  # noqa: E402
from restormer_deploy.restormer.presets import ASSETS, load_model  # noqa: E402

VARIANTS = {
    "fp32": dict(),
    "bf16": dict(bf16=True),
    "channels_last": dict(channels_last=True),
    "compile": dict(compile=True),
    "compile+channels_last": dict(compile=True, channels_last=True),
    "compile+bf16": dict(compile=True, bf16=True),
}


def batches(images, steps, batch, patch, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        clean, noisy = [], []
        for _ in range(batch):
            img = images[rng.integers(len(images))]
            top = rng.integers(img.shape[0] - patch + 1)
            left = rng.integers(img.shape[1] - patch + 1)
            crop = np.float32(img[top:top + patch, left:left + patch] / 255.0).transpose(2, 0, 1)
            sigma = rng.uniform(0, 50) / 255.0
            clean.append(crop)
            noisy.append(crop + rng.normal(0, sigma, crop.shape).astype(np.float32))
        yield torch.from_numpy(np.stack(noisy)), torch.from_numpy(np.stack(clean))


def validate(net, images, patch=128):
    rng = np.random.default_rng(123)
    psnrs = []
    with torch.inference_mode():
        for img in images:
            crop = np.float32(img[:patch, :patch] / 255.0).transpose(2, 0, 1)[None]
            noisy = crop + rng.normal(0, 25 / 255.0, crop.shape).astype(np.float32)
            out = net(torch.from_numpy(noisy)).clamp(0, 1).numpy()
            psnrs.append(10 * np.log10(1 / np.mean((np.round(out * 255) / 255 - crop) ** 2)))
    return float(np.mean(psnrs))


def run_variant(base, images, steps, batch, patch, warmup, bf16=False, channels_last=False, compile=False):
    net = copy.deepcopy(base).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4, betas=(0.9, 0.999), weight_decay=1e-4)
    step_net = torch.compile(net) if compile else net
    times = []
    t_first = None
    for i, (x, y) in enumerate(batches(images, warmup + steps, batch, patch)):
        x, y = x.to(memory_format=fmt), y.to(memory_format=fmt)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.l1_loss(step_net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.01)
        opt.step()
        dt = time.perf_counter() - t0
        if i == 0:
            t_first = dt
        if i >= warmup:
            times.append(dt)
    net.eval()
    return {"s_per_step": float(np.median(times)), "first_step_s": t_first, "val_psnr": validate(net, images)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--json", dest="json_out")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base, _ = load_model("default")
    images = [read_image(path, channels=3) for path in list_images(ASSETS / "samples")]
    rows = {}
    for name in args.variants.split(","):
        torch.manual_seed(0)
        try:
            rows[name] = run_variant(base, images, args.steps, args.batch, args.patch, args.warmup, **VARIANTS[name])
        except Exception as exc:  # a variant this machine cannot run (e.g. no C++ compiler for compile)
            rows[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        r = rows[name]
        ref = rows.get("fp32", {}).get("s_per_step")
        if "error" in r:
            print(f"{name:24s} failed: {r['error']}", flush=True)
        else:
            ratio = f"{ref / r['s_per_step']:.2f}x" if ref else "-"
            print(f"{name:24s} {r['s_per_step']:.3f} s/step ({1 / r['s_per_step']:.2f} it/s)  speed {ratio:>6s}  "
                  f"first step {r['first_step_s']:.1f} s  val PSNR {r['val_psnr']:.2f} dB", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"config": vars(args), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
