"""restore-info: an artefact's metadata (ONNX metadata_props, engine sidecar, checkpoint config) and whether the installed runtimes can run it."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cli.common import EXIT_CHECK_FAILED, fail, out, run, write_json
from engines.backends import (
    BackendError, artifact_kind, available_backends, ort_providers, read_sidecar, spec_from_metadata, tensorrt_version,
    torch_cuda_available,
)
from restormer.checkpoints import WeightsError

METADATA_KEYS = ("architecture", "preset", "task", "scale", "in_channels", "out_channels", "value_range", "pad_multiple",
                 "precision", "tool_version", "source_sha256")
SIDECAR_KEYS = ("tensorrt_version", "gpu", "compute_capability", "profile", "plugin_sha256", "onnx_sha256")

EPILOG = """
[bold]Examples[/]

  restore-info converse-dncnn.onnx

  restore-info model.engine --json info.json

  restore-info converse-dncnn

Shows the artefact's metadata (the keys of the design contract: architecture, preset, task, scale,
channels, value_range, pad_multiple, precision, tool_version, source_sha256; engines add
tensorrt_version, gpu, compute_capability, profile, plugin_sha256, onnx_sha256) and checks it
against this machine: onnxruntime version and execution providers, ONNX opset and custom domains,
TensorRT version (if importable) against the engine's, GPU (nvidia-smi), PyTorch CUDA.

