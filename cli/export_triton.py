"""``restore-export --format triton-repo``: a Triton model repository (``restormer_deploy.engines.triton.repository``).

``export_triton`` is called by ``restormer_deploy.cli.export.main``. MODEL is a preset or checkpoint (exported first
with ``export_onnx``), an ``.onnx`` file, or, for the TensorRT backend, an already built
``.engine``/``.plan`` with its JSON sidecar and the ONNX it was built from beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn

import typer

from restormer_deploy.cli.common import EXIT_BAD_INPUT, exit_code, fail, out, write_json
from restormer_deploy.cli.export_trt import log_line
from restormer_deploy.engines.tensorrt.builder import BuildOptions
from restormer_deploy.engines.triton.repository import RepositoryError, check_source, repository_options, write_repository
from restormer_deploy.restormer.errors import RestoreError

if TYPE_CHECKING:
    from restormer_deploy.export.onnx_export import ExportResult


def export_triton(model: str, out_path: Path | None, *, json_out: Path | None, check_trt: str | None,
                  backend: str, instance_kind: str, instances: int, max_batch_size: int | None,
                  model_name: str | None, triton_release: str | None, with_preprocess: bool, overwrite: bool,
                  build: BuildOptions, export_onnx: Callable[[Path], ExportResult]) -> NoReturn:
    """``export_onnx(path) -> ExportResult`` writes the ONNX of a preset or checkpoint
    (``restormer_deploy.cli.export.export_onnx`` with everything but the path bound). Raises typer.Exit with the status."""
    try:
        options = repository_options(backend=backend, instance_kind=instance_kind, instances=instances,
                                     max_batch_size=max_batch_size, model_name=model_name,
                                     triton_release=triton_release, with_preprocess=with_preprocess,
                                     overwrite=overwrite)
        if check_trt:
            raise RepositoryError("--check-trt does not combine with --format triton-repo (lint with --format onnx)")
        if out_path is None:
            raise RepositoryError("--format triton-repo needs --out DIR (the model repository folder)")
        if json_out and not Path(json_out).parent.is_dir():
            raise RepositoryError(f"cannot write {json_out}: folder {Path(json_out).parent} does not exist")
        source = check_source(model, Path(out_path), options)
    except (RestoreError, ValueError) as exc:
        raise fail(str(exc), EXIT_BAD_INPUT)

    try:
        result = write_repository(source, options=options, build=build, log=log_line,
                                  export_onnx=lambda path: export_onnx(path).to_json())  # typer.Exit on failure
    except (RestoreError, ValueError, FileNotFoundError) as exc:  # BuildFailed: exit 1; bad input: 2
        raise fail(str(exc), exit_code(exc))
    out.print(f"Triton model repository [bold]{result.path}[/]: {', '.join(result.models)} "
              f"({result.platform}, max_batch_size {result.max_batch_size})")
    for note in result.notes:
        out.print(f"  {note}", highlight=False)
    if json_out:
        write_json(Path(json_out), result.to_json())
    raise typer.Exit(0)
