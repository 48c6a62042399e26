"""One runner interface for every backend, in the style of polygraphy's runners.

A runner is built cheaply, then ``activate()``d (load weights / create the session / deserialise
the engine), fed with ``infer({name: array})`` and ``deactivate()``d; it is also a context manager::

    with load_runner("model.onnx") as runner:
        y = runner.run(x)              # x: (B, C, H, W) float32 in [0, 1] -> float32 (B, C', sH, sW)

Every runner has ``name`` (the backend, e.g. ``ort-cpu``), ``precision`` (``fp32``/``fp16``/
``int8``), ``spec`` (a ``ModelSpec``: channels, scale, pad_multiple, needs_kernel),
``input_names`` / ``output_names`` and ``get_input_metadata()`` (name -> (numpy dtype, shape with
None for dynamic axes)). ``run`` casts to the artefact's input dtype (FP16-IO ONNX models take
float16) and always returns float32; it does not pad: see ``restormer_deploy.restormer.tiling.restore_array``.

``load_runner(artifact, backend="auto")``: ``.onnx`` -> ONNX Runtime (TensorRT EP > CUDA EP > CPU
when the installed onnxruntime has them), ``.engine``/``.plan`` -> TensorRT (with its JSON sidecar),
``.safetensors`` or a preset name -> PyTorch (CUDA when available, else CPU).
``as_polygraphy(runner)`` wraps a runner as a ``polygraphy`` ``BaseRunner`` for its Comparator.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from restormer_deploy.export.contract import ContractError, read_sidecar, same_engine_version, spec_from_metadata
from restormer_deploy.restormer.errors import RunFailed, one_line
from restormer_deploy.restormer.presets import PRESETS, ModelSpec
from restormer_deploy.restormer.zoo import ZOO_SUFFIXES

BACKENDS = ("auto", "torch", "torch-cpu", "torch-cuda", "ort", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt")
ENGINE_SUFFIXES = (".engine", ".plan")
_ORT_PROVIDERS = {
    "ort-trt": "TensorrtExecutionProvider",
    "ort-cuda": "CUDAExecutionProvider",
    "ort-cpu": "CPUExecutionProvider",
}


class BackendError(RunFailed):
    """The artefact cannot be run with the requested (or any available) backend."""


class Runner:
    """Base class: subclasses implement ``_activate``, ``_infer`` and optionally ``_deactivate``."""

    name = "runner"

    def __init__(self) -> None:
        self.is_active = False
        self.spec: ModelSpec | None = None
        self.precision = "fp32"
        self.input_names: list[str] = ["input"]
        self.output_names: list[str] = ["output"]
        self.inference_time: float | None = None
        self._input_meta: dict[str, tuple[np.dtype, tuple]] = {}

    # lifecycle ---------------------------------------------------------------------------------
    def activate(self) -> "Runner":
        if not self.is_active:
            try:
                self._activate()
            except (BackendError, MemoryError, FileNotFoundError, ValueError, ImportError):
                raise
            except Exception as exc:  # e.g. ONNX Runtime refusing the graph (an unknown custom op)
                raise BackendError(f"{self.name}: cannot start: {one_line(exc)}") from None
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        pass

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # inference ---------------------------------------------------------------------------------
    def get_input_metadata(self) -> dict[str, tuple[np.dtype, tuple]]:
        self._need_active()
        return dict(self._input_meta)

    def infer(self, feed: dict[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
        """Raw feed -> outputs (in the artefact's own dtypes)."""
        self._need_active()
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise BackendError(f"{self.name}: missing inputs {missing} (the model takes {self.input_names})")
        t0 = time.perf_counter()
        try:
            out = self._infer({n: feed[n] for n in self.input_names})
        except (BackendError, MemoryError):
            raise
        except Exception as exc:  # ONNX Runtime's Fail/InvalidArgument/... are plain Exceptions
            raise BackendError(f"{self.name}: {one_line(exc)}") from None
        self.inference_time = time.perf_counter() - t0
        return OrderedDict(out)

    def run(self, x: np.ndarray, kernel: np.ndarray | None = None) -> np.ndarray:
        """(B, C, H, W) float in [0, 1] (+ (1|B, 1, k, k) blur kernel) -> float32 output, not clamped."""
        spec = self.spec
        if x.ndim != 4 or x.shape[1] != spec.in_channels:
            raise ValueError(f"{spec.name} takes (B, {spec.in_channels}, H, W), got {tuple(x.shape)}")
        feed = {}
        dtypes = {n: m[0] for n, m in self.get_input_metadata().items()}
        feed[self.input_names[0]] = np.ascontiguousarray(x, dtype=dtypes.get(self.input_names[0], np.float32))
        if spec.needs_kernel:
            if kernel is None:
                raise ValueError(f"{spec.name} needs a blur kernel (a blur:KERNELFILE degradation)")
            kernel = np.asarray(kernel, dtype=np.float32)
            if kernel.ndim == 2:
                kernel = kernel[None, None]
            if kernel.shape[0] == 1 and x.shape[0] > 1:
                kernel = np.repeat(kernel, x.shape[0], axis=0)
            feed[self.input_names[1]] = np.ascontiguousarray(kernel, dtype=dtypes.get(self.input_names[1], np.float32))
        out = self.infer(feed)[self.output_names[0]]
        return np.asarray(out, dtype=np.float32)

    def describe(self) -> str:
        return f"{self.name} ({self.precision})"

    def _need_active(self) -> None:
        if not self.is_active:
            raise BackendError(f"{self.name}: activate() the runner first (or use it as a context manager)")


# --------------------------------------------------------------------------- PyTorch


class PyTorchRunner(Runner):
    """The PyTorch reference: a preset, one of our ``.safetensors`` checkpoints, or preset + weights.

    ``net`` and ``spec`` may be given directly (an in-memory model, e.g. in tests).
    """

    def __init__(self, model: str | os.PathLike | None = None, weights=None, device: str = "cpu",
                 net=None, spec: ModelSpec | None = None) -> None:
        super().__init__()
        if net is None and model is None:
            raise ValueError("PyTorchRunner needs a model (preset or checkpoint) or net + spec")
        if net is not None and spec is None:
            raise ValueError("PyTorchRunner(net=...) needs its spec too")
        self.model, self.weights, self.device = (str(model) if model is not None else None), weights, device
        self._net, self.spec = net, spec
        self.name = f"torch-{device.split(':')[0]}"
        self.keep_loaded = False  # True: deactivate() keeps the loaded model (re-activation is free)
        if spec is None:
            from restormer_deploy.restormer.presets import resolve

            self.spec = resolve(self.model)
        self.input_names = ["input", "kernel"] if self.spec.needs_kernel else ["input"]

    def _activate(self) -> None:
        import torch

        if self._net is None:
            from restormer_deploy.restormer.presets import load_model

            self._net, self.spec = load_model(self.model, self.weights)
        self._net = self._net.to(self.device).eval()
        shape = (None, self.spec.in_channels, None, None)
        self._input_meta = {"input": (np.dtype(np.float32), shape)}
        if self.spec.needs_kernel:
            self._input_meta["kernel"] = (np.dtype(np.float32), (None, 1, None, None))
        self._torch = torch

    def _deactivate(self) -> None:
        if self.model is not None and not self.keep_loaded:  # we loaded it: free it
            self._net = None

    @property
    def net(self):
        return self._net

    def _infer(self, feed):
        torch = self._torch
        # a copy: some models change their input in place (RCAN's mean shift), and feeds are reused
        args = [torch.from_numpy(np.array(feed[n], dtype=np.float32, copy=True)).to(self.device) for n in self.input_names]
        with torch.inference_mode():
            y = self._net(*args)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        return {"output": y.float().cpu().numpy()}


# --------------------------------------------------------------------------- ONNX Runtime


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime: ``provider`` is ``ort-cpu`` (default), ``ort-cuda`` or ``ort-trt``."""

    def __init__(self, path: str | os.PathLike, provider: str = "ort-cpu", threads: int | None = None,
                 layout: bool = True) -> None:
        super().__init__()
        if provider not in _ORT_PROVIDERS:
            raise ValueError(f"provider must be one of {list(_ORT_PROVIDERS)}, got {provider!r}")
        self.path, self.provider, self.threads, self.layout = Path(path), provider, threads, layout
        self.name = provider
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        import onnx

        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:
            raise BackendError(f"{self.path}: not a readable ONNX model ({one_line(exc)})") from None
        self.metadata = {p.key: p.value for p in proto.metadata_props}
        self.spec, self.precision = spec_from_metadata(self.metadata, str(self.path))
        inits = {i.name for i in proto.graph.initializer}
        self.input_names = [i.name for i in proto.graph.input if i.name not in inits]
        self.output_names = [o.name for o in proto.graph.output]
        del proto

    def _activate(self) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        wanted = _ORT_PROVIDERS[self.provider]
        if wanted not in available:
            raise BackendError(f"{self.provider}: this onnxruntime has no {wanted} (available: {', '.join(available)})")
        if self.threads:
            threads = self.threads
        else:  # follow PyTorch's setting (set_num_threads / --threads), so both backends use the same cores
            import torch

            threads = torch.get_num_threads()
        if self.provider == "ort-cpu":
            from restormer_deploy.export.ort_session import make_session

            self._session = make_session(self.path, threads=threads, layout=self.layout)
        else:
            from restormer_deploy.export.ort_session import session_options

            providers = [wanted, "CPUExecutionProvider"]
            if wanted == "TensorrtExecutionProvider":
                providers.insert(1, "CUDAExecutionProvider")
            self._session = ort.InferenceSession(str(self.path), session_options(threads), providers=providers)
        self._input_meta = {
            i.name: (np.dtype(_ORT_DTYPES.get(i.type, np.float32)), tuple(d if isinstance(d, int) else None for d in i.shape))
            for i in self._session.get_inputs()
        }
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        if self._input_meta[self.input_names[0]][0] == np.float16 and self.precision == "fp32":
            self.precision = "fp16"

    def _deactivate(self) -> None:
        self._session = None

    def _infer(self, feed):
        outs = self._session.run(self.output_names, feed)
        return dict(zip(self.output_names, outs))


# --------------------------------------------------------------------------- TensorRT


def engine_metadata(engine: str | os.PathLike) -> dict:
    """An engine's sidecar (``restormer_deploy.export.contract.read_sidecar``, no key required: the spec keys are
    checked by ``spec_from_metadata``), its scalar values as strings, like ONNX metadata_props."""
    data = read_sidecar(engine, required=())
    return {k: (v if isinstance(v, (dict, list)) else str(v)) for k, v in data.items()}


def engine_version_ok(built: str, installed: str) -> bool:
    """Whether a plan built with TensorRT ``built`` loads on ``installed`` (compared as numbers,
    ``restormer_deploy.export.contract.same_engine_version``); a version that is not a number never matches."""
    try:
        return same_engine_version(built, installed)
    except ContractError:
        return False


def tensorrt_version() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return None
    return getattr(tensorrt, "__version__", "unknown")


class TensorRTRunner(Runner):
    """A serialised TensorRT engine (+ JSON sidecar), through polygraphy's TrtRunner (lazy imports)."""

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"engine not found: {self.path}")
        try:
            self.metadata = engine_metadata(self.path)
        except ContractError as exc:  # a runner reports every failure to start as a BackendError
            raise BackendError(str(exc)) from None
        self.spec, self.precision = spec_from_metadata(self.metadata, str(self.path))
        self.input_names = ["input", "kernel"] if self.spec.needs_kernel else ["input"]

    def _activate(self) -> None:
        if tensorrt_version() is None:
            raise BackendError("tensorrt is not installed (pip install tensorrt; needs an NVIDIA GPU)")
        built = self.metadata.get("tensorrt_version")
        if built and not engine_version_ok(built, tensorrt_version()):
            raise BackendError(f"{self.path} was built with TensorRT {built}, installed is {tensorrt_version()}: rebuild it")
        from polygraphy.backend.trt import TrtRunner

        # engines/tensorrt checks the sidecar against this machine, loads the plugin libraries
        # ($RESTORMER_TRT_PLUGINS, os.pathsep-separated) and deserialises the plan.
        from restormer_deploy.engines.tensorrt.builder import load_engine

        libs = [p for p in os.environ.get("RESTORMER_TRT_PLUGINS", "").split(os.pathsep) if p]
        try:
            engine, _ = load_engine(self.path, plugin_libs=libs, log=lambda _m: None)
        except Exception as exc:
            raise BackendError(one_line(exc)) from None
        self._trt = TrtRunner(engine)
        self._trt.activate()
        meta = self._trt.get_input_metadata(use_numpy_dtypes=False)
        self._input_meta = {n: (np.dtype(m.dtype.numpy()), tuple(m.shape)) for n, m in meta.items()}
        self.input_names = list(meta.keys())

    def _deactivate(self) -> None:
        self._trt.deactivate()
        self._trt = None

    def _infer(self, feed):
        out = self._trt.infer(feed)
        self.output_names = list(out.keys())
        return {k: np.array(v) for k, v in out.items()}


