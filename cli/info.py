"""restore-info: an artefact's metadata (ONNX metadata_props, engine sidecar, checkpoint config) and whether the installed runtimes can run it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from restormer_deploy.cli.common import EXIT_CHECK_FAILED, USER_ERRORS, fail_from, out, run, write_json
from restormer_deploy.engines.info import ArtifactInfo, describe

EPILOG = """
[bold]Examples[/]

  restore-info converse-dncnn.onnx

  restore-info model.engine --json info.json

  restore-info converse-dncnn

Shows the artefact's metadata (the keys of the design contract: architecture, preset, task, scale,
channels, value_range, pad_multiple, precision, tool_version, source_sha256; engines add
tensorrt_version, gpu, compute_capability, profile, plugin_sha256, onnx_sha256) and checks it
against this machine: onnxruntime version and execution providers, ONNX opset and custom domains,
TensorRT version (if importable) against the engine's, GPU (nvidia-smi), PyTorch CUDA. It says
what the file is for and what proves it: the target runtime (an engine: TensorRT; an INT8 file:
from its activation type; else as recorded), the precision (an FP16 file on ONNX Runtime's CPU:
FP16 stored, FP32 arithmetic), the FP32 islands, the tiling restore-run uses, the calibration
record (int8_* keys) and the verification record (for a preset or checkpoint: the cached export
restore-run uses and its verification against PyTorch).

Exit status: 0 some installed runtime can run it; 1 none can (or the metadata is incomplete);
2 bad usage (unknown or unreadable artefact).
"""

app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


@app.command(help=__doc__.strip() if __doc__ else None, epilog=EPILOG)
def main(
    artifact: str = typer.Argument(..., help=".onnx, .engine/.plan (+ .engine.json sidecar), .safetensors checkpoint or preset."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report here."),
) -> None:
    try:
        if json_out and not json_out.parent.is_dir():
            raise ValueError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        info = describe(artifact)
    except USER_ERRORS as exc:
        raise fail_from(exc)
    _print(info)
    if json_out:
        write_json(json_out, {**info.metadata, **info.to_json()})
    if not info.compatible:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _print(info: ArtifactInfo) -> None:
    meta = Table("key", "value", title=f"{info.artifact} ({info.kind})")
    for k, v in info.metadata.items():
        meta.add_row(k, str(v))
    out.print(meta)
    rt = info.runtimes
    out.print(f"onnxruntime {rt.get('onnxruntime')} ({', '.join(rt.get('onnxruntime_providers') or [])}); "
              f"TensorRT {rt.get('tensorrt') or 'not installed'}; torch {rt.get('torch')} (CUDA {rt.get('torch_cuda')}); "
              f"GPU {', '.join(rt['gpus']) or 'none'}", highlight=False)
    if info.graph is not None:
        for key in ("opsets", "custom_nodes", "functions", "inputs"):
            out.print(f"{key}: {getattr(info.graph, key)}", highlight=False)
    for key, value in info.record.items():
        if key == "fp32_islands" and isinstance(value, dict) and "count" in value:
            names = list(value["nodes"])
            value = f"{value['count']} node(s) kept in FP32: {', '.join(names[:3])}" + (", ..." if len(names) > 3 else "")
        elif isinstance(value, dict):
            value = "; ".join(f"{k} {v}" for k, v in value.items())
        out.print(f"{key.replace('_', ' ')}: {value}", highlight=False, soft_wrap=True)
    out.print(f"runs on: {', '.join(info.backends) or ('nothing (incompatible, below)' if info.problems else 'nothing installed')}")
    for p in info.warnings:
        out.print(f"[yellow]warning:[/] {p}", highlight=False)
    for p in info.problems:
        out.print(f"[red]incompatible:[/] {p}", highlight=False)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
