"""restore-run's fast path: the FP32 ONNX export of a PyTorch model, made once, verified, and cached.

``fast_runner(model)`` is ``--backend auto`` for a preset or a ``.safetensors`` checkpoint: ONNX
Runtime (CUDA EP when installed, else the CPU EP) on an export that was checked against PyTorch FP32
on this machine, with the session restore-run will use; PyTorch when no such file can be had.

The export lives in the user cache folder (``cache_root``): ``$RESTORE_CACHE_DIR``, else
``$XDG_CACHE_HOME/restormer-deploy``, else ``~/.cache/restormer-deploy``. Its name carries a digest
of the key (``cache_key``: the weights' sha256, the tool version and source, precision, lowering,
opset, the onnxruntime and torch versions, the execution provider), so any change makes a new
export. A JSON record beside the file is written last (the file's sha256, the verification PSNR, the
export seconds): a file without a valid record, or whose bytes no longer match it, is exported
again. Both are written atomically (``restormer_deploy.restormer.fileio``). Clearing the folder is
always safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import logging
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from restormer_deploy.engines.backends import (OnnxRuntimeRunner, PyTorchRunner, Runner, load_runner, ort_providers,
                                               torch_cuda_available)
from restormer_deploy.export.contract import PARITY_FLOORS
from restormer_deploy.export.functions import ONNX_OPSET
from restormer_deploy.restormer import __version__ as tool_version
from restormer_deploy.restormer.errors import RunFailed, one_line
from restormer_deploy.restormer.fileio import atomic_write_text, sha256_file
from restormer_deploy.restormer.metrics import psnr_peak1
from restormer_deploy.restormer.presets import ModelSpec, official_weights

CACHE_ENV = "RESTORE_CACHE_DIR"
PRECISION = "fp32"
VERIFY_SIZE = 64
# What the graph is made from besides the weights: an editable install keeps its version number
# when these change.
_GRAPH_SOURCES = ("restormer_deploy.export", "restormer_deploy.restormer.restormer_arch",
                  "restormer_deploy.restormer.converse_arch", "restormer_deploy.restormer.ops",
                  "restormer_deploy.restormer.zoo")


class CacheError(RunFailed):
    """No verified ONNX file could be made or kept (unwritable folder, failed export or check)."""


def cache_root() -> Path:
    """``$RESTORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/restormer-deploy``, else ``~/.cache/restormer-deploy``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "restormer-deploy"


def weights_file(spec: ModelSpec, weights: str | os.PathLike | None = None) -> Path | None:
    """The file the model's weights come from (as ``load_model`` picks it)."""
    return Path(weights) if weights else official_weights(spec)


def _source_sha256() -> str:
    """Digest of the exporter's and the architectures' source files."""
    digest = hashlib.sha256()
    for name in _GRAPH_SOURCES:
        module = Path(importlib.import_module(name).__file__)
        for path in sorted(module.parent.glob("*.py")) if module.name == "__init__.py" else [module]:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fast_provider() -> str | None:
    """The ONNX Runtime backend of the fast path here: ``ort-cuda`` when installed; none when only
    PyTorch sees a GPU (PyTorch on CUDA beats ONNX Runtime on the CPU); else ``ort-cpu``; none
    without onnxruntime."""
    providers = ort_providers()
    if "CUDAExecutionProvider" in providers:
        return "ort-cuda"
    if torch_cuda_available() or "CPUExecutionProvider" not in providers:
        return None
    return "ort-cpu"