# --------------------------------------------------------------------------- selection


def torch_cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def artifact_kind(artifact: str) -> str:
    """'onnx', 'engine', 'torch' (preset or checkpoint); ValueError otherwise."""
    path = Path(artifact)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in ENGINE_SUFFIXES:
        return "engine"
    if suffix in ZOO_SUFFIXES or artifact in PRESETS:
        return "torch"
    raise ValueError(f"unknown artefact {artifact!r}: expected a preset ({', '.join(PRESETS)}), a checkpoint "
                     f"({', '.join(ZOO_SUFFIXES)}: ours or any that spandrel recognises), an .onnx model or a "
                     "TensorRT .engine/.plan")


def available_backends(artifact: str) -> list[str]:
    """Concrete backends that can run ``artifact`` here, best first."""
    kind = artifact_kind(artifact)
    if kind == "engine":
        return ["tensorrt"] if tensorrt_version() else []
    if kind == "onnx":
        providers = ort_providers()
        order = [b for b in ("ort-trt", "ort-cuda", "ort-cpu") if _ORT_PROVIDERS[b] in providers]
        return order
    return (["torch-cuda"] if torch_cuda_available() else []) + ["torch-cpu"]


def load_runner(artifact: str | os.PathLike, backend: str = "auto", weights=None, threads: int | None = None) -> Runner:
    """A (not yet activated) runner for ``artifact`` on ``backend`` (see the module docstring)."""
    artifact = str(artifact)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    kind = artifact_kind(artifact)
    if kind != "torch" and not Path(artifact).is_file():
        raise FileNotFoundError(f"artefact not found: {artifact}")
    if weights is not None and kind != "torch":
        raise ValueError(f"--weights applies to a preset, not to {artifact}")
    if backend == "auto":
        choices = available_backends(artifact)
        if not choices:
            raise BackendError(f"no installed runtime can run {artifact} (TensorRT is not installed)")
        backend = choices[0]
    elif backend == "torch":
        backend = "torch-cuda" if torch_cuda_available() else "torch-cpu"
    elif backend == "ort":
        backend = next(b for b in ("ort-trt", "ort-cuda", "ort-cpu") if b == "ort-cpu" or _ORT_PROVIDERS[b] in ort_providers())
    family = {"torch-cpu": "torch", "torch-cuda": "torch", "ort-cpu": "onnx", "ort-cuda": "onnx", "ort-trt": "onnx",
              "tensorrt": "engine"}[backend]
    if family != kind:
        raise ValueError(f"backend {backend} cannot run {artifact} (a {kind} artefact)")
    if backend.startswith("torch"):
        if backend == "torch-cuda" and not torch_cuda_available():
            raise BackendError("torch-cuda: PyTorch sees no CUDA device")
        if threads:
            import torch

            torch.set_num_threads(threads)
        return PyTorchRunner(artifact, weights=weights, device="cuda" if backend == "torch-cuda" else "cpu")
    if family == "onnx":
        return OnnxRuntimeRunner(artifact, provider=backend, threads=threads)
    return TensorRTRunner(artifact)


