"""Parity and latency of a TensorRT engine against PyTorch (used by scripts/verify_gpu.sh).

    python -m engines.tensorrt.verify model.engine --reference default [--plugin-lib lib.so] [--json out.json]

Runs the engine with polygraphy's TrtRunner on the bundled sample image (cropped to fit the
engine's profile), compares it with the PyTorch model in FP32 (PSNR with peak 1 on outputs clamped
to [0, 1], as restore-export's self-check), then times ``--iterations`` runs (host-to-device and
back included). Exit 0 when the PSNR reaches the floor for the engine's precision, 1 when not,
2 on bad input or a runtime mismatch (core.check_runtime), 3 when anything else fails on the way
(TensorRT, CUDA, the plugin library): one ``error:`` line with the step and the message.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from engines.tensorrt.core import TrtError

EXIT_BAD_INPUT, EXIT_RUN_FAILED = 2, 3
# PSNR floors vs PyTorch FP32 (the builder leaves TF32 off; the floors leave room for kernel choice).
MIN_PSNR = {"fp32": 50.0, "fp16": 40.0, "int8": 30.0}


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


def verify_engine(engine_path, reference: str, weights=None, plugin_libs=(), size: int | None = None,
                  iterations: int = 20, min_psnr: float | None = None, log=print) -> dict:
    from polygraphy.backend.trt import TrtRunner
    import torch

    from engines.tensorrt.builder import import_tensorrt, load_engine
    from export.onnx_export import sample_inputs
    from restormer.metrics import psnr_peak1
    from restormer.presets import load_model

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
    from engines.tensorrt.core import check_shape_in_profile

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
    floor = MIN_PSNR.get(precision, 30.0) if min_psnr is None else min_psnr
    psnr = psnr_peak1(got, ref) if np.isfinite(got).all() else float("nan")
    return {
        "engine": str(engine_path), "precision": precision, "size": f"{size}x{size}",
        "tensorrt_version": sidecar["tensorrt_version"], "gpu": sidecar["gpu"],
        "psnr_vs_torch": psnr, "max_abs_err": float(np.abs(got - ref).max()), "min_psnr": floor,
        "passed": bool(np.isfinite(psnr) and psnr >= floor),
        "median_ms": float(np.median(times)) if times else None,
        "p90_ms": float(np.percentile(times, 90)) if times else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("engine")
    parser.add_argument("--reference", required=True, help="preset or checkpoint the engine was exported from")
    parser.add_argument("--weights")
    parser.add_argument("--plugin-lib", action="append", default=[])
    parser.add_argument("--size", type=int)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--min-psnr", type=float)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args(argv)
    try:
        result = verify_engine(args.engine, args.reference, args.weights, args.plugin_lib, args.size,
                               args.iterations, args.min_psnr, log=lambda m: print(m, file=sys.stderr))
    except (TrtError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # TensorRT, CUDA, polygraphy: an error of this step, not a parity verdict
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: running {args.engine} failed: {type(exc).__name__}: {first}", file=sys.stderr)
        return EXIT_RUN_FAILED
    print(json.dumps(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
