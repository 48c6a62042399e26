"""restore-export: write a verified ONNX file with custom Converse2D/TransposedAttention nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cli.common import fail, out, run, write_json
from restormer.checkpoints import WeightsError
from restormer.presets import PRESETS

EPILOG = f"""
[bold]Examples[/]

  restore-export converse-dncnn --precision fp32 --out converse_dncnn.onnx

  restore-export default --precision fp16 --out default_fp16.onnx --json export.json

  restore-export converse-usrnet --precision fp16 --converse-lowering matmul --out usrnet.onnx

  restore-export restormer-derain --weights deraining.pth --precision fp16 --out derain.onnx

[bold]What you get[/]: dynamic batch, height and width; every MDTA attention core is one
[italic]restormer::TransposedAttention[/] node and every Converse2D solve one [italic]restormer::Converse2D[/]
node (with plugin_namespace/plugin_version for the TensorRT plugin); each carries a model-local
ONNX function, so ONNX Runtime runs the file as is. --inline expands the functions for runtimes
without local-function support. --converse-lowering matmul writes Converse2D as MatMuls with DFT
matrices (no custom node, no DFT): any runtime, TensorRT included, runs it without plugins.
FP16 is a strongly typed FP16 graph with FP32 islands (LayerNorm statistics, the attention's
normalisation and softmax, the Converse2D solve); inputs and outputs stay FP32 unless --io fp16.

The file is written only after it passed onnx.checker, an ONNX Runtime session and a parity run
against PyTorch on a sample image (PSNR >= 60 dB for fp32, >= 45 dB for fp16).

[bold]Presets[/]: {", ".join(PRESETS)}

Exit status: 0 written; 1 the self-check failed (nothing written); 2 bad usage or input.
"""

app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


@app.command(help=__doc__, epilog=EPILOG)
def main(
    model: str = typer.Argument(..., help="Preset name or one of our .safetensors checkpoints."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Output .onnx file."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights (.pth with weights_only=True, or .safetensors)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or fp16 (int8: calibration issue)."),
    fmt: str = typer.Option("onnx", "--format", help="onnx (trt and triton-repo come with the engine issues)."),
    converse_lowering: str = typer.Option("function", "--converse-lowering", help="function | matmul | auto (auto = the faster one for ONNX Runtime)."),
    io: str = typer.Option("fp32", "--io", help="Input/output dtype: fp32 or fp16."),
    inline: bool = typer.Option(False, "--inline", help="Expand the custom nodes' functions into plain ONNX ops."),
    opset: int = typer.Option(20, "--opset", help="Default-domain opset (>= 20: Converse2D's function uses DFT)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here."),
) -> None:
    from export.onnx_export import ExportError, export

    try:
        if fmt != "onnx":
            raise ValueError(f"--format {fmt!r} is not available yet (only onnx)")
        if io not in ("fp32", "fp16"):
            raise ValueError(f"--io must be fp32 or fp16, got {io!r}")
        if out_path.suffix != ".onnx":
            raise ValueError(f"--out must end in .onnx, got {out_path}")
        if json_out and not json_out.parent.is_dir():
            raise ValueError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        out.print(f"exporting [bold]{model}[/] ({precision}, Converse2D lowering {converse_lowering}) ...")
        result = export(model, out_path, weights, precision, converse_lowering, io_fp16=(io == "fp16"), inline=inline, opset=opset)
    except ExportError as exc:
        raise fail(str(exc), 1)
    except (ValueError, FileNotFoundError, WeightsError) as exc:
        raise fail(str(exc))

    table = Table("", "", title=f"{result.path}")
    table.add_row("precision", result.precision)
    table.add_row("Converse2D lowering", result.converse_lowering)
    table.add_row("max abs error vs PyTorch", f"{result.max_abs_err:.2e}")
    table.add_row("PSNR vs PyTorch", f"{result.psnr_vs_torch:.1f} dB")
    custom = {k: v for k, v in result.nodes.items() if k.startswith("restormer::")}
    table.add_row("custom nodes", ", ".join(f"{k} x{v}" for k, v in custom.items()) or "none")
    table.add_row("time", f"{result.seconds:.0f} s")
    out.print(table)
    if json_out:
        write_json(json_out, result.to_json())


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
