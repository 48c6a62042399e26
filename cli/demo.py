"""restore-demo: the README's main job on the bundled sample images.

For now it denoises the samples (σ = 25) with the reference Converse-DnCNN and its official
weights from ../shared, and prints the PSNR before and after. The built-in default model of this
project replaces it once it is trained (training issue).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from cli.common import EXIT_CHECK_FAILED, fail, out, run, set_threads
from restormer.degrade import parse_degradation
from restormer.evaluate import evaluate_image
from restormer.imageio import from_float, list_images, read_image, write_image
from restormer.presets import ASSETS, load_model, official_weights, PRESETS

SAMPLES = ASSETS / "samples"
app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


@app.command(help=__doc__, epilog="Example: restore-demo --out out/demo")
def main(
    out_dir: Path = typer.Option(Path("out/demo"), "--out", help="Where the noisy and restored images go."),
    sigma: float = typer.Option(25.0, "--sigma", help="Noise level on the 0-255 scale."),
    threads: int = typer.Option(2, "--threads", min=1),
) -> None:
    set_threads(threads)
    preset = "converse-dncnn"
    weights = official_weights(PRESETS[preset])
    if weights is None or not weights.is_file():
        raise fail(
            f"the demo's reference model needs the official Converse-DnCNN weights, which are absent at {weights}. "
            "Put ../shared beside the project (or set RESTORMER_SHARED). The project's own built-in model "
            "comes with the training issue.",
            EXIT_CHECK_FAILED,
        )
    model, spec = load_model(preset)
    degradation = parse_degradation(f"noise:{sigma:g}")
    out_dir.mkdir(parents=True, exist_ok=True)
    out.print(f"[bold]{spec.description}[/], official weights {weights}")
    table = Table("image", "noisy PSNR", "restored PSNR", "gain", "SSIM", "s", title=f"denoising, sigma {sigma:g}")
    gains = []
    for path in list_images(SAMPLES):
        gt = read_image(path, channels=spec.in_channels)
        restored, r = evaluate_image(model, spec, degradation, gt, seed=0)
        noisy = from_float(degradation.apply(gt, 0).lq)
        write_image(out_dir / f"{path.stem}_noisy.png", noisy)
        write_image(out_dir / f"{path.stem}_restored.png", restored)
        write_image(out_dir / f"{path.stem}_clean.png", gt)
        gains.append(r.psnr - r.input_psnr)
        table.add_row(path.name, f"{r.input_psnr:.2f}", f"{r.psnr:.2f}", f"+{gains[-1]:.2f} dB", f"{r.ssim:.4f}", f"{r.seconds:.1f}")
    out.print(table)
    out.print(f"images written to {out_dir}/")
    if not gains or np.mean(gains) <= 0:
        raise fail("the model did not improve on the noisy input", EXIT_CHECK_FAILED)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
