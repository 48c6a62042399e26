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

Trust (docs/BAD_INPUT.md): an entry is read only when the cache folder and each of its parents are
owned by you or root and not writable by others (a sticky parent such as /tmp is fine), and the
record and the ONNX file are regular files (opened without following symlinks, never a FIFO or a
device) of bounded size, owned by you or root and not writable by others. A reused file is then run
again against PyTorch on an input drawn at random for this run (a planted file cannot be tuned to
it) and must reach the export's parity floor. One process exports a key at a time (``.NAME.lock``,
flock); the others wait up to ``$RESTORE_CACHE_LOCK_TIMEOUT`` seconds (default 1800), then reuse
the result. An interrupted export removes only the file it wrote itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import importlib
import io
import json
import logging
import os
import re
import stat
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
LOCK_TIMEOUT_ENV = "RESTORE_CACHE_LOCK_TIMEOUT"
LOCK_TIMEOUT_S = 1800.0
MAX_RECORD_BYTES = 1 << 20  # a record is about 1 KB
MAX_ONNX_BYTES = 2 << 30  # protobuf's limit for one ONNX file
PRECISION = "fp32"
VERIFY_SIZE = 64
# What the graph is made from besides the weights: an editable install keeps its version number
# when these change.
_GRAPH_SOURCES = ("restormer_deploy.export", "restormer_deploy.restormer.restormer_arch",
                  "restormer_deploy.restormer.converse_arch", "restormer_deploy.restormer.ops",
                  "restormer_deploy.restormer.zoo")


class CacheError(RunFailed):
    """No verified ONNX file could be made or kept (unwritable folder, failed export or check)."""


def _home() -> Path:
    """``$HOME`` when it is an absolute path, else the home folder of the password database
    (CacheError when there is none: never ``/.cache`` or a folder under the current one)."""
    home = os.environ.get("HOME", "")
    if not os.path.isabs(home):
        try:
            import pwd

            home = pwd.getpwuid(os.getuid()).pw_dir
        except (ImportError, KeyError):
            home = ""
    if not os.path.isabs(home) or Path(home) == Path("/"):
        raise CacheError(f"no cache folder: $HOME is {os.environ.get('HOME', '')!r} and the account has no home "
                         f"folder; set ${CACHE_ENV}")
    return Path(home)


def cache_root() -> Path:
    """``$RESTORE_CACHE_DIR`` (made absolute), else ``$XDG_CACHE_HOME/restormer-deploy`` when
    ``$XDG_CACHE_HOME`` is absolute (the XDG spec ignores relative values), else
    ``~/.cache/restormer-deploy`` (``$HOME`` when absolute, else the account's home folder)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.path.abspath(Path(os.environ[CACHE_ENV]).expanduser()))
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base) if os.path.isabs(base) else _home() / ".cache") / "restormer-deploy"


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


def _owner_problem(st: os.stat_result, what: str) -> str:
    """Why a file or folder of the cache cannot be trusted ('' when it can): owned by someone other
    than you or root, or writable by others (a folder with the sticky bit, like /tmp, is fine)."""
    if st.st_uid not in (os.getuid(), 0):
        return f"{what} is owned by uid {st.st_uid}, not by you or root"
    if st.st_mode & 0o022 and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
        return f"{what} is writable by other users"
    return ""


def _folder_problem(folder: Path) -> str:
    """Why entries in ``folder`` cannot be trusted: the folder or a parent (resolved) fails ``_owner_problem``."""
    real = Path(os.path.realpath(folder))
    for part in [real, *real.parents]:
        try:
            st = os.stat(part)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"cannot inspect {part} ({exc.strerror or exc})"
        problem = _owner_problem(st, f"the cache folder {part}" if part == real else f"its parent {part}")
        if problem:
            return problem
    return ""


class _Untrusted(Exception):
    pass


@contextlib.contextmanager
def _open_entry(path: Path, limit: int):
    """A binary file object on ``path`` if it is a regular file (symlinks not followed, a FIFO or a
    device never read or waited on) of at most ``limit`` bytes, owned by you or root and not
    writable by others; _Untrusted (why) otherwise; FileNotFoundError when missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Untrusted(f"{path.name} is a symlink") from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Untrusted(f"{path.name} is not a regular file")
        if st.st_size > limit:
            raise _Untrusted(f"{path.name} is larger than {limit} bytes")
        problem = _owner_problem(st, path.name)
        if problem:
            raise _Untrusted(problem)
        yield f


