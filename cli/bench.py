"""restore-bench: latency, throughput, peak memory and FLOPs of artefacts on the installed runtimes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

import typer

from restormer_deploy.cli.common import EXIT_BAD_INPUT, USER_ERRORS, ProgressLines, console, fail_from, out, run, set_threads, write_json
from restormer_deploy.engines.backends import BACKENDS
from restormer_deploy.engines.bench import bench_one, markdown
from restormer_deploy.restormer.errors import one_line

EPILOG = f"""
[bold]Examples[/]

  restore-bench converse-dncnn.onnx converse-dncnn.fp16.onnx converse-dncnn --size 256x256

  restore-bench model.onnx --size 512x512 --iters 20 --threads 2 --json bench.json

Each ARTIFACT (.onnx, .engine/.plan, .safetensors checkpoint or preset; backends: {", ".join(BACKENDS)})
is run on a random input of --size after --warmup runs; latency is the median and 90th percentile
of --iters timed runs (wall clock around one inference, including host<->device copies).
Throughput is images/s and megapixels/s at that latency. Peak memory is the growth of the
process's peak resident set (VmHWM in /proc/self/status, reset through /proc/self/clear_refs
before each artefact when the kernel allows it; otherwise ru_maxrss) from the moment before the
artefact is loaded. FLOPs are counted with torch.utils.flop_counter on the PyTorch model of the
same architecture (the preset from the ONNX metadata, or --reference); convolutions and matrix
products are counted, the FFTs inside Converse2D are not. The table is printed as markdown, rates
(img/s, MP/s, GFLOP/s) to 3 significant figures; --json keeps them unrounded. When the output is
not a terminal (a log), progress lines go to stderr every 30 s ($RESTORE_PROGRESS_INTERVAL).

Exit status: 0 success; 2 on bad usage or an artefact that cannot be run.
"""

app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text) or re.fullmatch(r"\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"--size must be HxW (e.g. 256x256), got {text!r}")
    h, w = (int(m.group(1)), int(m.group(2))) if m.lastindex == 2 else (int(m.group(1)),) * 2
    if h < 1 or w < 1:
        raise ValueError(f"--size must be positive, got {text!r}")
    return h, w


@app.command(help=__doc__.strip() if __doc__ else None, epilog=EPILOG)
def main(
    artifacts: List[str] = typer.Argument(..., help="Artefacts: .onnx, .engine/.plan, .safetensors or preset names."),
    size: str = typer.Option("256x256", "--size", help="Input size HxW."),
    batch: int = typer.Option(1, "--batch", min=1, help="Batch size."),
    warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed runs first."),
    iters: int = typer.Option(10, "--iters", min=1, help="Timed runs."),
    backend: str = typer.Option("auto", "--backend", help=f"One of {', '.join(BACKENDS)}."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Preset/checkpoint to count FLOPs on (default: from the metadata)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write rows[...] here."),
) -> None:
    try:
        hw = parse_size(size)
        if backend not in BACKENDS:
            raise ValueError(f"unknown --backend {backend!r}; choose from {', '.join(BACKENDS)}")
        if json_out and not json_out.parent.is_dir():
            raise ValueError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        set_threads(threads)
    except USER_ERRORS as exc:
        raise fail_from(exc)
    rows, errors = [], []
    for artifact in artifacts:  # one artefact failing does not lose the others' results
        # on stderr: stdout is the markdown table
        lines = ProgressLines(f"{Path(artifact).name}: run", warmup + iters, unit="run", console=console)
        try:
            rows.append(bench_one(artifact, backend, size=hw, batch=batch, warmup=warmup, iters=iters, threads=threads,
                                  reference=reference, on_run=lambda done, total: lines.update(done)))
        except (*USER_ERRORS, MemoryError) as exc:
            errors.append({"artifact": artifact, "error": one_line(exc)})
            console.print(f"[bold red]error:[/] {artifact}: {one_line(exc)}", highlight=False, soft_wrap=True)
    if rows:
        out.print(markdown(rows), markup=False, highlight=False, soft_wrap=True)
    if json_out:
        write_json(json_out, {"size": f"{hw[0]}x{hw[1]}", "batch": batch, "iters": iters,
                              "rows": [r.to_json() for r in rows], "errors": errors})
    if errors:
        raise typer.Exit(EXIT_BAD_INPUT)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
