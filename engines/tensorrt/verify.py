"""Parity and latency of a TensorRT engine against PyTorch (the command: ``python -m restormer_deploy.cli.verify_trt``).

Runs the engine with polygraphy's TrtRunner on the bundled sample image (cropped to fit the
engine's profile), compares it with the PyTorch model in FP32 (PSNR with peak 1 on outputs clamped
to [0, 1], as restore-export's self-check), then times ``iterations`` runs (host-to-device and
back included). The floor is ``restormer_deploy.export.contract.ENGINE_PARITY_FLOORS`` for the engine's precision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from restormer_deploy.engines.tensorrt.core import TrtError, check_shape_in_profile
from restormer_deploy.export.contract import ENGINE_PARITY_FLOORS


@dataclass(frozen=True, kw_only=True)
class VerifyResult:
    engine: str
    precision: str
    size: str  # "HxW"
    tensorrt_version: str
    gpu: str
    psnr_vs_torch: float
    max_abs_err: float
    min_psnr: float
    passed: bool
    median_ms: float | None
    p90_ms: float | None

    def to_json(self) -> dict:
        return dict(self.__dict__)


def pick_size(profile: dict, name: str, pad_multiple: int, limit: int = 256) -> int:
    """A square test size inside the engine's profile: min(opt, limit), a multiple of pad_multiple."""
    p = profile[name]
    lo, hi = max(p["min"][2:]), min(p["max"][2:])
    size = min(min(p["opt"][2:]), limit)
    size -= size % max(pad_multiple, 1)
    size = max(size, lo)
    if size > hi:
        raise TrtError(f"no square test size fits the profile of {name!r}: min {p['min']}, max {p['max']}")
    return size


def verify_engine(engine_path, reference: str, weights=None, *, plugin_libs=(), size: int | None = None,
                  iterations: int = 20, min_psnr: float | None = None, log=print) -> VerifyResult:
    from polygraphy.backend.trt import TrtRunner
    import torch

    from restormer_deploy.engines.tensorrt.builder import import_tensorrt, load_engine
    from restormer_deploy.export.onnx_export import sample_inputs
    from restormer_deploy.restormer.metrics import psnr_peak1
    from restormer_deploy.restormer.presets import load_model

    trt = import_tensorrt()
    engine, sidecar = load_engine(engine_path, plugin_libs, log)
    net, spec = load_model(reference, weights)
    names = list(sidecar["profile"])
    size = size or pick_size(sidecar["profile"], names[0], int(sidecar.get("pad_multiple", 1)))
    inputs = sample_inputs(spec, size)
    feeds = {}
    for name, value in zip(names, inputs):
        dtype = trt.nptype(engine.get_tensor_dtype(name))
        feeds[name] = np.ascontiguousarray(value.astype(dtype))
    for name, value in feeds.items():
        check_shape_in_profile(name, value.shape, sidecar["profile"])
    with torch.inference_mode():
        ref = net(*[torch.from_numpy(v) for v in inputs]).numpy()
    times = []
    with TrtRunner(engine) as runner:
        outputs = runner.infer(feeds)
        got = np.asarray(next(iter(outputs.values())), dtype=np.float32)
        for _ in range(iterations):
            t0 = time.perf_counter()
            runner.infer(feeds)
            times.append((time.perf_counter() - t0) * 1e3)
    if got.shape != ref.shape:
        raise TrtError(f"engine output shape {got.shape} differs from PyTorch {ref.shape}")
    precision = sidecar.get("precision", "fp32")
    floor = ENGINE_PARITY_FLOORS.get(precision, min(ENGINE_PARITY_FLOORS.values())) if min_psnr is None else min_psnr
    psnr = psnr_peak1(got, ref) if np.isfinite(got).all() else float("nan")
    return VerifyResult(
        engine=str(engine_path), precision=precision, size=f"{size}x{size}",
        tensorrt_version=sidecar["tensorrt_version"], gpu=sidecar["gpu"],
        psnr_vs_torch=psnr, max_abs_err=float(np.abs(got - ref).max()), min_psnr=floor,
        passed=bool(np.isfinite(psnr) and psnr >= floor),
        median_ms=float(np.median(times)) if times else None,
        p90_ms=float(np.percentile(times, 90)) if times else None,
    )
