"""Activation ranges with ONNX Runtime's calibrators, and their JSON cache.

``onnxruntime.quantization.create_calibrator`` augments the FP32 model (functions and the custom
``restormer`` domain included: ONNX Runtime runs the model-local functions) with the inputs and
outputs of every Conv/MatMul, runs it on the calibration inputs one image at a time (histograms
merge between calls, so memory holds one image's activations) and gives per-tensor (low, high):

* ``minmax``: the extreme values (symmetric: ±max|x|);
* ``entropy``: the threshold minimising the KL divergence of the 8-bit histogram (TensorRT's);
* ``percentile``: the 99.999th percentile of |x|.

Only amax = max(|low|, |high|) is used (symmetric int8, zero point 0).

The cache is a JSON file ``{"format": "restormer-int8-ranges", "version": 1, "fingerprint", "settings",
"ranges": {tensor: [low, high]}}``; it is reused only when the fingerprint of the FP32 graph (its
structure and weights) and the calibration settings match, else the pass runs again and rewrites it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from restormer_deploy.calibration.data import CalibrationError
from restormer_deploy.export.ort_session import cpu_session

METHODS = ("minmax", "entropy", "percentile")


@dataclass(kw_only=True)
class Ranges:
    amax: dict[str, float]                 # tensor -> calibrated |max|, for the tensors that have one
    settings: dict                         # the calibration settings the cache is keyed on
    cache_state: str                       # "not used", "hit" or "miss: why"
    save: Callable[[], None]               # writes the cache (once the file is accepted)
CACHE_FORMAT, CACHE_VERSION = "restormer-int8-ranges", 1


def fingerprint(model: onnx.ModelProto) -> str:
    """sha256 of the graph's nodes (names, types, edges) and initialiser bytes; metadata ignored."""
    h = hashlib.sha256()
    for node in model.graph.node:
        h.update(f"{node.name}|{node.domain}|{node.op_type}|{','.join(node.input)}|{','.join(node.output)}\n".encode())
    for init in model.graph.initializer:
        h.update(init.name.encode())
        h.update(onnx.numpy_helper.to_array(init).tobytes())
    return h.hexdigest()


def calibrate(model: onnx.ModelProto, inputs: list[tuple[np.ndarray, ...]], method: str = "minmax",
              op_types: tuple[str, ...] = ("Conv", "MatMul"), threads: int = 1) -> dict[str, list[float]]:
    """Ranges {tensor: [low, high]} of the inputs and outputs of every ``op_types`` node."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, create_calibrator

    if method not in METHODS:
        raise CalibrationError(f"--calib-method must be one of {', '.join(METHODS)}, got {method!r}")
    kind = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]
    names = [i.name for i in model.graph.input]

    class Reader(CalibrationDataReader):
        def __init__(self, batch):
            self.items = iter([dict(zip(names, arrays)) for arrays in batch])

        def get_next(self):
            return next(self.items, None)

    extra = {"symmetric": True}
    if method == "percentile":
        extra["percentile"] = 99.999
    with tempfile.TemporaryDirectory(prefix="calib_") as tmp:
        src = Path(tmp) / "fp32.onnx"
        onnx.save(model, str(src))
        calibrator = create_calibrator(str(src), list(op_types), augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=kind, extra_options=extra)
        calibrator.infer_session.set_providers(["CPUExecutionProvider"])
        _set_threads(calibrator, threads)
        for arrays in inputs:  # one image per call: the histogram calibrators merge between calls
            calibrator.collect_data(Reader([arrays]))
        data = calibrator.compute_data()
    ranges = {}
    for name, value in (data.data if hasattr(data, "data") else data).items():
        low, high = (float(np.asarray(v).reshape(-1)[0]) for v in value.range_value)
        ranges[name] = [low, high]
    return ranges


def _set_threads(calibrator, threads: int) -> None:
    calibrator.infer_session = cpu_session(calibrator.augmented_model_path, threads=threads, level="basic")


def amax_of(ranges: dict[str, list[float]]) -> dict[str, float]:
    return {name: max(abs(lo), abs(hi)) for name, (lo, hi) in ranges.items()}


def save_cache(path, fp: str, settings: dict, ranges: dict[str, list[float]]) -> None:
    """Atomic JSON write."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CalibrationError(f"cannot write {path}: folder {path.parent} does not exist")
    data = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "fingerprint": fp, "settings": settings,
            "ranges": {k: [float(a), float(b)] for k, (a, b) in sorted(ranges.items())}}
    from restormer_deploy.restormer.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


def load_cache(path, fp: str, settings: dict) -> tuple[dict[str, list[float]] | None, str]:
    """(ranges, "") when the cache matches; (None, why) when it is absent or stale. Unreadable -> error."""
    path = Path(path)
    if not path.exists():
        return None, "no cache yet"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"cannot read the calibration cache {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(data.get("ranges"), dict):
        raise CalibrationError(f"{path} is not a calibration cache of this tool (format {CACHE_FORMAT!r})")
    if data.get("version") != CACHE_VERSION:
        return None, f"cache version {data.get('version')} != {CACHE_VERSION}"
    if data.get("fingerprint") != fp:
        return None, "the model (graph or weights) changed"
    if data.get("settings") != settings:
        changed = sorted(k for k in set(settings) | set(data.get("settings") or {})
                         if settings.get(k) != (data.get("settings") or {}).get(k))
        return None, f"calibration settings changed ({', '.join(changed)})"
    ranges = {}
    for name, value in data["ranges"].items():
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)):
            raise CalibrationError(f"{path}: bad range for {name!r}: {value!r}")
        ranges[name] = [float(value[0]), float(value[1])]
    return ranges, ""
