"""restore-parity: what restore-run runs (an ONNX file, a TensorRT engine, a preset's cached export) against the PyTorch reference, tiled as restore-run tiles, on real images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from restormer_deploy.cli.common import (EXIT_BAD_INPUT, EXIT_CHECK_FAILED, USER_ERRORS, check_tiling, console, fail_from, out,
                                         run, write_json)
from restormer_deploy.engines.backends import BACKENDS
from restormer_deploy.engines.parity import MAX_SSIM_DROP, ParityReport, prepare_parity, run_parity
from restormer_deploy.export.contract import MAX_TASK_DROP_DB
from restormer_deploy.restormer.degrade import SPEC_GRAMMAR
from restormer_deploy.restormer.errors import one_line
from restormer_deploy.restormer.metrics import PSNR_CAP

EPILOG = f"""
[bold]Examples[/]

  restore-parity converse-dncnn.fp16.onnx --reference converse-dncnn --images ../shared/data/denoise/Set12

  restore-parity model.engine --reference restormer-denoise-color --weights gaussian_color_denoising_blind.pth \\
      --images CBSD68 --degrade noise:25 --limit 8 --crop 256 --json parity.json

  restore-parity model.onnx --reference ckpt.safetensors --images imgs/ --localize

  restore-parity default --reference default --images CBSD68 --limit 8   [dim](the cached export restore-run uses)[/]

