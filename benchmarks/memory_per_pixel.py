"""Peak memory of a whole-image ``restore-run`` per input pixel, per architecture: the figures behind
``restormer_deploy.restormer.tiling.BYTES_PER_PIXEL_PER_CHANNEL`` (automatic tiling when an image would
not fit in memory).

For each model, a fresh ``restore-run MODEL img.png -o OUT --tile 0`` process at two image sizes and its
peak RSS (``getrusage(RUSAGE_CHILDREN)`` of a wrapper process that runs only that child). The slope
(peak RSS difference / pixel difference) removes the constant part (libraries, weights); minus the
image buffers (``buffer_bytes_per_pixel``) and divided by the model's width (Restormer's dim, the
Converse models' feature channels), it is the stored figure. The presets without shipped weights run
as random checkpoints of the preset's configuration (memory does not depend on the weights' values).
``--onnx`` also measures the ``default`` model's FP32 ONNX file on ONNX Runtime CPU.

    python benchmarks/memory_per_pixel.py [--sizes 256 512] [--models default restormer ...] [--onnx]
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from restormer_deploy.restormer.checkpoints import save_checkpoint
from restormer_deploy.restormer.imageio import write_image
from restormer_deploy.restormer.presets import PRESETS, build
from restormer_deploy.restormer.tiling import WIDTH, buffer_bytes_per_pixel, bytes_per_pixel

MODELS = {"default": "default", "restormer": "restormer-denoise-color", "converse-dncnn": "converse-dncnn",
          "converse-srresnet": "converse-srresnet", "conversenet": "conversenet-deblur", "converse-usrnet": "converse-usrnet"}
_WRAPPER = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "sys.exit(p.stderr[-2000:] + p.stdout[-2000:]) if p.returncode else "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss(cmd: list[str]) -> int:
    """Peak RSS in bytes of ``cmd``, run alone under a fresh wrapper process."""
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return int(proc.stdout.split()[-1]) * 1024  # kB on Linux


def model_arg(name: str, tmp: Path) -> tuple[str, object]:
    """A restore-run MODEL argument for the case and its spec (a random checkpoint unless shipped)."""
    spec = PRESETS[MODELS[name]]
    if name == "default":
        return "default", spec
    spec = dataclasses.replace(spec, weights=None)
    torch.manual_seed(0)
    return str(save_checkpoint(tmp / f"{name}.safetensors", build(spec), {"model": spec.to_json()})), spec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs=2, default=[256, 512])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--onnx", action="store_true", help="also the default model's FP32 ONNX file on ONNX Runtime CPU")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    exe = str(Path(sys.executable).parent / "restore-run")
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "k.npy", np.full((7, 7), 1 / 49))
        cases = [(name, *model_arg(name, tmp), "torch-cpu") for name in args.models]
        if args.onnx:
            onnx = tmp / "default.onnx"
            subprocess.run([str(Path(exe).with_name("restore-export")), "default", "--out", str(onnx)], check=True,
                           capture_output=True)
            cases.append(("default (ONNX)", str(onnx), PRESETS["default"], "ort-cpu"))
        for name, model, spec, backend in cases:
            peaks = []
            for side in args.sizes:
                img = tmp / f"{side}.png"
                write_image(img, (rng.random((side, side, spec.in_channels)) * 255).astype(np.uint8))
                cmd = [exe, model, str(img), "-o", str(tmp / f"out-{side}"), "--tile", "0", "--overwrite",
                       "--backend", backend, "--threads", str(args.threads)]
                if spec.needs_kernel:
                    cmd += ["--kernel", str(tmp / "k.npy")]
                peaks.append(peak_rss(cmd))
            slope = (peaks[1] - peaks[0]) / (args.sizes[1] ** 2 - args.sizes[0] ** 2)
            key, default = WIDTH[spec.architecture]
            width = spec.config.get(key, default)
            per_channel = (slope - buffer_bytes_per_pixel(spec)) / width
            rows.append((name, backend, width, peaks, slope, per_channel, bytes_per_pixel(spec) + buffer_bytes_per_pixel(spec)))
    a, b = args.sizes
    print(f"restore-run MODEL img.png --tile 0 --threads {args.threads}: peak RSS at {a}² and {b}², slope per input pixel")
    print(f"| model | backend | width | peak {a}² MB | peak {b}² MB | bytes/pixel | per channel | stored estimate bytes/pixel |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, backend, width, peaks, slope, per_channel, stored in rows:
        print(f"| {name} | {backend} | {width} | {peaks[0] / 2**20:.0f} | {peaks[1] / 2**20:.0f} | {slope:.0f} | "
              f"{per_channel:.1f} | {stored:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
