"""restore-eval: PSNR/SSIM of a model on a folder of clean images with a synthetic degradation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from restormer_deploy.cli.common import (EXIT_BAD_INPUT, EXIT_CHECK_FAILED, USER_ERRORS, ProgressLines, check_tiling, fail, fail_from,
                                         out, run, set_threads, write_json)
from restormer_deploy.restormer.degrade import QUANTIZE, SPEC_GRAMMAR, parse_degradation
from restormer_deploy.restormer.evaluate import check_compatible, evaluate, summarise
from restormer_deploy.restormer.imageio import list_images
from restormer_deploy.restormer.presets import PRESETS, load_model

EPILOG = f"""
[bold]Examples[/]

  restore-eval converse-dncnn --data ../shared/data/denoise/Set12 --degrade noise:25

  restore-eval converse-srresnet --data ../shared/data/sr/Set5 --degrade sr:4 --json set5.json

  restore-eval converse-usrnet --data ../shared/data/denoise/CBSD68 --limit 4 --crop 192 \\
      --degrade blur:../shared/data/kernels/conversenet/kernel_1.npy+noise:2.55

  restore-eval default --data ../shared/data/denoise/CBSD68 --degrade noise:25 --tile 128

  restore-eval restormer-denoise-color --weights gaussian_color_denoising_blind.pth \\
      --data CBSD68 --degrade noise:25

[bold]Degradations[/] ({SPEC_GRAMMAR}):
noise:SIGMA adds N(0, SIGMA/255) to the [0,1] image, unclipped, seeded per image (np.random.seed(SEED));
sr:SCALE is MATLAB bicubic downsampling, scored on Y with SCALE pixels shaved; blur:... is the
wrap-around blur of the official ConverseNet test script on the uint8 image (cropped to a multiple
of 8), then noise, scored with 1 pixel shaved.
These are the papers' protocols: the network gets the degraded image as unclipped floats. A real
degraded file is clipped and rounded to its bit depth (a few tenths of a dB harder at noise:25): SPEC{QUANTIZE}
(e.g. noise:25{QUANTIZE}) scores that, the input restore-run --degrade saves and restores. The protocol
used is printed and stored in --json (protocol, quantize).

[bold]Presets[/]: {", ".join(PRESETS)}

Exit status: 0 success; 1 when --min-psnr is not reached; 2 on bad usage or input (also when some image could not be read).
"""

app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


@app.command(help=__doc__.strip() if __doc__ else None, epilog=EPILOG)
def main(
    model: str = typer.Argument(..., help="Preset name or one of our .safetensors checkpoints."),
    data: Path = typer.Option(..., "--data", help="Folder of clean images (sorted by name)."),
    degrade: str = typer.Option(None, "--degrade", help=f"Degradation SPEC: {SPEC_GRAMMAR}. Default: the preset's published protocol."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights file (.pth loads with weights_only=True, or .safetensors)."),
    seed: int = typer.Option(0, "--seed", help="Noise seed, reset for every image as in the official test scripts."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N images."),
    crop: Optional[int] = typer.Option(None, "--crop", min=8, help="Central N x N crop of every image first."),
    tile: Optional[int] = typer.Option(None, "--tile", min=8, help="Restore in N x N tiles with feathered blending, as restore-run --tile does (default: whole images, the papers' protocol)."),
    tile_overlap: int = typer.Option(32, "--tile-overlap", min=0, help="Overlap of neighbouring tiles, pixels."),
    min_psnr: Optional[float] = typer.Option(None, "--min-psnr", help="Exit 1 when the mean PSNR is below this."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON here."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for PyTorch."),
) -> None:
    set_threads(threads)
    try:
        spec_text = degrade or (PRESETS[model].degrade if model in PRESETS else None)
        if not spec_text:
            raise ValueError(f"{model} has no default protocol: pass --degrade ({SPEC_GRAMMAR})")
        degradation = parse_degradation(spec_text)
        paths = list_images(data)[:limit]
        if not paths:
            raise ValueError(f"no images (png/jpg/bmp/tif) in {data}")
        if json_out and not json_out.parent.is_dir():
            raise ValueError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        if min_psnr is not None and not math.isfinite(min_psnr):
            raise ValueError(f"--min-psnr must be a finite number of dB, got {min_psnr}")
        net, spec = load_model(model, weights)
        check_compatible(spec, degradation)
        check_tiling(tile, tile_overlap, spec.pad_multiple)
    except USER_ERRORS as exc:
        raise fail_from(exc)

    out.print(f"[bold]{spec.name}[/] on {data} ({len(paths)} images): {degradation.describe()}, seed {seed}")
    protocol = degradation.protocol(spec_text)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=out, transient=True) as progress:
        task = progress.add_task("restoring", total=len(paths))
        lines = ProgressLines("restoring", len(paths))  # in logs, where the bar is not shown

        def on_image(r):
            if r.error:
                progress.console.print(f"[red]error:[/] {r.name}: {r.error}", highlight=False)
            progress.update(task, advance=1, description=r.name)
            lines.advance()

        results = evaluate(net, spec, paths, degradation, seed=seed, crop=crop, on_image=on_image, tile=tile,
                           overlap=tile_overlap)

    summary = summarise(results)
    summary.update(model=spec.name, degrade=spec_text, protocol=protocol, quantize=degradation.quantize, seed=seed,
                   data=str(data), crop=crop, tile=tile, tile_overlap=tile_overlap if tile else None)
    table = Table("image", "input PSNR", "PSNR", "SSIM", "s", title=f"{spec.name}: {spec_text}")
    for r in results:
        if r.error:
            table.add_row(r.name, "", "[red]error[/]", "", "")
        else:
            table.add_row(r.name, f"{r.input_psnr:.2f}" if r.input_psnr is not None else "-", f"{r.psnr:.2f}", f"{r.ssim:.4f}", f"{r.seconds:.1f}")
    if summary["psnr"] is not None:
        ip = summary["input_psnr"]
        table.add_row("[bold]mean[/]", f"{ip:.2f}" if ip is not None else "-", f"[bold]{summary['psnr']:.2f}[/]", f"{summary['ssim']:.4f}", "")
    out.print(table)
    out.print(f"protocol: {protocol}", highlight=False)
    if json_out:
        write_json(json_out, summary)
    if summary["failed"]:
        raise fail(f"{summary['failed']} of {len(results)} images failed", EXIT_BAD_INPUT)
    if min_psnr is not None and summary["psnr"] < min_psnr:
        raise fail(f"mean PSNR {summary['psnr']:.2f} dB is below --min-psnr {min_psnr}", EXIT_CHECK_FAILED)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