Exit status: 0 some installed runtime can run it; 1 none can (or the metadata is incomplete);
2 bad usage (unknown or unreadable artefact).
"""

app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


def gpu_names() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        res = subprocess.run([exe, "--query-gpu=name,compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in res.stdout.splitlines() if line.strip()] if res.returncode == 0 else []


def runtimes() -> dict:
    info = {"python": platform.python_version()}
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort_providers()
    except ImportError:
        info["onnxruntime"] = None
    info["tensorrt"] = tensorrt_version()
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch_cuda_available()
    except ImportError:
        info["torch"] = None
    info["gpus"] = gpu_names()
    return info


def describe(artifact: str) -> tuple[dict, list[str]]:
    """(report, problems). Raises ValueError/FileNotFoundError/BackendError on unusable input."""
    kind = artifact_kind(artifact)
    problems: list[str] = []
    report: dict = {"artifact": artifact, "kind": kind}
    if kind == "onnx":
        import onnx

        path = Path(artifact)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise BackendError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        meta = {p.key: p.value for p in model.metadata_props}
        report["metadata"] = meta
        report["opsets"] = {(o.domain or "ai.onnx"): o.version for o in model.opset_import}
        report["custom_nodes"] = sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})
        report["functions"] = sorted(f"{f.domain}::{f.name}" for f in model.functions)
        report["inputs"] = {i.name: onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type) for i in model.graph.input}
        missing = [k for k in METADATA_KEYS if k not in meta]
        if missing:
            problems.append(f"metadata lacks {', '.join(missing)}")
        try:
            from onnx.defs import onnx_opset_version

            need = report["opsets"].get("ai.onnx", 0)
            if need > onnx_opset_version():
                problems.append(f"opset {need} is newer than the installed onnx supports ({onnx_opset_version()})")
        except Exception:
            pass
        undefined = [c for c in report["custom_nodes"] if c not in report["functions"] and not c.startswith("com.microsoft")]
        if undefined:
            problems.append(f"custom nodes without a function (need a plugin/runtime kernel): {', '.join(undefined)}")
    elif kind == "engine":
        path = Path(artifact)
        if not path.is_file():
            raise FileNotFoundError(f"engine not found: {path}")
        meta = read_sidecar(path)
        report["metadata"] = meta
        missing = [k for k in METADATA_KEYS + SIDECAR_KEYS if k not in meta]
        if missing:
            problems.append(f"sidecar lacks {', '.join(missing)}")
        installed = tensorrt_version()
        if installed is None:
            problems.append("TensorRT is not installed")
        elif meta.get("tensorrt_version") and meta["tensorrt_version"] != installed:
            problems.append(f"built with TensorRT {meta['tensorrt_version']}, installed is {installed}: rebuild")
        gpus = gpu_names()
        if not gpus:
            problems.append("no NVIDIA GPU found (nvidia-smi)")
        elif meta.get("compute_capability") and not any(str(meta["compute_capability"]) in g for g in gpus):
            problems.append(f"built for compute capability {meta['compute_capability']}, this machine has {'; '.join(gpus)}")
    else:
        from restormer.presets import official_weights, resolve

        spec = resolve(artifact)
        report["metadata"] = {k: v for k, v in spec.to_json().items()}
        weights = official_weights(spec)
        report["weights"] = str(weights) if weights else None
        if weights is None or not weights.is_file():
            problems.append(f"weights not found: {weights} (pass --weights to the other commands)")
    if "metadata" in report and kind != "torch":
        try:
            _spec, precision = spec_from_metadata(report["metadata"], artifact)
            report["precision"] = precision
        except BackendError as exc:
            problems.append(str(exc))
    report["backends"] = available_backends(artifact)
    if kind == "onnx" and not problems and "ort-cpu" in report["backends"]:
        problems += _ort_session_problems(artifact)  # what restore-run would meet: the session itself
    if [p for p in problems if " lacks " not in p]:
        report["backends"] = []  # "runs on" only what restore-run accepts
    elif not report["backends"]:
        problems.append("no installed runtime can run it")
    return report, problems


def _ort_session_problems(path: str) -> list[str]:
    from engines.backends import OnnxRuntimeRunner

    try:
        runner = OnnxRuntimeRunner(path, threads=1)
        runner.activate()
        runner.deactivate()
    except (BackendError, ValueError) as exc:
        return [f"ONNX Runtime cannot run it: {str(exc).splitlines()[0]}"]
    return []


@app.command(help=__doc__.strip() if __doc__ else None, epilog=EPILOG)
def main(
    artifact: str = typer.Argument(..., help=".onnx, .engine/.plan (+ .engine.json sidecar), .safetensors checkpoint or preset."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report here."),
) -> None:
    try:
        if json_out and not json_out.parent.is_dir():
            raise ValueError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        report, problems = describe(artifact)
    except (ValueError, FileNotFoundError, BackendError, WeightsError) as exc:
        raise fail(str(exc).splitlines()[0])
    report["runtimes"] = runtimes()
    warnings = [p for p in problems if " lacks " in p]  # optional keys: reported, not blocking
    problems = [p for p in problems if p not in warnings]
    report["problems"], report["warnings"] = problems, warnings
    report["compatible"] = not problems
    meta = Table("key", "value", title=f"{artifact} ({report['kind']})")
    for k, v in report["metadata"].items():
        meta.add_row(k, str(v))
    out.print(meta)
    rt = report["runtimes"]
    out.print(f"onnxruntime {rt.get('onnxruntime')} ({', '.join(rt.get('onnxruntime_providers') or [])}); "
              f"TensorRT {rt.get('tensorrt') or 'not installed'}; torch {rt.get('torch')} (CUDA {rt.get('torch_cuda')}); "
              f"GPU {', '.join(rt['gpus']) or 'none'}", highlight=False)
    for key in ("opsets", "custom_nodes", "functions", "inputs"):
        if key in report:
            out.print(f"{key}: {report[key]}", highlight=False)
    out.print(f"runs on: {', '.join(report['backends']) or ('nothing (incompatible, below)' if problems else 'nothing installed')}")
    for p in warnings:
        out.print(f"[yellow]warning:[/] {p}", highlight=False)
    for p in problems:
        out.print(f"[red]incompatible:[/] {p}", highlight=False)
    if json_out:
        write_json(json_out, {**report.get("metadata", {}), **report})
    if not report["compatible"]:
        raise typer.Exit(EXIT_CHECK_FAILED)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
