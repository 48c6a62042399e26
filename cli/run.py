"""restore-run: restore image files with a preset, a checkpoint, an ONNX model or a TensorRT engine."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from restormer_deploy.cli.common import (EXIT_BAD_INPUT, EXIT_CHECK_FAILED, USER_ERRORS, ProgressLines, check_seed,
                                         check_threads, check_tiling, fail, fail_from, out, run, shown, write_json)
from restormer_deploy.engines.backends import BACKENDS, artifact_kind, load_runner
from restormer_deploy.engines.export_cache import fast_runner
from restormer_deploy.engines.parity import tile_verifier
from restormer_deploy.engines.restorer import Restorer, expand_inputs
from restormer_deploy.engines.shard import parse_shard, shard_slice
from restormer_deploy.restormer.degrade import SPEC_GRAMMAR, load_kernel, parse_degradation
from restormer_deploy.restormer.imageio import pixel_limit
from restormer_deploy.restormer.presets import resolve

EPILOG = f"""
[bold]Examples[/]

  restore-run converse-dncnn noisy/*.png -o restored/

  restore-run model.onnx photos/ -o out/ --tile 256 --tile-overlap 32 --json run.json

  restore-run model.onnx photos/ -o out/ --shard ${{SLURM_ARRAY_TASK_ID}}/8   [dim](worker I of 8; docs/SCALE_OUT.md)[/]

  restore-run converse-dncnn ../shared/data/denoise/Set12 -o demo/ --degrade noise:25

  restore-run restormer-denoise-color --weights gaussian_color_denoising_blind.pth in.tif -o out/ --backend torch-cpu

INPUT is a file, a folder (its images, sorted) or a glob. PNG/JPEG/BMP/TIFF, 8-bit grey or RGB;
16 bit: grey PNG, grey or RGB TIFF (a 16-bit colour PNG is refused, as Pillow would cut it to 8
bits: convert it to TIFF). Inputs are converted to the model's channels: a grey input gives a
grey output; a grey model turns a colour input into luma (BT.601, noted in the table and the
JSON). The alpha channel is passed through unchanged (nearest-upscaled for super-resolution); EXIF orientation is applied.
Each output has the input's name, format and bit depth, in OUTDIR; existing outputs are skipped
unless --overwrite; an input is never overwritten; files appear atomically.

--degrade SPEC ({SPEC_GRAMMAR}) degrades each input first (a demo): both the degraded
input (NAME_degraded.EXT) and the restored image are written, and PSNR/SSIM against the original
are reported. The model restores the degraded input as saved (clipped, rounded to the file's bit
depth: SPEC+quantize of restore-eval), so restore-run on NAME_degraded with --gt gives the same
scores. --gt DIR scores against same-named ground-truth images instead.

Backends: {", ".join(BACKENDS)}; auto = ONNX Runtime TensorRT EP > CUDA EP > CPU for .onnx (as installed), TensorRT for .engine/.plan; for a preset or checkpoint, its FP32 ONNX export on ONNX Runtime (CUDA EP when installed, else CPU), made on the first run, checked against PyTorch and cached in $RESTORE_CACHE_DIR or ~/.cache/restormer-deploy (docs/COMMANDS.md); PyTorch (CUDA > CPU) for blur-kernel models, when only PyTorch sees a GPU, or, with a notice, when no verified export can be made. --backend torch: always PyTorch.

Exit status: 0 every image restored (or skipped); 2 when any image failed (bad input: the others are
still processed, the failures listed) and on bad usage (unknown model, no inputs, bad option); 1 when
--verify N found a tile below the artefact's parity floor against PyTorch (N tiles drawn across the
batch, rerun in PyTorch: the proof on your own images).
"""

app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


@app.command(help=__doc__.strip() if __doc__ else None, epilog=EPILOG)
def main(
    model: str = typer.Argument(..., help="Preset, .safetensors checkpoint, .onnx model or TensorRT .engine/.plan."),
    inputs: List[str] = typer.Argument(..., help="Image files, folders or globs."),
    outdir: Path = typer.Option(..., "-o", "--out", help="Output folder (created if missing)."),
    tile: Optional[int] = typer.Option(None, "--tile", min=0, help="Tile size in input pixels; 0: the whole image. Default: the model's recommendation (preset default: 256), else the whole image, tiled automatically (with a notice) when it would not fit in memory."),
    tile_overlap: Optional[int] = typer.Option(None, "--tile-overlap", min=0, help="Overlap of neighbouring tiles (blended), at most half the tile. Default: the model's (32)."),
    batch: int = typer.Option(1, "--batch", min=1, help="Tiles per forward call."),
    backend: str = typer.Option("auto", "--backend", help=f"One of {', '.join(BACKENDS)}. auto: the fastest verified one (a preset or checkpoint runs as a cached, verified ONNX export; see Backends below); torch: PyTorch."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights for a preset (.pth or .safetensors)."),
    degrade: Optional[str] = typer.Option(None, "--degrade", help=f"Demo: degrade each input first ({SPEC_GRAMMAR})."),
    kernel_file: Optional[str] = typer.Option(None, "--kernel", help="Blur kernel FILE[:INDEX] for non-blind deblurring models."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="Folder of ground-truth images (same names): report PSNR/SSIM."),
    seed: int = typer.Option(0, "--seed", help="Noise seed for --degrade."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (PyTorch / ONNX Runtime)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (default: skip them)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: process only slice I (from 0) of N of the sorted inputs (array jobs, docs/SCALE_OUT.md)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write images[{input, output, status, seconds}] here."),
    verify: int = typer.Option(0, "--verify", min=0, help="Also run N tiles, drawn across the batch, in PyTorch and compare: the worst PSNR in the summary and --json; exit 1 below the artefact's parity floor."),
    verify_reference: Optional[str] = typer.Option(None, "--verify-reference", help="The PyTorch model --verify compares with (default: MODEL, or the preset an .onnx file or engine names)."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=0, help="Refuse images over this many pixels, checked from the header before decoding (default 200000000, or $RESTORE_MAX_PIXELS; 0: no limit)."),
) -> None:
    try:
        if backend not in BACKENDS:
            raise ValueError(f"unknown --backend {backend!r}; choose from {', '.join(BACKENDS)}")
        check_tiling(tile, tile_overlap)
        check_threads(threads)
        if max_pixels is None:
            pixel_limit()  # a malformed $RESTORE_MAX_PIXELS: once, here, not once per image
        degradation = parse_degradation(degrade) if degrade else None
        if degradation is not None:
            check_seed(seed)
        kernel = None
        if kernel_file:
            path, colon, idx = kernel_file.rpartition(":")
            kernel = (load_kernel(path, int(idx)) if colon and idx.isdigit() else load_kernel(kernel_file)).astype(np.float32)
        if gt is not None and not gt.is_dir():
            raise ValueError(f"--gt {gt}: not a folder")
        if json_out and not json_out.parent.is_dir():
            raise ValueError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        paths = expand_inputs(inputs)
        if not paths:
            raise ValueError(f"no input images matched {' '.join(inputs)}")
        all_paths = sorted(paths, key=str) if shard is not None else paths  # output names are decided from it
        if shard is not None:  # engines/shard.py; a slice may be empty when N exceeds the image count
            paths = shard_slice(paths, *parse_shard(shard))
        if outdir.exists() and not outdir.is_dir():
            raise ValueError(f"-o {outdir}: exists and is not a folder")
        kind = artifact_kind(model)
        if kind == "torch":  # the model's smallest tile, checked before a first run's export
            spec = resolve(model)
            check_tiling(tile, tile_overlap, spec.pad_multiple, spec.tile)
        if backend == "auto" and kind == "torch":  # engines/export_cache.py
            with out.status(f"{model}: preparing its verified ONNX export (exported once, then reused) ..."):
                runner, notice = fast_runner(model, weights=weights, threads=threads)
            if notice:
                out.print(notice, highlight=False, markup=False, soft_wrap=True)
        else:
            runner = load_runner(model, backend, weights=weights, threads=threads)
        if kind != "torch":  # an .onnx file or an engine: its spec comes from its metadata
            check_tiling(tile, tile_overlap, runner.spec.pad_multiple, runner.spec.tile)
        sr = getattr(degradation, "scale", 1)
        if degradation is not None and sr != runner.spec.scale and (sr > 1 or runner.spec.scale > 1):
            raise ValueError(f"--degrade {degrade}: " + (f"downsamples x{sr}, " if sr > 1 else "keeps the size, ")
                             + f"but {runner.spec.name} upscales x{runner.spec.scale}"
                             + (f" (use sr:{runner.spec.scale})" if runner.spec.scale > 1 else " (it is no super-resolution model)"))
        if runner.spec.in_channels not in (1, 3):
            raise ValueError(f"{runner.spec.name} takes {runner.spec.in_channels} channels: restore-run handles grey/RGB models")
        runner.activate()
        verifier = tile_verifier(runner, verify, model=model, weights=weights, reference=verify_reference,
                                 seed=seed) if verify else None  # engines/parity.py
        outdir.mkdir(parents=True, exist_ok=True)  # only once the model is known to load
    except USER_ERRORS as exc:  # a backend that cannot run the model is bad usage here, whatever its own code
        raise fail_from(exc, code=EXIT_BAD_INPUT)

    missing = sum(not p.exists() for p in paths)  # kept by expand_inputs: they fail as items
    out.print(f"[bold]{runner.spec.name}[/] on {runner.describe()}: {len(paths) - missing} image(s)"
              + (f" and {missing} missing" if missing else "") + f" -> {shown(outdir)}"
              + Restorer.describe_tiling(runner.spec, tile, tile_overlap))
    restorer = Restorer(verifier or runner, outdir=outdir, tile=tile, overlap=tile_overlap, batch=batch, degradation=degradation,
                        kernel=kernel, seed=seed, gt_dir=gt, overwrite=overwrite, max_pixels=max_pixels,
                        on_notice=lambda line: out.print(line, highlight=False, markup=False, soft_wrap=True))
    restorer.plan(all_paths)  # the whole list, in every shard alike: a name taken in another shard is refused here too
    items, interrupted, vanished = [], False, False
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    try:
        with Progress(*columns, console=out, transient=True) as progress:
            task = progress.add_task("restoring", total=len(paths))
            tiles = progress.add_task("  tiles", total=1, visible=False)
            lines = ProgressLines("restoring", len(paths))  # in logs, where the bar is not shown
            tile_lines = None

            def on_tile(done, total):
                nonlocal tile_lines
                progress.update(tiles, completed=done, total=total, visible=total > 1)
                if total > 1 and (tile_lines is None or tile_lines.total != total):
                    tile_lines = ProgressLines(f"  {path.name}: tile", total, unit="tile", ends=False)
                if tile_lines is not None:
                    tile_lines.update(done)
            for path in paths:
                if not outdir.is_dir():  # removed mid-run: the rest would each run through the model, then fail
                    vanished = True
                    break
                progress.update(task, description=shown(path.name))
                tile_lines = None
                item = restorer.restore(path, on_tile=on_tile)
                items.append(item)
                if item.status == "error":
                    progress.console.print(f"[red]error:[/] {shown(path)}: {shown(item.error)}", highlight=False, soft_wrap=True)
                progress.update(tiles, visible=False)
                progress.advance(task)
                lines.advance()
    except KeyboardInterrupt:  # Ctrl-C: the summary and --json of the images done, then exit 130
        interrupted = True
    finally:
        runner.deactivate()

    table = Table("input", "status", "s", "PSNR", "SSIM", "note", title=f"{runner.spec.name} ({runner.describe()})")
    for it in items:
        colour = {"ok": "green", "skipped": "yellow", "error": "red"}[it.status]
        table.add_row(shown(Path(it.input).name), f"[{colour}]{it.status}[/]", f"{it.seconds:.2f}",
                      f"{it.psnr:.2f}" if it.psnr is not None else "", f"{it.ssim:.4f}" if it.ssim is not None and math.isfinite(it.ssim) else "",
                      shown(it.error or it.extra.get("note", "")))
    counts = {s: sum(it.status == s for it in items) for s in ("ok", "skipped", "error")}
    scored = [it.psnr for it in items if it.psnr is not None and math.isfinite(it.psnr)]
    ssims = [it.ssim for it in items if it.psnr is not None and it.ssim is not None and math.isfinite(it.ssim)]
    if scored:
        table.add_row("[bold]mean[/]", "", "", f"{np.mean(scored):.2f}", f"{np.mean(ssims):.4f}" if ssims else "", "")
    out.print(table)
    if degradation is not None:  # what was restored: the saved NAME_degraded file, not the float of the papers
        out.print(f"protocol: {degradation.as_saved().protocol(degrade)}", highlight=False)
    out.print(f"{counts['ok']} restored, {counts['skipped']} skipped, {counts['error']} failed")
    verified = verifier.verify() if verifier is not None and not interrupted else None
    if verified is not None:
        out.print(f"verified {verified['tiles']} of {verified['of']} tiles against PyTorch ({verified['reference']}): "
                  + (f"worst {verified['worst_psnr']:.2f} dB, mean {verified['mean_psnr']:.2f} (floor {verified['floor']:g}): "
                     if verified["tiles"] else "") + ("PASSED" if verified["passed"] else "FAILED"),
                  highlight=False, markup=False, soft_wrap=True)
    if json_out:
        summary = {
            "model": model, "backend": runner.name, "precision": runner.precision, "outdir": str(outdir),
            "tile": tile, "tile_overlap": tile_overlap, "degrade": degrade, "shard": shard,
            "ok": counts["ok"], "skipped": counts["skipped"], "failed": counts["error"], "interrupted": interrupted,
            "images": [it.to_json() for it in items],
        }
        if verified is not None:
            summary["verify"] = verified
        write_json(json_out, summary)
    if vanished:
        raise fail(f"the output folder {outdir} disappeared after {len(items)} of {len(paths)} image(s); "
                   f"the others were not processed", EXIT_BAD_INPUT)
    if interrupted:
        raise fail(f"interrupted after {len(items)} of {len(paths)} image(s)"
                   + (f"; {json_out} lists them" if json_out else ""), 130)
    if counts["error"]:  # a failed image is bad input (DESIGN: exit 2); the rest were still processed
        raise typer.Exit(EXIT_BAD_INPUT)
    if verified is not None and not verified["passed"]:  # --verify: the artefact failed on the user's images
        raise typer.Exit(EXIT_CHECK_FAILED)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()

