"""restore-export: write a verified ONNX file with custom Converse2D/TransposedAttention nodes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from restormer_deploy.cli.common import USER_ERRORS, console, fail, fail_from, out, run, write_json
from restormer_deploy.restormer.presets import PRESETS

if TYPE_CHECKING:
    from restormer_deploy.export.onnx_export import ExportOptions, ExportResult, Quantizer

EPILOG = f"""
[bold]Examples[/]

  restore-export converse-dncnn --precision fp32 --out converse_dncnn.onnx

  restore-export default --precision fp16 --out default_fp16.onnx --json export.json

  restore-export converse-usrnet --precision fp16 --converse-lowering matmul --out usrnet.onnx

  restore-export restormer-derain --weights deraining.pth --precision fp16 --out derain.onnx

  restore-export default --precision int8 --calib-dir images/ --calib-cache ranges.json --out default_int8.onnx

  restore-export default --format triton-repo --backend onnxruntime --with-preprocess --out models/

  restore-export model.engine --format triton-repo --triton-release 25.01 --out models/   [dim](engine + sidecar + model.onnx beside it)[/]

[bold]What you get[/]: dynamic batch, height and width; every MDTA attention core is one
[italic]restormer::TransposedAttention[/] node with a model-local ONNX function, so ONNX Runtime runs the
file as is (--inline expands the functions for runtimes without local-function support).
Converse2D solves: --converse-lowering auto (the default) writes them as MatMuls with DFT matrices
(matmul: no custom node, no DFT; the fastest on ONNX Runtime, plugin-free on TensorRT), or as ONNX
DFT for TensorRT 11.2+; function keeps one [italic]restormer::Converse2D[/] node per solve (with
plugin_namespace/plugin_version for the TensorRT plugin). INT8: --fallback follows the target
(fp32 for ONNX Runtime CPU, fp16 for TensorRT).
FP16 is a strongly typed FP16 graph with FP32 islands (LayerNorm statistics, the attention's
normalisation and softmax, the Converse2D solve); inputs and outputs stay FP32 unless --io fp16.

The file is written only after it passed onnx.checker, an ONNX Runtime session and a parity run
against PyTorch on a sample image (PSNR >= 60 dB for fp32, >= 45 dB for fp16, >= 35 dB for int8).

[bold]Presets[/]: {", ".join(PRESETS)}

Exit status: 0 written; 1 the self-check failed (nothing written); 2 bad usage or input.
"""

TARGET_NAMES = {"ort": "ONNX Runtime", "trt": "TensorRT"}
FORMATS = ("onnx", "trt", "triton-repo")
_OUT_EXAMPLE = {"onnx": "--out model.onnx", "trt": "--out model.engine", "triton-repo": "--out models/"}


def notice(line: str | None) -> None:
    """One line saying which default was picked and why (nothing when ``line`` is None)."""
    if line:
        out.print(line, highlight=False, markup=False, soft_wrap=True)


def check_out(model: str, fmt: str, out_path: Path | None, check_trt: str | None) -> None:
    """--format and --out, before any work (ValueError): --out may be left out only to lint an
    existing .onnx file (--check-trt), which writes nothing."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be onnx, trt or triton-repo, got {fmt!r}")
    if out_path is None:
        if fmt == "onnx" and check_trt and model.endswith(".onnx"):
            return
        raise ValueError(f"--out is required: where to write the {'folder' if fmt == 'triton-repo' else 'file'} "
                         f"(e.g. {_OUT_EXAMPLE[fmt]})")
    if fmt == "onnx" and out_path.suffix != ".onnx" and not (check_trt and model.endswith(".onnx")):
        raise ValueError(f"--out must end in .onnx, got {out_path}")


def resolve_target(target: str, fmt: str, check_trt: str | None, triton_backend: str) -> str:
    """``auto`` -> ``trt`` when the file feeds the TensorRT parser, else ``ort``; a contradiction is an error:
    the file ``--check-trt`` lints and ``--format trt`` builds from is the file written."""
    if target not in ("auto", "ort", "trt"):
        raise ValueError(f"--target must be auto, ort or trt, got {target!r}")
    for_trt = fmt == "trt" or bool(check_trt) or (fmt == "triton-repo" and triton_backend == "tensorrt")
    if target == "ort" and for_trt:
        why = "--format trt" if fmt == "trt" else "--check-trt" if check_trt else "a TensorRT Triton repository"
        raise ValueError(f"--target ort writes an ONNX Runtime file, but {why} needs the TensorRT form: "
                         f"drop --target ort (or use --target trt)")
    if target == "auto":
        return "trt" if for_trt else "ort"
    return target


