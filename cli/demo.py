"""restore-demo: the README's main job, on the built-in default model and the bundled sample photos.

1. export the default model (a small Restormer trained by this project, blind colour Gaussian
   denoising) to a verified FP16 ONNX file with its custom TransposedAttention nodes;
2. add Gaussian noise (σ = 25 by default, seeded) to the bundled sample images and restore them
   with that file in ONNX Runtime, and with the PyTorch reference;
3. print the parity table: the ONNX output against PyTorch (PSNR, peak 1.0) and the task PSNR of
   both against the clean image;
4. write noisy, restored and side-by-side (noisy | restored | clean) PNGs.

Needs nothing outside the package: no ../shared, no download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from restormer_deploy.cli.common import EXIT_CHECK_FAILED, fail, out, run, set_threads
from restormer_deploy.export.contract import PARITY_FLOORS
from restormer_deploy.restormer.degrade import parse_degradation
from restormer_deploy.restormer.imageio import from_float, list_images, read_image, write_image
from restormer_deploy.restormer.metrics import psnr_peak1, task_scores
from restormer_deploy.restormer.presets import ASSETS

SAMPLES = ASSETS / "samples"
MODEL = "default"
MIN_PARITY_DB = PARITY_FLOORS["fp16"]  # the FP16 parity floor of restore-parity
app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


@app.command(help=__doc__, epilog="Example: restore-demo --out out/demo --sigma 25")
def main(
    out_dir: Path = typer.Option(Path("out/demo"), "--out", help="Where the ONNX file and the images go."),
    sigma: float = typer.Option(25.0, "--sigma", min=0, max=50, help="Noise level on the 0-255 scale (the model is blind over 0-50)."),
    threads: int = typer.Option(2, "--threads", min=1),
) -> None:
    set_threads(threads)
    import logging
    import warnings

    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)  # "torchvision is not installed"
    warnings.filterwarnings("ignore", category=FutureWarning)
    from restormer_deploy.engines.backends import OnnxRuntimeRunner, PyTorchRunner
    from restormer_deploy.export.onnx_export import ExportError, ExportOptions, export
    from restormer_deploy.restormer.checkpoints import WeightsError

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # --out is a file, or the folder cannot be made
        raise fail(f"cannot use {out_dir} as the output folder: {exc.strerror or exc}")
    onnx_path = out_dir / "default_fp16.onnx"
    out.print(f"[bold]1/3[/] exporting the built-in model to FP16 ONNX: {onnx_path}")
    try:
        result = export(MODEL, onnx_path, options=ExportOptions(precision="fp16"))
    except (WeightsError, FileNotFoundError) as exc:
        raise fail(f"the built-in model is missing from the package ({exc}); reinstall with `make demo`", EXIT_CHECK_FAILED)
    except ExportError as exc:
        raise fail(f"export self-check failed: {exc}", EXIT_CHECK_FAILED)
    except OSError as exc:  # disk full, unwritable folder
        raise fail(f"cannot write {onnx_path}: {exc.strerror or exc}")
    out.print(f"    verified: max abs error {result.max_abs_err:.1e}, {result.psnr_vs_torch:.1f} dB against PyTorch FP32")

    degradation = parse_degradation(f"noise:{sigma:g}")
    out.print(f"[bold]2/3[/] restoring the bundled samples (noise σ {sigma:g}) with ONNX Runtime and PyTorch")
    table = Table("image", "ONNX vs PyTorch", "noisy", "PyTorch", "ONNX FP16", "drop", "SSIM", title=f"parity and denoising, σ {sigma:g} (PSNR dB)")
    parity, drops = [], []
    with OnnxRuntimeRunner(onnx_path, threads=threads) as onnx_runner, PyTorchRunner(MODEL) as torch_runner:
        for path in list_images(SAMPLES):
            gt = read_image(path, channels=3)
            noisy = degradation.apply(gt, 0).lq  # float HxWxC, unclipped
            x = np.ascontiguousarray(noisy.transpose(2, 0, 1)[None], dtype=np.float32)
            got = onnx_runner.run(x)[0].transpose(1, 2, 0)
            ref = torch_runner.run(x)[0].transpose(1, 2, 0)
            restored = from_float(got)
            p_ref = task_scores(from_float(ref), gt, with_ssim=False)[0]
            p_got, s_got = task_scores(restored, gt)
            parity.append(psnr_peak1(got, ref))
            drops.append(p_ref - p_got)
            write_image(out_dir / f"{path.stem}_noisy.png", from_float(noisy))
            write_image(out_dir / f"{path.stem}_restored.png", restored)
            write_image(out_dir / f"{path.stem}_side_by_side.png", np.concatenate([from_float(noisy), restored, gt], axis=1))
            p_noisy = task_scores(from_float(noisy), gt, with_ssim=False)[0]
            table.add_row(path.name, f"{parity[-1]:.1f}", f"{p_noisy:.2f}", f"{p_ref:.2f}",
                          f"{p_got:.2f}", f"{drops[-1]:+.3f}", f"{s_got:.4f}")
    out.print("[bold]3/3[/] parity")
    out.print(table)
    out.print(f"images (noisy, restored, noisy | restored | clean) and the ONNX file written to {out_dir}/")
    if not parity or min(parity) < MIN_PARITY_DB:
        raise fail(f"parity failed: ONNX FP16 is {min(parity, default=0):.1f} dB from PyTorch (needs >= {MIN_PARITY_DB:g})", EXIT_CHECK_FAILED)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
