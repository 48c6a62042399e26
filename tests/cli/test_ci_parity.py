"""CI parity: the default model's FP32, FP16 and INT8 ONNX Runtime exports against PyTorch on real
images, through the installed console scripts (``restore-export`` then ``restore-parity``), with
the per-precision thresholds of restore-parity (FP32 >= 60 dB, FP16 >= 45 dB, INT8 >= 35 dB and a
task-PSNR drop <= 0.3 dB).

Real images: the first 4 of CBSD68 (central 256x256) at sigma 25, calibrated on Set14, when
``../shared`` is beside the repository; otherwise the bundled sample photos, calibrated on
themselves (and the test says so in its id).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from restormer_deploy.restormer.presets import ASSETS, shared_dir

BIN = Path(sys.executable).parent
SHARED = shared_dir()
HAVE_SHARED = (SHARED / "data" / "denoise" / "CBSD68").is_dir() and (SHARED / "data" / "sr" / "Set14").is_dir()
IMAGES = SHARED / "data" / "denoise" / "CBSD68" if HAVE_SHARED else ASSETS / "samples"
CALIB = SHARED / "data" / "sr" / "Set14" if HAVE_SHARED else ASSETS / "samples"
SOURCE = "cbsd68" if HAVE_SHARED else "bundled-samples"
EXPORT_ARGS = {
    "fp32": [],
    "fp16": [],
    "int8": ["--calib-dir", str(CALIB), "--calib-count", "8", "--fallback", "fp32"],
}


def _cli(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True, env=env, timeout=1200)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return tmp_path_factory.mktemp("ci_parity")


# The INT8 file must pass on every x86 CPU (issue 30). It gave 32.0 dB < 35 in the 2026-12-05 environment and
# passed (45 dB) elsewhere: the file's arithmetic depended on the CPU. Without VNNI, ONNX Runtime's U8S8
# convolutions sum pairs of uint8 x int8 products in int16 with saturation, which 8-bit weights against
# uint8 activations (zero point 128) overflow; emulated here, that drops the self-check to 24-26 dB, with
# VNNI it is 45 dB. The ONNX Runtime file now has 7-bit weights where pairs form (calibration/qdq.py,
# tests/calibration/test_saturation.py): the same result on both kinds of CPU (docs/INT8.md).
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"], ids=lambda p: f"{p}-{SOURCE}")
def test_default_model_export_passes_restore_parity(exports, precision):
    onnx_path = exports / f"default_{precision}.onnx"
    made = _cli("restore-export", "default", "--precision", precision, *EXPORT_ARGS[precision], "--out", str(onnx_path))
    assert made.returncode == 0, made.stdout + made.stderr
    report = exports / f"parity_{precision}.json"
    checked = _cli("restore-parity", str(onnx_path), "--reference", "default", "--images", str(IMAGES),
                   "--degrade", "noise:25", "--limit", "4", "--crop", "256", "--threads", "2", "--json", str(report))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = json.loads(report.read_text())
    floor = {"fp32": 60.0, "fp16": 45.0, "int8": 35.0}[precision]
    assert result["passed"] is True
    assert result["min_psnr_vs_reference"] >= floor
    assert result["task_psnr_drop"] <= 0.3
    # the restoration itself works: sigma 25 noise is about 20 dB, the model gains > 5 dB
    assert result["task_psnr_artifact"] > 25.0