def _trt_version(text: str | None) -> tuple[int, ...] | None:
    """The TensorRT version a trt file is for: --trt-version, else the installed TensorRT, else None."""
    from restormer_deploy.export.contract import parse_version

    if text:
        return parse_version(text)
    try:
        import tensorrt  # noqa: F401  (only its version)

        return parse_version(tensorrt.__version__)
    except Exception:
        return None


def _print_result(result: ExportResult, target: str, title: str | None = None) -> None:
    table = Table("", "", title=title or f"{result.path}")
    table.add_row("precision", result.precision)
    table.add_row("for", TARGET_NAMES[target])
    if result.converse2d:  # the lowering means nothing for a model without Converse2D
        table.add_row("Converse2D lowering", f"{result.converse_lowering} ({result.converse2d} layers)")
    table.add_row("max abs error vs PyTorch", f"{result.max_abs_err:.2e}")
    table.add_row("PSNR vs PyTorch", f"{result.psnr_vs_torch:.1f} dB")
    custom = {k: v for k, v in result.nodes.items() if k.startswith("restormer::")}
    table.add_row("custom nodes", ", ".join(f"{k} x{v}" for k, v in custom.items()) or "none")
    table.add_row("time", f"{result.seconds:.0f} s")
    out.print(table)
    if result.int8:
        from restormer_deploy.cli.int8_report import print_int8_report

        print_int8_report(out, result.int8)


def export_onnx(model: str, out_path: Path, *, weights: Path | None, options: ExportOptions,
                quantizer: Quantizer | None, json_out: Path | None = None, title: str | None = None) -> ExportResult:
    """The ONNX export of restore-export (``--format onnx``, and the ONNX file of ``trt`` and
    ``triton-repo``): export, print the result (and the INT8 report; ``title``: the table's, default the
    file written), write ``json_out``. Raises typer.Exit: 1 when the self-check failed, 2 on bad input;
    nothing is written then."""
    from restormer_deploy.export.onnx_export import export

    try:
        if json_out and not json_out.parent.is_dir():
            raise ValueError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        version = f" {'.'.join(map(str, options.tensorrt))}" if options.tensorrt else ""
        out.print(f"exporting [bold]{model}[/] ({options.precision}, for {TARGET_NAMES[options.target]}{version}) ...")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = export(model, out_path, weights=weights, options=options, quantizer=quantizer)
            finally:
                for w in caught:
                    console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)
    except FileNotFoundError as exc:  # a missing weights or image file
        raise fail_from(exc)
    except OSError as exc:  # disk full, unwritable folder: nothing was written (atomic)
        raise fail(f"cannot write {out_path}: {exc.strerror or exc}")
    except USER_ERRORS as exc:  # a failed self-check exits 1, bad input 2
        raise fail_from(exc)
    _print_result(result, options.target, title)
    if json_out:
        write_json(json_out, result.to_json())
    return result


def _quantizer(precision: str, **int8) -> Quantizer | None:
    """``restormer_deploy.calibration.int8.Int8Quantizer`` for ``--precision int8`` (its options are checked by the export)."""
    if precision != "int8":
        return None
    from restormer_deploy.calibration.int8 import Int8Options, Int8Quantizer

    return Int8Quantizer(Int8Options(**int8))


app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


