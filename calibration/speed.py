"""INT8 against FP32 on ONNX Runtime's CPU, measured on this machine: does the INT8 file pay off here?

Both graphs in ``restormer_deploy.export.ort_session.make_session`` (what restore-run and restore-bench
use), one thread each (comparable on a busy machine), on one ``size`` x ``size`` input, runs
interleaved (FP32, INT8, FP32, ...: both see the same load), one warm-up each, the median of the
rest. A ratio, not a benchmark (benchmarks/int8_default.py is the measurement; docs/INT8.md).
"""

from __future__ import annotations

import time

import numpy as np
import onnx

from restormer_deploy.export.ort_session import make_session

SLOWER_NOTE = ("INT8 runs at {ratio:.2f}x the speed of FP32 on this CPU (ONNX Runtime, {size}x{size}, 1 thread): "
               "for ONNX Runtime on the CPU the FP32 file is the faster one; INT8 is for TensorRT (docs/INT8.md)")


def _feeds(sess, spec, size: int) -> dict:
    size = max(spec.pad_multiple, size - size % spec.pad_multiple)
    rng = np.random.default_rng(0)
    feeds = {}
    for meta in sess.get_inputs():
        if meta.name == "kernel":
            feeds[meta.name] = np.full((1, 1, 7, 7), 1 / 49, np.float32)
        else:
            feeds[meta.name] = rng.random((1, spec.in_channels, size, size), dtype=np.float32)
    return feeds


def cpu_speed(fp32: onnx.ModelProto | str, int8: onnx.ModelProto | str, spec, size: int = 256, runs: int = 3) -> dict:
    """{"size", "threads", "fp32_ms", "int8_ms", "speedup" (FP32 time / INT8 time), "slower"}."""
    sessions = {"fp32": make_session(fp32, threads=1), "int8": make_session(int8, threads=1)}
    feeds = _feeds(sessions["fp32"], spec, size)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for i in range(runs + 1):
        for k, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, feeds)
            if i:  # the first run of each is the warm-up
                times[k].append((time.perf_counter() - t0) * 1e3)
    ms = {k: float(np.median(v)) for k, v in times.items()}
    ratio = ms["fp32"] / ms["int8"]
    return {"size": int(next(iter(feeds.values())).shape[-1]), "threads": 1, "fp32_ms": ms["fp32"],
            "int8_ms": ms["int8"], "speedup": ratio, "slower": ratio < 1.0}


def slower_note(speed: dict | None) -> str | None:
    """The line that tells a user INT8 is slower than FP32 here (None when it is not, or unmeasured)."""
    if not speed or not speed.get("slower"):
        return None
    return SLOWER_NOTE.format(ratio=speed["speedup"], size=speed["size"])