def _read_record(record_path: Path, key: dict) -> tuple[dict | None, str]:
    """The record when it is valid for ``key``, else (None, why)."""
    try:
        with _open_entry(record_path, MAX_RECORD_BYTES) as f:
            text = f.read(MAX_RECORD_BYTES + 1)
        record = json.loads(text)
    except FileNotFoundError:
        return None, ""
    except _Untrusted as exc:
        return None, f"untrusted record ({exc})"
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"unreadable record ({one_line(exc)})"
    if not isinstance(record, dict) or record.get("key") != key or not isinstance(record.get("onnx_sha256"), str):
        return None, "record does not match"
    return record, ""


def _sha256_entry(path: Path) -> str:
    digest = hashlib.sha256()
    with _open_entry(path, MAX_ONNX_BYTES) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _recheck(runner: Runner, reference: Runner, spec: ModelSpec) -> str:
    """Why a reused file is not the model ('' when it is): run on the sample image with noise drawn at
    random for this run (no one can tune a planted file to it), against PyTorch FP32, at the export's floor."""
    from restormer_deploy.export.onnx_export import sample_inputs
    from restormer_deploy.export.stages import self_check_size

    inputs = list(sample_inputs(spec, self_check_size(spec, VERIFY_SIZE)))
    rng = np.random.default_rng()
    inputs[0] = np.clip(inputs[0] + rng.normal(0, 0.05, inputs[0].shape), 0, 1).astype(np.float32)
    with reference:
        want = reference.run(*inputs)
    got = runner.run(*inputs)
    if got.shape != want.shape or not np.isfinite(got).all():
        return "its output does not match PyTorch (shape or non-finite values)"
    psnr = psnr_peak1(got, want)
    if psnr < PARITY_FLOORS[PRECISION]:
        return f"it reaches {psnr:.1f} dB against PyTorch on a fresh input, under the {PARITY_FLOORS[PRECISION]:.0f} dB floor"
    return ""


def _reuse(path: Path, record_path: Path, key: dict, provider: str, threads: int | None,
           reference: Runner | None = None):
    """(runner, record) of a valid, trusted cached file that matches ``reference`` again (when given),
    else (None, why it is not reusable)."""
    problem = _folder_problem(path.parent)
    if problem:
        return None, f"untrusted cache folder ({problem})"
    record, why = _read_record(record_path, key)
    if record is None:
        return None, why
    try:
        if _sha256_entry(path) != record["onnx_sha256"]:
            return None, "file changed since it was verified"
        runner = OnnxRuntimeRunner(path, provider=provider, threads=threads)
        runner.activate()
    except _Untrusted as exc:
        return None, f"untrusted file ({exc})"
    except Exception as exc:  # a missing, truncated or unloadable file: export it again
        return None, f"unreadable file ({one_line(exc)})"
    if reference is not None:
        try:
            why = _recheck(runner, reference, reference.spec)
        except Exception as exc:
            why = f"it does not run ({one_line(exc)})"
        if why:
            runner.deactivate()
            return None, f"not the model: {why}"
    return (runner, record), ""


def _verify(runner: Runner, reference: Runner, spec: ModelSpec) -> tuple[float, float]:
    """(PSNR, max abs error) of ``runner`` (activated) against ``reference`` on the exporter's sample image."""
    from restormer_deploy.export.onnx_export import sample_inputs
    from restormer_deploy.export.stages import self_check_size

    inputs = sample_inputs(spec, self_check_size(spec, VERIFY_SIZE))
    with reference:
        want = reference.run(*inputs)
    got = runner.run(*inputs)
    if got.shape != want.shape or not np.isfinite(got).all():
        return float("-inf"), float("inf")
    return psnr_peak1(got, want), float(np.abs(got - want).max())