def as_polygraphy(runner: Runner, name: str | None = None):
    """Wrap one of our runners as a polygraphy ``BaseRunner`` (for ``Comparator.run``)."""
    from polygraphy.backend.base import BaseRunner

    class _Wrapped(BaseRunner):
        def __init__(self):
            super().__init__(name=name or runner.name)
            self.inner = runner

        def activate_impl(self):
            runner.activate()

        def deactivate_impl(self):
            runner.deactivate()

        def get_input_metadata_impl(self):
            from polygraphy.common import TensorMetadata

            meta = TensorMetadata()
            for n, (dtype, shape) in runner.get_input_metadata().items():
                # float inputs are fed as float32 and cast here (FP16-IO artefacts compare on the same feed)
                meta.add(n, np.float32 if np.issubdtype(dtype, np.floating) else dtype, shape)
            return meta

        def infer_impl(self, feed_dict):
            dtypes = {n: m[0] for n, m in runner.get_input_metadata().items()}
            feed = {n: np.ascontiguousarray(v, dtype=dtypes.get(n, v.dtype)) for n, v in feed_dict.items()}
            out = runner.infer(feed)
            self.inference_time = runner.inference_time
            return OrderedDict((k, np.asarray(v, dtype=np.float32) if np.issubdtype(v.dtype, np.floating) else v)
                               for k, v in out.items())

    return _Wrapped()


__all__ = [
    "BACKENDS", "BackendError", "OnnxRuntimeRunner", "PyTorchRunner", "Runner", "TensorRTRunner",
    "as_polygraphy", "available_backends", "engine_metadata", "engine_version_ok", "load_runner",
]
