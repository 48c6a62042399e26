"""restore-parity: an exported artefact (ONNX / TensorRT engine / checkpoint) against the PyTorch reference, on real images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from restormer_deploy.cli.common import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, USER_ERRORS, console, fail_from, out, run, write_json
from restormer_deploy.engines.backends import BACKENDS
from restormer_deploy.engines.parity import ParityReport, prepare_parity, run_parity
from restormer_deploy.export.contract import MAX_TASK_DROP_DB
from restormer_deploy.restormer.degrade import SPEC_GRAMMAR
from restormer_deploy.restormer.errors import one_line

EPILOG = f"""
[bold]Examples[/]

  restore-parity converse-dncnn.fp16.onnx --reference converse-dncnn --images ../shared/data/denoise/Set12

  restore-parity model.engine --reference restormer-denoise-color --weights gaussian_color_denoising_blind.pth \\
      --images CBSD68 --degrade noise:25 --limit 8 --crop 256 --json parity.json

  restore-parity model.onnx --reference ckpt.safetensors --images imgs/ --localize

Runs the artefact and the PyTorch reference on the same degraded images with polygraphy's
Comparator (our runners wrapped as polygraphy runners) and compares with our own function: PSNR
of the artefact against PyTorch with peak 1.0 on outputs clamped to [0, 1] (polygraphy's own PSNR
is not used), and the task PSNR of both against the ground truth (as restore-eval: Y channel /
border for SR) and its drop.

Thresholds by the artefact's precision (ONNX metadata / engine sidecar): fp32 >= 60 dB,
fp16 >= 45 dB, int8 >= 35 dB against PyTorch on every image; the task-PSNR drop must be <= 0.3 dB.
--min-psnr / --max-drop override them. --localize exposes the outputs of the custom nodes
(Converse2D, TransposedAttention) of the ONNX graph and of the matching PyTorch modules and
reports the first that diverges.

Degradation: {SPEC_GRAMMAR} (default: the reference preset's protocol).

Exit status: 0 passed; 1 a threshold failed; 2 bad usage or input.
"""

app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


@app.command(help=__doc__.strip() if __doc__ else None, epilog=EPILOG)
def main(
    artifact: str = typer.Argument(..., help="The artefact: .onnx, .engine/.plan, or a checkpoint/preset."),
    reference: str = typer.Option(..., "--reference", help="PyTorch reference: preset or .safetensors checkpoint."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights for the reference preset (.pth / .safetensors)."),
    images: Path = typer.Option(..., "--images", help="Folder of clean images."),
    degrade: Optional[str] = typer.Option(None, "--degrade", help=f"Degradation SPEC ({SPEC_GRAMMAR}); default: the preset's protocol."),
    min_psnr: Optional[float] = typer.Option(None, "--min-psnr", help="PSNR floor vs PyTorch (default by precision: 60/45/35 dB)."),
    max_drop: float = typer.Option(MAX_TASK_DROP_DB, "--max-drop", help="Largest allowed task-PSNR drop (dB)."),
    backend: str = typer.Option("auto", "--backend", help=f"Backend for the artefact: {', '.join(BACKENDS)}."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N images."),
    crop: Optional[int] = typer.Option(None, "--crop", min=8, help="Central N x N crop of every image."),
    seed: int = typer.Option(0, "--seed", help="Noise seed (reset per image)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads."),
    localize: bool = typer.Option(False, "--localize", help="Report the first diverging custom node / layer (ONNX artefacts)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results here."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show polygraphy's log."),
) -> None:
    def unreadable(path: Path, exc: BaseException) -> None:
        console.print(f"[bold red]error:[/] {path}: {one_line(exc)}", highlight=False, soft_wrap=True)

    try:
        if json_out and not json_out.parent.is_dir():
            raise ValueError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        inputs = prepare_parity(artifact, reference, images=images, weights=weights, backend=backend, degrade=degrade,
                                limit=limit, crop=crop, seed=seed, threads=threads, on_unreadable=unreadable)
        report = run_parity(inputs, min_psnr=min_psnr, max_drop=max_drop, localize=localize, verbose=verbose)
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


def _print(report: ParityReport) -> None:
    floor, precision = report.threshold_psnr, report.precision
    table = Table("image", "PSNR vs torch", "max |err|", "task ref", "task art", "drop",
                  title=f"{report.artifact} ({report.backend}, {precision}) vs {report.reference}")
    for r in report.images:
        bad = r.psnr_vs_reference < floor
        task = (r.task_psnr_reference, r.task_psnr_artifact, r.task_psnr_drop)
        table.add_row(r.name, f"[{'red' if bad else 'green'}]{r.psnr_vs_reference:.2f}[/]",
                      f"{r.max_abs_err:.2e}" if r.max_abs_err is not None else "NaN/Inf",
                      *(f"{v:.3f}" if v is not None else "-" for v in task))
    out.print(table)
    line = (f"min PSNR vs PyTorch {report.min_psnr_vs_reference:.2f} dB (floor {floor:g} for {precision}), "
            f"mean {report.mean_psnr_vs_reference:.2f} dB")
    if report.has_task:
        line += (f"; task PSNR {report.task_psnr_reference:.3f} -> {report.task_psnr_artifact:.3f} dB "
                 f"(drop {report.task_psnr_drop:+.3f}, max {report.max_drop:g})")
    out.print(line)
    if report.localize is not None and report.localize.text:
        out.print(f"localize: {report.localize.text}")
    out.print("[bold green]PASSED[/]" if report.passed else "[bold red]FAILED[/]")


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