def _writable(folder: Path) -> None:
    """Create ``folder`` (not writable by others) and prove it takes files before minutes of export, and
    that it can be trusted (``_folder_problem``); CacheError otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o755)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CacheError(f"cannot write to the cache folder {folder}: {exc.strerror or exc}") from None
    problem = _folder_problem(folder)
    if problem:
        raise CacheError(f"not using the cache: {problem} (another user could plant a model there)")


def _lock_timeout() -> float:
    try:
        value = float(os.environ.get(LOCK_TIMEOUT_ENV, LOCK_TIMEOUT_S))
    except ValueError:
        raise CacheError(f"${LOCK_TIMEOUT_ENV} must be a number of seconds, got "
                         f"{os.environ.get(LOCK_TIMEOUT_ENV)!r}") from None
    if not (value >= 0 and np.isfinite(value)):
        raise CacheError(f"${LOCK_TIMEOUT_ENV} must be a number of seconds >= 0, got {value}")
    return value


@contextlib.contextmanager
def _export_lock(path: Path):
    """Hold ``.NAME.lock`` beside ``path`` (flock): one process exports a key, the others wait (CacheError
    after ``_lock_timeout()`` seconds). The holder removes the file before releasing it; a waiter that
    then gets the lock of a removed file opens the new one (so two holders are impossible)."""
    lock = path.with_name(f".{path.stem}.lock")
    deadline = time.monotonic() + _lock_timeout()
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0),
                         0o644)
        except OSError as exc:
            raise CacheError(f"cannot open the export lock {lock}: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CacheError(f"the export lock {lock} is not a regular file")
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise CacheError(f"another process has been exporting {path.name} for over "
                                         f"{_lock_timeout():.0f} s (lock {lock}; ${LOCK_TIMEOUT_ENV})") from None
                    time.sleep(0.2)
            try:
                now = os.lstat(lock)
            except FileNotFoundError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                os.close(fd)  # the holder removed this one: lock the current file
                continue
        except BaseException:
            os.close(fd)
            raise
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            os.close(fd)  # releases the lock
        return


def ensure_export(model: str, *, weights: str | os.PathLike | None = None, provider: str = "ort-cpu",
                  threads: int | None = None, root: Path | None = None) -> Cached:
    """The cached FP32 export of MODEL, verified on ``provider`` against PyTorch FP32 on the CPU and
    activated; exported now when there is none (or it is not reusable). CacheError when the folder
    cannot be written or trusted, or the file fails a check."""
    reference = PyTorchRunner(model, weights=weights, device="cpu")
    spec = reference.spec
    key = cache_key(spec, weights, provider=provider)
    path, record_path = cache_paths(key, root)
    reused, why = _reuse(path, record_path, key, provider, threads, reference)
    if not reused:
        _writable(path.parent)
        with _export_lock(path):  # one process exports; the others wait here, then reuse its file
            reused, why_now = _reuse(path, record_path, key, provider, threads, reference)
            if not reused:
                return _make(model, weights, provider, threads, reference, key, path, record_path, why_now or why)
    # the file's metadata knows less of the model than its own spec, but the batch the export fixed
    reused[0].spec = dataclasses.replace(spec, max_batch=reused[0].spec.max_batch)
    return Cached(reused[0], path, reused[1], "reused")


def _make(model, weights, provider, threads, reference, key, path: Path, record_path: Path, why: str) -> Cached:
    """Export, verify and record (under the lock); an interruption removes only the file this call wrote."""
    from restormer_deploy.export.onnx_export import export
    from restormer_deploy.export.stages import ExportOptions

    spec = reference.spec
    written = None  # (st_dev, st_ino) of the file this call exported
    for old in (path, record_path):  # a symlink, FIFO or device in our own (trusted) folder: replace it
        with contextlib.suppress(OSError):
            if not stat.S_ISREG(os.lstat(old).st_mode):
                old.unlink()
    options = ExportOptions(precision=PRECISION, converse_lowering="auto", target="ort", verify_size=VERIFY_SIZE)
    t0 = time.perf_counter()
    try:
        with _quiet():
            result = export(model, path, weights=weights, options=options)
        st = os.stat(path)
        written = (st.st_dev, st.st_ino)
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)  # an entry others can write is never reused
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
        os.chmod(record_path, stat.S_IMODE(os.stat(record_path).st_mode) & ~0o022)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # only our own file: another process's finished entry stays
            st = os.lstat(path)
            if written == (st.st_dev, st.st_ino):
                path.unlink()
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
