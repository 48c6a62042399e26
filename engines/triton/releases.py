"""Which Triton container release ships which TensorRT (a plan only loads with the exact release).

The table is written from knowledge of NVIDIA's Frameworks Support Matrix and the Triton release
notes ("Container Version / Triton / TensorRT" tables), not read from them on this machine. Three
rows were cross-checked on 2026-11-22 against Triton's compatibility page (the trtllm-python-py3
containers of the same release: 24.08 -> TensorRT 10.3.0, 24.12 -> 10.7.0, 25.01 -> 10.8.0.43);
the others are unchecked: read the release notes before relying on a row. Releases before 24.08 ship TensorRT older than 10.3,
which this project does not build for (restormer_deploy.engines.tensorrt.core.MIN_VERSION).
"""

from __future__ import annotations

import re

from restormer_deploy.engines.tensorrt.core import TrtError
from restormer_deploy.export.contract import parse_version, same_engine_version

SOURCE = "NVIDIA Frameworks Support Matrix / Triton release notes (from knowledge; 24.08, 24.12, 25.01 cross-checked)"

# container release -> (Triton server version, TensorRT version)
TRITON_RELEASES = {
    "24.08": ("2.49.0", "10.3.0.26"),
    "24.09": ("2.50.0", "10.4.0.26"),
    "24.10": ("2.51.0", "10.5.0.18"),
    "24.11": ("2.52.0", "10.6.0.26"),
    "24.12": ("2.53.0", "10.7.0.23"),
    "25.01": ("2.54.0", "10.8.0.43"),
    "25.02": ("2.55.0", "10.8.0.43"),
    "25.03": ("2.56.0", "10.9.0.34"),
    "25.04": ("2.57.0", "10.9.0.34"),
    "25.05": ("2.58.0", "10.10.0.31"),
    "25.06": ("2.59.0", "10.11.0.33"),
    "25.07": ("2.59.1", "10.11.0.33"),
    "25.08": ("2.60.0", "10.13.2.6"),
    "25.09": ("2.61.0", "10.13.3.9"),
    "25.10": ("2.62.0", "10.13.3.9"),
}


def check_release(release: str) -> str:
    """'25.01' -> '25.01'; TrtError for a malformed or unknown release."""
    if not re.fullmatch(r"\d\d\.\d\d", str(release).strip()):
        raise TrtError(f"--triton-release {release!r}: expected YY.MM, e.g. 25.01")
    release = release.strip()
    if release not in TRITON_RELEASES:
        raise TrtError(f"--triton-release {release}: not in the table of known releases "
                       f"({', '.join(TRITON_RELEASES)}); see engines/triton/releases.py")
    return release


def releases_for(tensorrt_version: str) -> list[str]:
    """Container releases whose TensorRT is the engine's (same major.minor.patch[.build])."""
    parse_version(tensorrt_version)
    return [r for r, (_, trt) in TRITON_RELEASES.items() if same_engine_version(tensorrt_version, trt)]


def check_plan_release(tensorrt_version: str, release: str) -> None:
    """Refuse a plan for a Triton release whose TensorRT differs from the one that built it."""
    release = check_release(release)
    server, trt = TRITON_RELEASES[release]
    if not same_engine_version(tensorrt_version, trt):
        fits = releases_for(tensorrt_version)
        hint = (f"use Triton {' or '.join(fits)}" if fits else
                "no release in the table ships that TensorRT") + f", or rebuild the engine with TensorRT {trt}"
        raise TrtError(f"the engine was built with TensorRT {tensorrt_version}, Triton {release} (server {server}) "
                       f"runs TensorRT {trt}: a plan only loads with the exact TensorRT that built it; {hint}")
