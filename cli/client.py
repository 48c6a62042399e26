"""restore-client: restore image files on a Triton Inference Server (HTTP or gRPC)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.table import Table

from restormer_deploy.cli.common import EXIT_BAD_INPUT, USER_ERRORS, console, fail_from, out, run, shown, write_json
from restormer_deploy.restormer.errors import one_line
from restormer_deploy.restormer.fileio import check_output_folder

EPILOG = """
[bold]Examples[/]

  restore-client photos/ -o restored/ --model default_image

  restore-client noisy.png -o out/ --url triton:8001 --protocol grpc --model default_image --json client.json

  restore-client scans/ -o out/ --model default   [dim](the network itself: the client pads and crops)[/]

The model repository comes from [italic]restore-export MODEL --format triton-repo --out DIR[/] (with
--with-preprocess for the NAME_image ensemble: 8-bit images in and out, padding on the server).
Given the network itself, the client pads to the model's pad_multiple and crops the result, as
restore-run does, so 16-bit images work too. Outputs keep the input's name, format and bit depth (a
grey input gives a grey output); existing outputs are skipped unless --overwrite; alpha is passed through.
-o must not be an input's folder (symlinks and '..' resolved). The server is not trusted: a response
of the wrong shape or dtype, or with NaN/Inf values, fails its image (nothing written for it).
Needs tritonclient: pip install 'restormer-deploy[triton]'.

Exit status: 0 every image restored (or skipped); 2 when any image failed (the others are still
sent), on bad usage, or when the server or model cannot be reached.
"""


app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


@app.command(help=__doc__.strip() if __doc__ else None, epilog=EPILOG)
def main(
    inputs: List[str] = typer.Argument(..., help="Image files, folders or globs."),
    outdir: Path = typer.Option(..., "-o", "--out", help="Output folder (created if missing)."),
    model: str = typer.Option(..., "--model", "-m", help="Model name on the server (NAME_image ensemble, or NAME)."),
    url: Optional[str] = typer.Option(None, "--url", help="Server address (default localhost:8000 for http, :8001 for grpc)."),
    protocol: str = typer.Option("http", "--protocol", help="http or grpc."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds for each request as a whole (connect, send, answer)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (default: skip them)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write images[{input, output, status, seconds}] here."),
) -> None:
    from restormer_deploy.engines.restorer import expand_inputs
    from restormer_deploy.engines.triton.client import (PROTOCOLS, ClientError, check_address, check_timeout, decode,
                                                        encode, grpc_infer, http_infer, http_model_config, import_client,
                                                        response_limit, served_model)
    from restormer_deploy.restormer.imageio import read_image_alpha, write_image

    try:
        module = import_client(protocol)
        check_timeout(timeout)
        address = url or PROTOCOLS[protocol]
        check_address(address)
        # the real HTTP client: our own requests, one deadline each and a bounded answer (tritonclient's
        # network_timeout applies per socket read, and it buffers any answer whole)
        bounded = getattr(module, "__name__", "") == "tritonclient.http"
        if json_out and not json_out.parent.is_dir():
            raise ClientError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        paths = expand_inputs(inputs)
        if not paths:
            raise ClientError(f"no input images matched {' '.join(inputs)}")
        if outdir.exists() and not outdir.is_dir():
            raise ClientError(f"-o {outdir}: exists and is not a folder")
        check_output_folder(paths, outdir)
        client = None
        try:
            if bounded:
                config = http_model_config(address, model, timeout=timeout)
            else:  # gRPC (client_timeout per call below), or a stand-in module
                client = (module.InferenceServerClient(url=address) if protocol == "grpc" else
                          module.InferenceServerClient(url=address, network_timeout=timeout))
                config = (client.get_model_config(model, as_json=True) if protocol == "grpc" else
                          client.get_model_config(model))
        except Exception as exc:  # connection refused, unknown model: InferenceServerException and socket errors
            raise ClientError(f"cannot get model {model!r} from {address} ({protocol}): {str(exc).strip() or type(exc).__name__}") from None
        served = served_model(model, config)
        outdir.mkdir(parents=True, exist_ok=True)
    except USER_ERRORS as exc:
        raise fail_from(exc)

    out.print(f"[bold]{shown(model)}[/] on {shown(address)} ({protocol}, {served.mode} mode): {len(paths)} image(s) -> {shown(outdir)}")
    rows, taken = [], set()
    for path in paths:
        target = outdir / path.name
        row = {"input": str(path), "output": str(target), "status": "ok", "seconds": 0.0}
        rows.append(row)
        t0 = time.perf_counter()
        try:
            check_output_folder([path], outdir)  # again: the folders may have changed meanwhile
            if target.name in taken:
                raise ClientError(f"another input already writes {target} (same file name)")
            taken.add(target.name)
            if target.exists() and not overwrite:
                row.update(status="skipped", error="output exists (use --overwrite)")
                continue
            image, alpha = read_image_alpha(path)
            request, outputs, context = encode(module, served, image)
            if bounded:
                result = http_infer(module, address, model, request, outputs, timeout=timeout,
                                    max_bytes=response_limit(served, image.shape))
            elif getattr(module, "__name__", "") == "tritonclient.grpc":  # a channel bounded for this image
                result = grpc_infer(module, address, model, request, outputs, timeout=timeout,
                                    max_bytes=response_limit(served, image.shape))
            else:  # a stand-in module (tests)
                kwargs = {"client_timeout": timeout} if protocol == "grpc" else {}
                result = client.infer(model, request, outputs=outputs, **kwargs)
            restored = decode(served, result, context)
            scale = restored.shape[0] // image.shape[0]
            if alpha is not None and scale > 1:  # nearest-upscaled for super-resolution, as restore-run does
                alpha = np.repeat(np.repeat(alpha, scale, 0), scale, 1)
            write_image(target, restored, alpha)
        except Exception as exc:  # one image failing (bad file, server error) does not stop the others
            row.update(status="error", error=one_line(exc))
            console.print(f"[red]error:[/] {shown(path)}: {shown(row['error'])}", highlight=False, soft_wrap=True)
        finally:
            row["seconds"] = round(time.perf_counter() - t0, 4)

    table = Table("input", "status", "s", "note", title=f"{shown(model)} ({shown(address)})")
    for row in rows:
        colour = {"ok": "green", "skipped": "yellow", "error": "red"}[row["status"]]
        table.add_row(shown(Path(row["input"]).name), f"[{colour}]{row['status']}[/]", f"{row['seconds']:.2f}", shown(row.get("error", "")))
    out.print(table)
    failed = sum(r["status"] == "error" for r in rows)
    if json_out:
        write_json(json_out, {"model": model, "url": address, "protocol": protocol, "mode": served.mode,
                              "failed": failed, "images": rows})
    if failed:
        raise typer.Exit(EXIT_BAD_INPUT)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
