"""The TensorRT parts of restore-export: ``--format trt`` and ``--check-trt VERSION``.

``export_trt`` is called by ``restormer_deploy.cli.export.main``: it checks the TensorRT options, exports the ONNX
with ``export_onnx`` (every export option, INT8 ones included, applies unchanged), then lints
and/or builds. MODEL may be an existing ``.onnx`` file: then nothing is exported (``--check-trt``
alone needs no ``--out``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn

import typer

from restormer_deploy.cli.common import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, console, exit_code, fail, out, write_json
from restormer_deploy.engines.backends import ENGINE_SUFFIXES
from restormer_deploy.engines.tensorrt import builder
from restormer_deploy.engines.tensorrt.core import TrtError, read_onnx
from restormer_deploy.cli.lint_trt import EXIT_NOT_VERIFIED
from restormer_deploy.engines.tensorrt.lint import PARSES, REFUSED, lint_report, table_version
from restormer_deploy.export.contract import parse_version
from restormer_deploy.restormer.errors import RestoreError

if TYPE_CHECKING:
    from restormer_deploy.export.onnx_export import ExportOptions, ExportResult

ExportOnnx = Callable[..., "ExportResult"]  # export_onnx(path, options=...)


def log_line(message: str) -> None:
    console.print(message, highlight=False, soft_wrap=True)


def _check_options(model: str, *, fmt: str, out_path: Path | None, check_trt: str | None,
                   save_prepared: Path | None, json_out: Path | None, build: builder.BuildOptions) -> None:
    """TrtError (or ContractError) for what cannot work, before a long export."""
    if fmt not in ("onnx", "trt"):
        raise TrtError(f"--format must be onnx or trt, got {fmt!r}")
    if check_trt:
        table_version(check_trt)
    if json_out and not Path(json_out).parent.is_dir():
        raise TrtError(f"cannot write {json_out}: folder {Path(json_out).parent} does not exist")
    if save_prepared is not None:
        if not check_trt and fmt != "trt":
            raise TrtError("--save-prepared needs --check-trt VERSION or --format trt (the parser it prepares for)")
        if Path(save_prepared).suffix != ".onnx" or not Path(save_prepared).parent.is_dir():
            raise TrtError(f"--save-prepared must be an .onnx file in an existing folder, got {save_prepared}")
    if model.endswith(".onnx") and not Path(model).is_file():
        raise TrtError(f"ONNX file {model} not found")
    if fmt == "trt":
        if out_path is None or Path(out_path).suffix not in ENGINE_SUFFIXES:
            raise TrtError(f"--format trt needs --out ending in {' or '.join(ENGINE_SUFFIXES)}, got {out_path}")
        if not Path(out_path).parent.is_dir():
            raise TrtError(f"cannot write {out_path}: folder {Path(out_path).parent} does not exist")
        builder.check_plugin_libs(build.plugin_libs)
        builder.import_tensorrt()  # before a long export


def _onnx_file(model: str, *, fmt: str, out_path: Path | None, check_trt: str | None, trt_version: str | None,
               options: ExportOptions, export_onnx: ExportOnnx, result: dict) -> Path:
    """MODEL itself when it is an .onnx file, else the exported file (its result merged into ``result``)."""
    if model.endswith(".onnx"):
        return Path(model)
    if out_path is None:
        raise fail("--out is required", EXIT_BAD_INPUT)
    if fmt == "onnx" and Path(out_path).suffix != ".onnx":
        raise fail(f"--out must end in .onnx, got {out_path}")
    onnx_path = Path(out_path).with_suffix(".onnx") if fmt == "trt" else Path(out_path)
    if check_trt and not trt_version:  # --converse-lowering auto follows the linted version
        options = dataclasses.replace(options, tensorrt=parse_version(check_trt))
    result.update(export_onnx(onnx_path, options=options).to_json())  # raises typer.Exit on failure
    return onnx_path


def _lint(onnx_path: Path, check_trt: str, result: dict):
    """Lint for ``check_trt`` and print the report; returns (the loaded model, passed)."""
    try:
        proto = read_onnx(onnx_path)  # read once: lint, plugin count and --save-prepared share it
        report = lint_report(proto, check_trt, path=str(onnx_path))
    except RestoreError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT)
    except Exception as exc:  # a file onnx reads but the lint cannot walk
        raise fail(f"cannot read {onnx_path} as ONNX: {exc}", EXIT_BAD_INPUT)
    (out if report.passed else console).print(report.text(), highlight=False, soft_wrap=True)
    result["check_trt"] = report.to_json()
    return proto, report.verdict


def _build(onnx_path: Path, engine: Path, build: builder.BuildOptions, result: dict) -> None:
    try:
        built = builder.build_engine(onnx_path, engine, **build.kwargs(), log=log_line)
    except (RestoreError, FileNotFoundError) as exc:  # BuildFailed: exit 1; bad input: 2
        raise fail(str(exc), exit_code(exc))
    out.print(f"engine [bold]{built.engine}[/] (TensorRT {built.tensorrt_version}, {built.seconds:.0f} s), "
              f"sidecar {built.sidecar}")
    for note in built.notes:
        out.print(f"  {note}", highlight=False)
    result.update(path=built.engine, sidecar=built.sidecar, tensorrt_version=built.tensorrt_version,
                  precision=built.precision, profile=built.profile)


def export_trt(model: str, *, fmt: str, out_path: Path | None, check_trt: str | None, trt_version: str | None,
               save_prepared: Path | None, json_out: Path | None, build: builder.BuildOptions,
               options: ExportOptions, export_onnx: ExportOnnx) -> NoReturn:
    """``export_onnx(path, options=...) -> ExportResult`` writes the ONNX (``restormer_deploy.cli.export.export_onnx``
    with the model, weights and quantizer bound); ``options``: its ``ExportOptions``, whose TensorRT
    version follows --check-trt when --trt-version is not given. Raises typer.Exit with the status."""
    try:
        _check_options(model, fmt=fmt, out_path=out_path, check_trt=check_trt, save_prepared=save_prepared,
                       json_out=json_out, build=build)
    except RestoreError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT)
    result: dict = {}
    onnx_path = _onnx_file(model, fmt=fmt, out_path=out_path, check_trt=check_trt, trt_version=trt_version,
                           options=options, export_onnx=export_onnx, result=result)
    result["onnx"] = str(onnx_path)

    status, proto = 0, None
    if check_trt:
        proto, verdict = _lint(onnx_path, check_trt, result)  # not verified: its own status, never a refusal
        status = {PARSES: 0, REFUSED: EXIT_CHECK_FAILED}.get(verdict, EXIT_NOT_VERIFIED)
    if save_prepared is not None:
        try:
            result["prepared"] = str(builder.write_prepared(onnx_path if proto is None else proto, save_prepared, check_trt))
        except RestoreError as exc:
            raise fail(str(exc), EXIT_BAD_INPUT)
        out.print(f"prepared for the TensorRT parser (trtexec --onnx=...): [bold]{save_prepared}[/]")
    if fmt == "trt" and status == 0:
        _build(onnx_path, Path(out_path), build, result)
    elif fmt == "onnx":
        result.setdefault("path", str(onnx_path))
    if json_out:
        write_json(Path(json_out), result)
    raise typer.Exit(status)