def cache_key(spec: ModelSpec, weights: str | os.PathLike | None = None, *, provider: str = "ort-cpu") -> dict:
    """What the cached file depends on; FileNotFoundError when the weights file is missing."""
    import onnxruntime
    import torch

    from restormer_deploy.export.onnx_export import resolve_lowering

    source = weights_file(spec, weights)
    if source is None or not source.is_file():
        raise FileNotFoundError(f"weights for {spec.name} not found: {source}")
    architecture = {k: v for k, v in spec.to_json().items() if k not in ("weights", "description")}
    return {
        "model": spec.name,
        "spec_sha256": hashlib.sha256(json.dumps(architecture, sort_keys=True).encode()).hexdigest(),
        "weights_sha256": sha256_file(source),
        "tool_version": tool_version,
        "source_sha256": _source_sha256(),
        "precision": PRECISION,
        "converse_lowering": resolve_lowering("auto", spec, target="ort"),
        "opset": ONNX_OPSET,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__.split("+")[0],
        "provider": provider,
    }


def cache_paths(key: dict, root: Path | None = None) -> tuple[Path, Path]:
    """(ONNX file, JSON record) of ``key`` in ``root`` (default ``cache_root()``)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", key["model"])[:64] + f"-{PRECISION}-{digest}"
    root = Path(root) if root is not None else cache_root()
    return root / f"{name}.onnx", root / f"{name}.json"


@contextlib.contextmanager
def _quiet():
    """The exporter's warnings, log lines and prints are not the user's business here."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@dataclass
class Cached:
    """A verified export, activated on its runner; ``status``: exported | reused | remade."""

    runner: Runner
    path: Path
    record: dict
    status: str
    reason: str = ""  # why a cached file was not reused (remade)


def _read_record(record_path: Path, key: dict) -> tuple[dict | None, str]:
    """The record when it is valid for ``key``, else (None, why)."""
    if not record_path.exists():
        return None, ""
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"unreadable record ({one_line(exc)})"
    if not isinstance(record, dict) or record.get("key") != key or not isinstance(record.get("onnx_sha256"), str):
        return None, "record does not match"
    return record, ""


def _reuse(path: Path, record_path: Path, key: dict, provider: str, threads: int | None):
    """(runner, record) of a valid cached file, else (None, why it is not reusable)."""
    record, why = _read_record(record_path, key)
    if record is None:
        return None, why
    try:
        if sha256_file(path) != record["onnx_sha256"]:
            return None, "file changed since it was verified"
        runner = OnnxRuntimeRunner(path, provider=provider, threads=threads)
        runner.activate()
    except Exception as exc:  # a missing, truncated or unloadable file: export it again
        return None, f"unreadable file ({one_line(exc)})"
    return (runner, record), ""


def _verify(runner: Runner, reference: Runner, spec: ModelSpec) -> tuple[float, float]:
    """(PSNR, max abs error) of ``runner`` (activated) against ``reference`` on the exporter's sample image."""
    from restormer_deploy.export.onnx_export import sample_inputs
    from restormer_deploy.export.stages import check_sizes
    from restormer_deploy.restormer.zoo import is_zoo_architecture

    inputs = sample_inputs(spec, check_sizes(spec)[0] if is_zoo_architecture(spec.architecture) else VERIFY_SIZE)
    with reference:
        want = reference.run(*inputs)
    got = runner.run(*inputs)
    if got.shape != want.shape or not np.isfinite(got).all():
        return float("-inf"), float("inf")
    return psnr_peak1(got, want), float(np.abs(got - want).max())