MODEL is resolved as restore-run resolves it: an .onnx file or engine runs as is; a preset or
checkpoint runs as the verified FP32 ONNX export restore-run uses (cached; made and verified now
when there is none), or on PyTorch with --backend torch (refused when that is the reference
itself: PyTorch against itself proves nothing). Both run through restore-run's tiling: --tile,
--tile-overlap and --backend mean what they mean there (default: the model's recommended tile);
the reference is PyTorch on the same tiles, and PyTorch tiled against PyTorch whole is reported
apart (the tiling's own cost, not judged). Scores are our own: PSNR of the artefact against
PyTorch with peak 1.0 on outputs clamped to [0, 1], the task PSNR and SSIM of both against the
ground truth (as restore-eval: Y channel / border for SR) and their drops.

Every floor holds on every image (the table and --json give each image, the worst and the mean):
PSNR against PyTorch by the artefact's precision (ONNX metadata / engine sidecar): fp32 >= 60 dB,
fp16 >= 45 dB, int8 >= 35 dB; task-PSNR drop <= 0.3 dB; the task-SSIM drop is reported per image
and judged with --max-ssim-drop D. --min-psnr / --max-drop override the floors. The report names
the backend, the execution provider and what computed (ONNX Runtime's CPU provider stores an FP16
file's weights and activations in FP16 but computes mostly in FP32). An FP16 ONNX file is also run under emulated FP16
arithmetic (every FP16 tensor rounded to binary16 where it is produced, as on a GPU) against
PyTorch, with its own verdict (floor 45 dB): an FP16 overflow fails it before it reaches a GPU.
--localize exposes the outputs of the custom nodes (Converse2D, TransposedAttention) of the ONNX
graph and of the matching PyTorch modules and reports the first that diverges.

Degradation: {SPEC_GRAMMAR} (default: the reference preset's protocol).

Exit status: 0 passed; 1 a threshold failed; 2 bad usage or input.
"""

app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


@app.command(help=__doc__.strip() if __doc__ else None, epilog=EPILOG)
def main(
    artifact: str = typer.Argument(..., help="MODEL as restore-run takes it: .onnx, .engine/.plan, or a preset/checkpoint (its cached export)."),
    reference: str = typer.Option(..., "--reference", help="PyTorch reference: preset or .safetensors checkpoint."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights for the reference preset (.pth / .safetensors)."),
    images: Path = typer.Option(..., "--images", help="Folder of clean images."),
    degrade: Optional[str] = typer.Option(None, "--degrade", help=f"Degradation SPEC ({SPEC_GRAMMAR}); default: the preset's protocol."),
    min_psnr: Optional[float] = typer.Option(None, "--min-psnr", help="PSNR floor vs PyTorch (default by precision: 60/45/35 dB)."),
    max_drop: float = typer.Option(MAX_TASK_DROP_DB, "--max-drop", help="Largest allowed task-PSNR drop (dB)."),
    backend: str = typer.Option("auto", "--backend", help=f"As restore-run: {', '.join(BACKENDS)}."),
    tile: Optional[int] = typer.Option(None, "--tile", min=0, help="As restore-run: tile size; 0: whole images. Default: the model's recommendation."),
    tile_overlap: Optional[int] = typer.Option(None, "--tile-overlap", min=0, help="As restore-run: overlap of neighbouring tiles. Default: the model's."),
    max_ssim_drop: Optional[float] = typer.Option(MAX_SSIM_DROP, "--max-ssim-drop", help="Largest allowed task-SSIM drop on any image (default: reported, not judged)."),
    fp16_arithmetic: bool = typer.Option(True, "--fp16-arithmetic/--no-fp16-arithmetic", help="FP16 files: also check under emulated FP16 arithmetic."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N images."),
    crop: Optional[int] = typer.Option(None, "--crop", min=8, help="Central N x N crop of every image."),
    seed: int = typer.Option(0, "--seed", help="Noise seed (reset per image)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads."),
    localize: bool = typer.Option(False, "--localize", help="Report the first diverging custom node / layer (ONNX artefacts)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results here."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="No effect (kept for older scripts)."),
) -> None:
    def unreadable(path: Path, exc: BaseException) -> None:
        console.print(f"[bold red]error:[/] {path}: {one_line(exc)}", highlight=False, soft_wrap=True)

    try:
        if json_out and not json_out.parent.is_dir():
            raise ValueError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        check_tiling(tile, tile_overlap)
        with out.status(f"{artifact}: resolving it as restore-run does ..."):
            inputs = prepare_parity(artifact, reference, images=images, weights=weights, backend=backend,
                                    degrade=degrade, limit=limit, crop=crop, seed=seed, threads=threads, tile=tile,
                                    overlap=tile_overlap, on_unreadable=unreadable)
        spec = inputs.artifact.spec
        check_tiling(tile, tile_overlap, spec.pad_multiple, spec.tile)
        report = run_parity(inputs, min_psnr=min_psnr, max_drop=max_drop, max_ssim_drop=max_ssim_drop,
                            fp16_arithmetic=fp16_arithmetic, localize=localize, verbose=verbose)
    except USER_ERRORS as exc:  # bad input, and a runner that cannot start or run: exit 2, as documented
        raise fail_from(exc, EXIT_BAD_INPUT)
    _print(report)
    if json_out:
        write_json(json_out, report.to_json())
    if not report.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)
    if report.unreadable:  # the verdict stands for the images read; the unreadable ones are bad input
        console.print(f"[bold red]error:[/] {len(report.unreadable)} image(s) could not be read (listed above)",
                      highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT)


def _num(v, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def _print(report: ParityReport) -> None:
    floor, precision = report.threshold_psnr, report.precision
    fp16 = report.fp16_arithmetic
    columns = ["image", "tile", "PSNR vs torch", "max |err|", "torch tiled vs whole", "task ref", "task art", "drop",
               "SSIM drop"] + (["FP16 arith."] if fp16 is not None and fp16.passed is not None else []) + ["verdict"]
    table = Table(*columns, title=f"{report.artifact_file or report.artifact} ({report.backend}, {precision}) "
                                  f"vs {report.reference} (torch-cpu, fp32)")
    for r in report.images:
        bad = not r.finite or r.psnr_vs_reference < floor
        cells = [r.name, f"{r.tile}/{r.tile_overlap}" if r.tile else "whole",
                 f"[{'red' if bad else 'green'}]{r.psnr_vs_reference:.2f}[/]",
                 f"{r.max_abs_err:.2e}" if r.max_abs_err is not None else "NaN/Inf", _num(r.psnr_tiled_vs_whole),
                 _num(r.task_psnr_reference, ".3f"), _num(r.task_psnr_artifact, ".3f"), _num(r.task_psnr_drop, "+.3f"),
                 _num(r.ssim_drop, "+.4f")]
        if "FP16 arith." in columns:
            low = r.psnr_fp16_arithmetic is not None and r.psnr_fp16_arithmetic < fp16.floor
            cells.append(f"[{'red' if low else 'green'}]{_num(r.psnr_fp16_arithmetic)}[/]")
        cells.append("[green]ok[/]" if r.passed else "[red]FAILED[/]")
        table.add_row(*cells)
    out.print(table)
    say = lambda line: out.print(line, highlight=False, soft_wrap=True)  # noqa: E731
    say(f"ran: {report.resolved}; backend {report.backend}" + (f" ({report.provider})" if report.provider else "")
        + f"; computed: {report.arithmetic}; {report.tiling}")
    w, m = report.worst, report.mean
    say(f"PSNR vs PyTorch: worst {w['psnr_vs_reference']:.2f} dB, mean {m['psnr_vs_reference']:.2f} "
        f"(floor {floor:g} for {precision}, every image)")
    if "task_psnr_drop" in w:
        say(f"task PSNR {report.task_psnr_reference:.3f} -> {report.task_psnr_artifact:.3f} dB (mean); drop: worst "
            f"{w['task_psnr_drop']:+.3f}, mean {m['task_psnr_drop']:+.3f} (max {report.max_drop:g}, every image)")
    if "ssim_drop" in w:
        limit = f"max {report.max_ssim_drop:g}, every image" if report.max_ssim_drop is not None else "not judged"
        say(f"task SSIM drop: worst {w['ssim_drop']:+.4f}, mean {m['ssim_drop']:+.4f} ({limit})")
    if w.get("psnr_tiled_vs_whole", PSNR_CAP) < PSNR_CAP:
        say(f"the tiling's own cost, PyTorch tiled vs PyTorch whole: worst {w['psnr_tiled_vs_whole']:.2f} dB, "
            f"mean {m['psnr_tiled_vs_whole']:.2f} (reported, not judged)")
    say(f"{report.backend} verdict: " + ("PASSED" if report.run_passed else "FAILED"))
    if fp16 is not None:
        verdict = {True: "PASSED", False: "FAILED", None: "not checked"}[fp16.passed]
        figures = f"worst {fp16.worst:.2f} dB, mean {fp16.mean:.2f} (floor {fp16.floor:g}); " if fp16.passed is not None else ""
        say(f"FP16-arithmetic check: {figures}{verdict} ({fp16.note})")
    if report.held_out is not None:
        say(f"INT8 images held out from calibration: {report.held_out}")
    if report.localize is not None and report.localize.text:
        say(f"localize: {report.localize.text}")
    out.print("[bold green]PASSED[/]" if report.passed else "[bold red]FAILED[/]")


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