@app.command(help=__doc__, epilog=EPILOG)
def main(
    model: str = typer.Argument(..., help="Preset name, one of our .safetensors checkpoints or any checkpoint spandrel recognises (.pth/.pt/.ckpt/.safetensors; with --format trt / --check-trt also an .onnx file)."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Output .onnx file (.engine or .plan with --format trt, a folder with --format triton-repo). Required, except to lint an existing .onnx MODEL with --check-trt."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights (.pth with weights_only=True, or .safetensors)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, fp16 or int8 (Q/DQ; needs --calib-dir, see docs/INT8.md)."),
    fmt: str = typer.Option("onnx", "--format", help="onnx; trt: a TensorRT engine plus its JSON sidecar (docs/TENSORRT.md); triton-repo: a Triton model repository folder (docs/SCALE_OUT.md)."),
    converse_lowering: str = typer.Option("auto", "--converse-lowering", help="auto (matmul: the fastest on ONNX Runtime and plugin-free on TensorRT; dft for TensorRT 11.2+) | function (custom node; TensorRT: the plugin) | matmul (plugin-free MatMuls, any runtime) | dft (plugin-free ONNX DFT: ONNX Runtime, TensorRT 11.2+). Only models with Converse2D."),
    target: str = typer.Option("auto", "--target", help="Runtime the file is for: ort (ONNX Runtime: fastest graph rewrites) | trt (only forms the TensorRT parser imports) | auto (trt with --format trt, --check-trt or a TensorRT Triton repository, else ort)."),
    trt_version: Optional[str] = typer.Option(None, "--trt-version", help="TensorRT version a trt file is for (picks --converse-lowering auto); default: --check-trt's, else the installed one.", rich_help_panel="TensorRT"),
    io: str = typer.Option("fp32", "--io", help="Input/output dtype: fp32 or fp16."),
    inline: bool = typer.Option(False, "--inline", help="Expand the custom nodes' functions into plain ONNX ops."),
    opset: int = typer.Option(20, "--opset", help="Default-domain opset (>= 20: Converse2D's function uses DFT)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here."),
    check_trt: Optional[str] = typer.Option(None, "--check-trt", help="Lint the ONNX for the TensorRT parser of this version (10.3 to 10.16, 11.0 to 11.5; exit 1 on a node a cited rule refuses, 4 on a form no rule was read for).", rich_help_panel="TensorRT"),
    save_prepared: Optional[Path] = typer.Option(None, "--save-prepared", help="With --check-trt or --format trt: also write the ONNX exactly as that TensorRT's parser gets it (TransposedAttention inlined; before 10.7 Converse2D's function removed): the file for trtexec.", rich_help_panel="TensorRT"),
    min_shape: Optional[str] = typer.Option(None, "--min-shape", help="trt: profile minimum NxCxHxW.", rich_help_panel="TensorRT"),
    opt_shape: Optional[str] = typer.Option(None, "--opt-shape", help="trt: profile optimum NxCxHxW.", rich_help_panel="TensorRT"),
    max_shape: Optional[str] = typer.Option(None, "--max-shape", help="trt: profile maximum NxCxHxW.", rich_help_panel="TensorRT"),
    tile: Optional[int] = typer.Option(None, "--tile", help="trt: profile for tiles of N x N (instead of the three shapes).", rich_help_panel="TensorRT"),
    plugin_lib: Optional[list[Path]] = typer.Option(None, "--plugin-lib", help="trt: plugin library (libconverse2d_plugin.so); repeatable.", rich_help_panel="TensorRT"),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="trt: timing cache file, read if present and written after the build.", rich_help_panel="TensorRT"),
    dla_core: Optional[int] = typer.Option(None, "--dla-core", help="trt: build for this DLA core (Jetson; fixed shapes; plugins fall back to the GPU).", rich_help_panel="TensorRT"),
    calib_dir: Optional[Path] = typer.Option(None, "--calib-dir", help="int8: folder of clean calibration images.", rich_help_panel="INT8"),
    calib_count: int = typer.Option(20, "--calib-count", help="int8: number of calibration images (sorted by name).", rich_help_panel="INT8"),
    calib_size: int = typer.Option(128, "--calib-size", help="int8: seeded random crop size; 0 = full images.", rich_help_panel="INT8"),
    calib_method: str = typer.Option("minmax", "--calib-method", help="int8: minmax | entropy | percentile.", rich_help_panel="INT8"),
    degrade: Optional[str] = typer.Option(None, "--degrade", help="int8: degradation SPEC of the calibration/search inputs (default: the preset's; 'none': clean).", rich_help_panel="INT8"),
    seed: int = typer.Option(0, "--seed", help="int8: seed of the crops and the degradation.", rich_help_panel="INT8"),
    psnr_budget: float = typer.Option(0.3, "--psnr-budget", help="int8: allowed task-PSNR drop (dB) on the search images.", rich_help_panel="INT8"),
    fallback: Optional[str] = typer.Option(None, "--fallback", help="int8: precision of what is not quantized: fp32 (ONNX Runtime CPU) or fp16 (TensorRT); default: the target's (fp16 with --format trt, --check-trt or --target trt, else fp32).", rich_help_panel="INT8"),
    search_dir: Optional[Path] = typer.Option(None, "--search-dir", help="int8: images of the sensitivity search (default: the calibration images).", rich_help_panel="INT8"),
    search_size: int = typer.Option(128, "--search-size", help="int8: crop size of the search images; 0 = full images.", rich_help_panel="INT8"),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="int8: layer (or node) kept out of INT8; repeat or comma-separate.", rich_help_panel="INT8"),
    quantize_ends: bool = typer.Option(False, "--quantize-ends", help="int8: also quantize the first and last conv (kept in higher precision by default).", rich_help_panel="INT8"),
    calib_cache: Optional[Path] = typer.Option(None, "--calib-cache", help="int8: JSON range cache, reused when model and settings match.", rich_help_panel="INT8"),
    no_search: bool = typer.Option(False, "--no-search", help="int8: skip the per-layer sensitivity and the greedy search.", rich_help_panel="INT8"),
    triton_backend: str = typer.Option("auto", "--backend", help="triton-repo: tensorrt (model.plan; MODEL may be a built engine), onnxruntime (model.onnx) or auto (tensorrt for an engine or where TensorRT is usable, else onnxruntime).", rich_help_panel="Triton"),
    triton_release: Optional[str] = typer.Option(None, "--triton-release", help="triton-repo: Triton container release YY.MM; a plan built with another TensorRT is refused.", rich_help_panel="Triton"),
    max_batch_size: Optional[int] = typer.Option(None, "--max-batch-size", help="triton-repo: dynamic batching up to N (0: none; default 8, or the engine profile's batch).", rich_help_panel="Triton"),
    instances: int = typer.Option(1, "--instances", help="triton-repo: model instances per device (instance_group count).", rich_help_panel="Triton"),
    instance_kind: str = typer.Option("gpu", "--instance-kind", help="triton-repo: gpu, cpu (onnxruntime only) or auto.", rich_help_panel="Triton"),
    with_preprocess: bool = typer.Option(False, "--with-preprocess", help="triton-repo: add Python pre/post models and an image-in, image-out ensemble NAME_image.", rich_help_panel="Triton"),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="triton-repo: model name (default: the preset).", rich_help_panel="Triton"),
    overwrite: bool = typer.Option(False, "--overwrite", help="triton-repo: replace a non-empty --out folder.", rich_help_panel="Triton"),
) -> None:
    from restormer_deploy.export.onnx_export import ExportOptions

    try:
        check_out(model, fmt, out_path, check_trt)
        if precision == "int8" and fmt == "onnx" and not check_trt and model.lower().endswith(".onnx"):
            raise ValueError(f"{model} is an ONNX file: quantize it with restore-quantize {model} --calib-dir DIR "
                             f"--out OUT.onnx (restore-export quantizes a preset or checkpoint)")
        if fmt == "triton-repo":
            from restormer_deploy.engines.triton.repository import resolve_backend

            triton_backend, note = resolve_backend(triton_backend, model, instance_kind=instance_kind,
                                                   triton_release=triton_release)
            notice(note)
        target = resolve_target(target, fmt, check_trt, triton_backend)
        if save_prepared is not None and not (fmt == "trt" or check_trt):
            raise ValueError("--save-prepared needs --check-trt VERSION or --format trt (the parser it prepares for)")
        if io not in ("fp32", "fp16"):
            raise ValueError(f"--io must be fp32 or fp16, got {io!r}")
        options = ExportOptions(precision=precision, converse_lowering=converse_lowering, io_fp16=(io == "fp16"),
                                inline=inline, opset=opset, target=target,
                                tensorrt=_trt_version(trt_version) if target == "trt" else None)
        if precision == "int8" and fallback is None and not model.lower().endswith((".onnx", ".engine", ".plan")):
            from restormer_deploy.calibration.options import default_fallback

            fallback, note = default_fallback(target)
            notice(note)
    except USER_ERRORS as exc:
        raise fail_from(exc)
    quantizer = _quantizer(
        precision, calib_dir=calib_dir, calib_count=calib_count, calib_size=calib_size or None,
        calib_method=calib_method, degrade=degrade, seed=seed, psnr_budget=psnr_budget, fallback=fallback,
        search_dir=search_dir, search_size=search_size or None,
        exclude=[e for x in exclude or [] for e in x.split(",") if e], quantize_ends=quantize_ends,
        calib_cache=calib_cache, sensitivity=not no_search)
    if fmt in ("triton-repo", "trt") or check_trt:  # cli/export_triton.py, cli/export_trt.py: they exit
        from functools import partial

        from restormer_deploy.cli.export_triton import export_triton
        from restormer_deploy.cli.export_trt import export_trt
        from restormer_deploy.engines.tensorrt.builder import BuildOptions

        build = BuildOptions(min_shape=min_shape, opt_shape=opt_shape, max_shape=max_shape, tile=tile,
                             plugin_libs=tuple(plugin_lib or ()), timing_cache=timing_cache, dla_core=dla_core)
        onnx_step = partial(export_onnx, model, weights=weights, quantizer=quantizer)  # (path, options=...)
        if fmt == "triton-repo":
            export_triton(model, out_path, json_out=json_out, check_trt=check_trt, backend=triton_backend,
                          instance_kind=instance_kind, instances=instances, max_batch_size=max_batch_size,
                          model_name=model_name, triton_release=triton_release, with_preprocess=with_preprocess,
                          overwrite=overwrite, build=build,
                          export_onnx=partial(onnx_step, options=options, title=f"ONNX for the Triton repository {out_path}"))
        export_trt(model, fmt=fmt, out_path=out_path, check_trt=check_trt, trt_version=trt_version,
                   save_prepared=save_prepared, json_out=json_out, build=build, options=options, export_onnx=onnx_step)
    export_onnx(model, out_path, weights=weights, options=options, quantizer=quantizer, json_out=json_out)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