def _writable(folder: Path) -> None:
    """Create ``folder`` and prove it takes files before minutes of export (CacheError otherwise)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CacheError(f"cannot write to the cache folder {folder}: {exc.strerror or exc}") from None


def ensure_export(model: str, *, weights: str | os.PathLike | None = None, provider: str = "ort-cpu",
                  threads: int | None = None, root: Path | None = None) -> Cached:
    """The cached FP32 export of MODEL, verified on ``provider`` against PyTorch FP32 on the CPU and
    activated; exported now when there is none (or it is not reusable). CacheError when the folder
    cannot be written or the file fails a check."""
    from restormer_deploy.export.onnx_export import export
    from restormer_deploy.export.stages import ExportOptions

    reference = PyTorchRunner(model, weights=weights, device="cpu")
    spec = reference.spec
    key = cache_key(spec, weights, provider=provider)
    path, record_path = cache_paths(key, root)
    reused, why = _reuse(path, record_path, key, provider, threads)
    if reused:
        # the file's metadata knows less of the model than its own spec, but the batch the export fixed
        reused[0].spec = dataclasses.replace(spec, max_batch=reused[0].spec.max_batch)
        return Cached(reused[0], path, reused[1], "reused")
    _writable(path.parent)
    options = ExportOptions(precision=PRECISION, converse_lowering="auto", target="ort", verify_size=VERIFY_SIZE)
    t0 = time.perf_counter()
    try:
        with _quiet():
            result = export(model, path, weights=weights, options=options)
        runner = OnnxRuntimeRunner(path, provider=provider, threads=threads)
        runner.activate()
        psnr, max_abs = _verify(runner, reference, spec)
        if psnr < PARITY_FLOORS[PRECISION]:
            runner.deactivate()
            raise CacheError(f"the ONNX file on {provider} reaches {psnr:.1f} dB against PyTorch, under the "
                             f"{PARITY_FLOORS[PRECISION]:.0f} dB floor")
        seconds = time.perf_counter() - t0
        record = {
            "key": key, "onnx": path.name, "onnx_sha256": sha256_file(path),
            "psnr_vs_torch": round(min(psnr, result.psnr_vs_torch), 2), "max_abs_err": max(max_abs, result.max_abs_err),
            "verified_on": provider, "export_seconds": round(seconds, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_text(record_path, json.dumps(record, indent=2) + "\n")  # last: it makes the file reusable
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CacheError(f"cannot write to the cache folder {path.parent}: {exc.strerror or exc}") from None
        raise
    runner.spec = dataclasses.replace(spec, max_batch=runner.spec.max_batch)
    return Cached(runner, path, record, "remade" if why else "exported", why)


def fast_runner(model: str, *, weights: str | os.PathLike | None = None, threads: int | None = None,
                root: Path | None = None) -> tuple[Runner, str | None]:
    """``--backend auto`` of restore-run for a preset or checkpoint: (runner, notice line or None).

    The runner is the verified cached export on ONNX Runtime (activated), or PyTorch (not activated)
    for models the fast path does not cover (a blur-kernel input, whose size the export fixes; not 1
    or 3 channels), without onnxruntime, when only PyTorch sees a GPU, and, with a notice, when the
    export cannot be made or kept. A model that cannot be loaded fails as it does on PyTorch."""
    torch_runner = load_runner(model, "torch", weights=weights, threads=threads)  # bad usage raises here
    spec = torch_runner.spec
    provider = fast_provider()
    source = weights_file(spec, weights)
    if (provider is None or spec.needs_kernel or spec.in_channels not in (1, 3)
            or source is None or not source.is_file()):  # a missing file fails in activate(), as before
        return torch_runner, None
    try:
        cached = ensure_export(model, weights=weights, provider=provider, threads=threads, root=root)
    except Exception as exc:  # never worse than PyTorch
        return torch_runner, f"using PyTorch: no verified ONNX file for {spec.name} ({one_line(exc)})"
    if cached.status == "reused":
        return cached.runner, f"using the verified ONNX export cached at {cached.path}"
    redo = f" (the cached one was not reusable: {cached.reason})" if cached.status == "remade" else ""
    return cached.runner, (f"exported {spec.name} to ONNX and verified it against PyTorch "
                           f"({cached.record['psnr_vs_torch']:.0f} dB) in {cached.record['export_seconds']:.1f} s{redo}, "
                           f"cached at {cached.path}; later runs reuse it (--backend torch: PyTorch)")


__all__ = ["CACHE_ENV", "CacheError", "Cached", "cache_key", "cache_paths", "cache_root", "ensure_export",
           "fast_provider", "fast_runner", "weights_file"]
