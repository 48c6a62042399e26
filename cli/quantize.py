"""restore-quantize: an FP32 ONNX file of this project in, a verified INT8 (Q/DQ) ONNX file out."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from restormer_deploy.cli.common import USER_ERRORS, console, fail, fail_from, out, run, write_json

EPILOG = """
[bold]Examples[/]

  restore-export default --out default_fp32.onnx
  restore-quantize default_fp32.onnx --calib-dir photos/ --out default_int8.onnx

  restore-quantize model.onnx --calib-dir photos/ --calib-count 20 --calib-cache ranges.json --json q.json --out q.onnx

[bold]What it does[/]: reads the model spec from the file's metadata (written by restore-export),
calibrates the ranges with ONNX Runtime on the first --calib-count images of --calib-dir (sorted by
name), runs the per-layer sensitivity and the greedy search (as restore-export --precision int8:
docs/INT8.md), places the Q/DQ nodes, and verifies the result against the input FP32 file in ONNX
Runtime on held-out images: the next --verify-count images of --calib-dir (or --verify-dir), never
calibrated on. Every held-out image must reach 35 dB against the FP32 output, and the mean task-PSNR
drop must be <= 0.3 dB; the file is written only then. It also times FP32 against INT8 on this CPU
and says when INT8 is the slower one. Needs onnxruntime, not torch.

The file is for ONNX Runtime (FP32 fallback, uint8 activations); for a TensorRT file with FP16
fallback use restore-export MODEL --precision int8 --fallback fp16.

Exit status: 0 written; 1 the verification failed (nothing written); 2 bad usage or input.
"""

app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


def print_verification(result: dict) -> None:
    check, split = result["verify"], result["split"]
    table = Table("held-out image", "INT8 vs FP32 (dB)", "task FP32 (dB)", "task INT8 (dB)", "drop (dB)",
                  title=f"verified against {result['source']} (floor {check['floor_db']:.0f} dB per image)")
    for r in check["images"]:
        table.add_row(r["name"], f"{r['psnr_vs_fp32']:.2f}", f"{r['task_fp32']:.2f}", f"{r['task_int8']:.2f}",
                      f"{r['task_drop']:.3f}")
    out.print(table)
    out.print(f"split: {len(split['calibration'])} calibration images, {len(split['search'])} search images, "
              f"{len(split['held_out'])} held-out images from {split['held_out_from']} "
              f"(crop {split['held_out_crop'] or 'full'}); worst {check['min_psnr_vs_fp32']:.2f} dB, "
              f"mean task drop {check['mean_task_drop']:.3f} dB", highlight=False, soft_wrap=True)


@app.command(help=__doc__, epilog=EPILOG)
def main(
    source: Path = typer.Argument(..., help="FP32 .onnx file written by restore-export."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Output .onnx file (written only if it passes)."),
    calib_dir: Path = typer.Option(..., "--calib-dir", help="Folder of clean images: the first --calib-count calibrate, the next --verify-count are held out."),
    calib_count: int = typer.Option(20, "--calib-count", help="Number of calibration images (sorted by name)."),
    calib_size: int = typer.Option(128, "--calib-size", help="Seeded random crop size of the calibration images; 0 = full images."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="minmax | entropy | percentile."),
    degrade: Optional[str] = typer.Option(None, "--degrade", help="Degradation SPEC of every input (default: the preset's; 'none': clean; needed without torch)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the crops and the degradation."),
    psnr_budget: float = typer.Option(0.3, "--psnr-budget", help="Allowed task-PSNR drop (dB) on the search images."),
    search_dir: Optional[Path] = typer.Option(None, "--search-dir", help="Images of the sensitivity search (default: the calibration images, other crops and noise)."),
    search_size: int = typer.Option(128, "--search-size", help="Crop size of the search images; 0 = full images."),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="Layer (or node) kept in FP32; repeat or comma-separate."),
    quantize_ends: bool = typer.Option(False, "--quantize-ends", help="Also quantize the first and last conv."),
    calib_cache: Optional[Path] = typer.Option(None, "--calib-cache", help="JSON range cache, reused when the model and the settings match; written only if the file passes."),
    no_search: bool = typer.Option(False, "--no-search", help="Skip the per-layer sensitivity and the greedy search."),
    verify_dir: Optional[Path] = typer.Option(None, "--verify-dir", help="Held-out images (default: those of --calib-dir after the calibration ones)."),
    verify_count: int = typer.Option(4, "--verify-count", help="Number of held-out images."),
    verify_size: int = typer.Option(256, "--verify-size", help="Seeded random crop size of the held-out images; 0 = full images."),
    threads: int = typer.Option(1, "--threads", help="ONNX Runtime threads of the calibration, search and verification."),
    no_speed_check: bool = typer.Option(False, "--no-speed-check", help="Do not time FP32 against INT8 on this CPU."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON here."),
) -> None:
    from restormer_deploy.calibration.onnx_in import quantize_file
    from restormer_deploy.calibration.options import Int8Options
    from restormer_deploy.calibration.speed import slower_note
    from restormer_deploy.cli.int8_report import print_int8_report

    try:
        if json_out and not json_out.parent.is_dir():
            raise ValueError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        opts = Int8Options(calib_dir=calib_dir, calib_count=calib_count, calib_size=calib_size or None,
                           calib_method=calib_method, degrade=degrade, seed=seed, psnr_budget=psnr_budget,
                           fallback="fp32", search_dir=search_dir, search_size=search_size or None,
                           exclude=[e for x in exclude or [] for e in x.split(",") if e], quantize_ends=quantize_ends,
                           calib_cache=calib_cache, sensitivity=not no_search, threads=threads,
                           speed_check=not no_speed_check)
        out.print(f"quantizing [bold]{source}[/] to INT8 (ONNX Runtime file, FP32 fallback) ...", soft_wrap=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = quantize_file(source, out_path, opts, verify_dir=verify_dir, verify_count=verify_count,
                                       verify_size=verify_size or None, log=lambda line: out.print(line, highlight=False))
            finally:
                for w in caught:
                    console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)
    except FileNotFoundError as exc:
        raise fail_from(exc)
    except OSError as exc:  # disk full, unwritable folder: nothing was written (atomic)
        raise fail(f"cannot write {out_path}: {exc.strerror or exc}")
    except USER_ERRORS as exc:  # a failed verification exits 1, bad input 2
        raise fail_from(exc)
    print_int8_report(out, result["int8"], notes=False)
    print_verification(result)
    out.print(f"wrote {result['path']} in {result['seconds']:.0f} s", highlight=False)
    note = slower_note(result["int8"].get("cpu_speed"))
    if note:  # last, on stderr: what a user who asked for INT8 on the CPU must not miss
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if json_out:
        write_json(json_out, result)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
