"""The TensorRT parts of restore-export: ``--format trt`` and ``--check-trt VERSION``.

``run_trt(main, params)`` is called by ``cli.export.main`` with all its parameters; it re-enters
``main`` with ``--format onnx`` for the ONNX step (so every export option, INT8 ones included,
applies unchanged), then lints and/or builds. MODEL may be an existing ``.onnx`` file: then nothing
is exported (``--check-trt`` alone needs no ``--out``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import onnx
import typer

from cli.common import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, console, fail, out, write_json
from engines.tensorrt.core import TrtError

ENGINE_SUFFIXES = (".engine", ".plan")


def _export_onnx(main, params: dict, onnx_out: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        side = Path(tmp) / "export.json"
        main(**{**params, "fmt": "onnx", "out_path": onnx_out, "check_trt": None, "json_out": side, "save_prepared": None})
        return json.loads(side.read_text())


def _save_prepared(model, target: Path, version: str | None) -> Path:
    """The ONNX as ``prepare_onnx`` hands it to the parser of ``version`` (else the installed TensorRT's)."""
    from engines.tensorrt.core import prepare_onnx
    from restormer.fileio import atomic_write

    if version is None:
        from engines.tensorrt.builder import import_tensorrt

        version = import_tensorrt().__version__
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    prepared, _ = prepare_onnx(model, version)
    return atomic_write(target, lambda tmp: onnx.save(prepared, str(tmp)))


def run_trt(main, params: dict) -> None:
    """Raises typer.Exit with the command's status."""
    import inspect

    params = {k: v for k, v in params.items() if k in inspect.signature(main).parameters}
    from engines.tensorrt.allowlist import line_of
    from engines.tensorrt.core import parse_version
    from engines.tensorrt.lint import format_report, lint, plugin_node_count, table_version

    model, fmt, out_path = params["model"], params["fmt"], params.get("out_path")
    check, json_out = params.get("check_trt"), params.get("json_out")
    result: dict = {}
    try:
        if fmt not in ("onnx", "trt"):
            raise TrtError(f"--format must be onnx or trt, got {fmt!r}")
        if check:
            table_version(check)  # validates the version early
        if json_out and not Path(json_out).parent.is_dir():
            raise TrtError(f"cannot write {json_out}: folder {Path(json_out).parent} does not exist")
        prepared_out = params.get("save_prepared")
        if prepared_out is not None:
            if not check and fmt != "trt":
                raise TrtError("--save-prepared needs --check-trt VERSION or --format trt (the parser it prepares for)")
            if Path(prepared_out).suffix != ".onnx" or not Path(prepared_out).parent.is_dir():
                raise TrtError(f"--save-prepared must be an .onnx file in an existing folder, got {prepared_out}")
        given_onnx = model.endswith(".onnx")
        if given_onnx and not Path(model).is_file():
            raise TrtError(f"ONNX file {model} not found")
        if fmt == "trt":
            if out_path is None or Path(out_path).suffix not in ENGINE_SUFFIXES:
                raise TrtError(f"--format trt needs --out ending in {' or '.join(ENGINE_SUFFIXES)}, got {out_path}")
            if not Path(out_path).parent.is_dir():
                raise TrtError(f"cannot write {out_path}: folder {Path(out_path).parent} does not exist")
            for lib in params.get("plugin_lib") or ():
                if not Path(lib).is_file():
                    raise TrtError(f"plugin library {lib} not found (build it: see engines/plugins/converse2d/README.md)")
            from engines.tensorrt.builder import import_tensorrt

            import_tensorrt()  # before a long export
    except TrtError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT)

    if given_onnx:
        onnx_path = Path(model)
    else:
        if out_path is None:
            raise fail("--out is required", EXIT_BAD_INPUT)
        onnx_path = Path(out_path).with_suffix(".onnx") if fmt == "trt" else Path(out_path)
        if check and not params.get("trt_version"):
            params["trt_version"] = check  # --converse-lowering auto follows the linted version
        result.update(_export_onnx(main, params, onnx_path))  # raises typer.Exit on failure
    result["onnx"] = str(onnx_path)

    status = 0
    if check:
        try:
            proto = onnx.load(str(onnx_path))  # read once: lint, plugin count and --save-prepared share it
            issues = lint(proto, check)
        except TrtError as exc:
            raise fail(str(exc), EXIT_BAD_INPUT)
        except Exception as exc:  # not an ONNX file (protobuf DecodeError and the like)
            raise fail(f"cannot read {onnx_path} as ONNX: {exc}", EXIT_BAD_INPUT)
        report = format_report(issues, check, str(onnx_path), plugin_node_count(proto))
        (console if issues else out).print(report, highlight=False, soft_wrap=True)
        result["check_trt"] = {"version": check, "table": table_version(check), "line": line_of(parse_version(check)),
                               "passed": not issues,
                               "issues": [str(i) for i in issues]}
        if issues:
            status = EXIT_CHECK_FAILED

    if prepared_out is not None:
        try:
            result["prepared"] = str(_save_prepared(proto if check else onnx_path, prepared_out, check))
        except TrtError as exc:
            raise fail(str(exc), EXIT_BAD_INPUT)
        out.print(f"prepared for the TensorRT parser (trtexec --onnx=...): [bold]{prepared_out}[/]")

    if fmt == "trt" and status == 0:
        from engines.tensorrt.builder import BuildFailed, build_engine

        try:
            built = build_engine(
                onnx_path, out_path, min_shape=params.get("min_shape"), opt_shape=params.get("opt_shape"),
                max_shape=params.get("max_shape"), tile=params.get("tile"), plugin_libs=params.get("plugin_lib") or (),
                timing_cache=params.get("timing_cache"), dla_core=params.get("dla_core"),
                log=lambda m: console.print(m, highlight=False, soft_wrap=True),
            )
        except BuildFailed as exc:
            raise fail(str(exc), EXIT_CHECK_FAILED)
        except (TrtError, FileNotFoundError) as exc:
            raise fail(str(exc), EXIT_BAD_INPUT)
        out.print(f"engine [bold]{built.engine}[/] (TensorRT {built.tensorrt_version}, {built.seconds:.0f} s), "
                  f"sidecar {built.sidecar}")
        for note in built.notes:
            out.print(f"  {note}", highlight=False)
        sidecar = json.loads(Path(built.sidecar).read_text())
        result.update(path=built.engine, sidecar=built.sidecar, tensorrt_version=built.tensorrt_version,
                      precision=sidecar.get("precision", result.get("precision")), profile=sidecar["profile"])
    elif fmt == "onnx":
        result.setdefault("path", str(onnx_path))
    if json_out:
        write_json(Path(json_out), result)
    raise typer.Exit(status)
