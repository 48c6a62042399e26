"""The options of an INT8 export (``restore-export --precision int8``), checked before any work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from restormer_deploy.calibration.data import CalibrationError
from restormer_deploy.calibration.ranges import METHODS

FALLBACKS = ("fp16", "fp32")
# The fallback that runs fastest on each target: on ONNX Runtime's CPU the FP16 rest is slow (an INT8
# file with FP16 fallback ran 4.4x slower than FP32, one with FP32 fallback 1.3x faster; issue 19),
# TensorRT runs FP16 natively.
FALLBACK_FOR_TARGET = {"ort": "fp32", "trt": "fp16"}
_OTHER = {"ort": "pass --fallback fp16 for TensorRT", "trt": "pass --fallback fp32 for ONNX Runtime CPU"}
_RUNTIME = {"ort": "ONNX Runtime CPU", "trt": "TensorRT"}


def default_fallback(target: str) -> tuple[str, str]:
    """(the fallback precision for ``target``, ``ort`` or ``trt``; the one-line notice saying why)."""
    fallback = FALLBACK_FOR_TARGET[target]
    return fallback, f"INT8 fallback {fallback}: best for {_RUNTIME[target]}; {_OTHER[target]}"


@dataclass(kw_only=True)
class Int8Options:
    calib_dir: Path | None = None
    calib_count: int = 20
    calib_size: int | None = 128          # crop size; None or 0 = full images
    calib_method: str = "minmax"
    degrade: str | None = None            # default: the preset's
    seed: int = 0
    psnr_budget: float = 0.3
    fallback: str = "fp32"                # default_fallback(target): fp32 for ONNX Runtime, fp16 for TensorRT
    search_dir: Path | None = None        # default: the calibration images
    search_count: int | None = None
    search_size: int | None = 128
    exclude: list[str] = field(default_factory=list)
    quantize_ends: bool = False           # also quantize the first and last layer
    calib_cache: Path | None = None
    mac_size: int = 256
    sensitivity: bool = True              # per-layer analysis and greedy search
    threads: int = 1
    speed_check: bool = True              # fp32 fallback: time FP32 and INT8 in ONNX Runtime (report "cpu_speed")

    def check(self) -> None:
        if self.calib_dir is None:
            raise CalibrationError("--precision int8 needs --calib-dir DIR (a folder of clean images)")
        if self.calib_method not in METHODS:
            raise CalibrationError(f"--calib-method must be one of {', '.join(METHODS)}, got {self.calib_method!r}")
        if self.fallback not in FALLBACKS:
            raise CalibrationError(f"--fallback must be fp16 or fp32, got {self.fallback!r}")
        if not (self.psnr_budget >= 0):
            raise CalibrationError(f"--psnr-budget must be >= 0 dB, got {self.psnr_budget}")
        if self.calib_count < 1:
            raise CalibrationError(f"--calib-count must be >= 1, got {self.calib_count}")
        if self.calib_cache is not None and not Path(self.calib_cache).parent.is_dir():
            raise CalibrationError(f"cannot write {self.calib_cache}: folder {Path(self.calib_cache).parent} does not exist")
