#!/usr/bin/env bash
# Converse2D on a GPU without TensorRT (CUDA toolkit + cuFFT, the repository's Python environment):
# builds converse2d_runner_check (converse2d_runner.cpp + converse2d_kernels.cu, as the plugin
# library compiles them, without the TensorRT glue) and
#   1. runs the host test cases (tests/engines/plugins/test_converse2d.py: scales 1-3, every padding mode,
#      odd/even sizes and kernels, shared/per-sample kernel and λ) in FP32 and in FP16 (x, kernel,
#      output; λ FP32) through cuFFT, each in a workspace of the profile bound, also with the cached
#      kernel spectrum, and prints the max abs error per case against restormer_deploy.restormer.ops (float64) and
#      against the host build;
#   2. checks every shape of a few profiles against the workspace bound (--scan).
# Exits non-zero on a failure. A few minutes at most (one nvcc build for this GPU, ~300 small cases).
#
#   bash engines/plugins/converse2d/gpu_check.sh          # PYTHON, NVCC, CUDA_ARCH (default native) override
set -euo pipefail
cd "$(dirname "$0")/../../.."
PYTHON=${PYTHON:-.venv/bin/python}
NVCC=${NVCC:-$("$PYTHON" -c "from restormer_deploy.engines.plugins.converse2d import host; print(host.find_nvcc() or 'nvcc')")}
SRC=engines/plugins/converse2d
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

read -r CUFFT_INC CUFFT_LIB < <("$PYTHON" - <<'EOF'
from restormer_deploy.engines.plugins.converse2d import host
inc = host.find_cufft_include()
print(inc or "-", host.find_cufft_library(inc) or "-")
EOF
)
if [[ $CUFFT_INC == - || $CUFFT_LIB == - ]]; then
    echo "cufft.h / libcufft not found (pip install nvidia-cufft, or set CUFFT_INCLUDE_DIR and CUFFT_LIBRARY)" >&2
    exit 1
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
echo "nvcc: $("$NVCC" --version | tail -1); cuFFT: $CUFFT_LIB"
time "$NVCC" -std=c++17 -O2 -arch="${CUDA_ARCH:-native}" -Xcompiler=-Wall,-Wextra -I"$SRC" -I"$CUFFT_INC" \
    "$SRC/converse2d_runner_check.cpp" "$SRC/converse2d_runner.cpp" "$SRC/converse2d_kernels.cu" \
    -o "$WORK/runner_check" -L"$(dirname "$CUFFT_LIB")" -l:"$(basename "$CUFFT_LIB")" \
    -Xlinker -rpath,"$(dirname "$CUFFT_LIB")"

"$PYTHON" - "$WORK" <<'EOF'
import subprocess, sys, tempfile, zlib
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, "tests/engines/plugins")
from test_converse2d import BATCHES, GEOMETRIES, MODES, _inputs  # the host test cases
from restormer_deploy.engines.plugins.converse2d import host as c2d_host
from restormer_deploy.restormer.ops import converse2d

work = Path(sys.argv[1])
host = c2d_host.HostConverse2D(c2d_host.build_host_library(work))
cases = []
for half in (0, 1):
    for scale in (1, 2, 3):
        for mode in MODES:
            for h, w, padding, ksize in GEOMETRIES:
                for bk, bl in BATCHES:
                    rng = np.random.default_rng(zlib.crc32(repr((scale, mode, (h, w, padding, ksize), (bk, bl))).encode()))
                    x, kernel, lam = _inputs(rng, 2, 3, h, w, ksize, bk, bl)
                    if half:  # what the GPU sees: x and kernel rounded to FP16
                        x, kernel = x.astype(np.float16).astype(np.float32), kernel.astype(np.float16).astype(np.float32)
                    path = work / f"case{len(cases):03d}.bin"
                    header = np.array([2, 3, h, w, bk, *ksize, bl, scale, padding, MODES.index(mode), half], np.int64)
                    path.write_bytes(header.tobytes() + x.tobytes() + kernel.tobytes() + lam.tobytes())
                    cases.append((path, half, scale, mode, (h, w, padding, ksize), (bk, bl), x, kernel, lam))

run = subprocess.run([str(work / "runner_check"), *(str(c[0]) for c in cases)], capture_output=True, text=True)
print(run.stdout[-4000:], run.stderr[-2000:], sep="")
if run.returncode != 0:
    sys.exit(f"runner_check failed ({run.returncode})")

worst = {0: 0.0, 1: 0.0}
failed = 0
print("case  type  s  mode       HxW p kernel  k/lam batch  max|gpu-torch64|  rel     max|gpu-host|")
for path, half, scale, mode, (h, w, padding, ksize), (bk, bl), x, kernel, lam in cases:
    out = np.fromfile(str(path) + ".out", np.float32).reshape(2, 3, h * scale, w * scale)
    ref = converse2d(*(torch.from_numpy(a.astype(np.float64)) for a in (x, kernel, lam)), scale, padding, mode).numpy()
    hx, hk = (x.astype(np.float16), kernel.astype(np.float16)) if half else (x, kernel)
    ref_host = host(hx, hk, lam, scale, padding, mode).astype(np.float32)
    err = float(np.abs(out - ref).max())
    rel = err / float(np.abs(ref).max())
    ok = rel < (2e-3 if half else 1e-4)
    failed += not ok
    worst[half] = max(worst[half], rel)
    print(f"{path.stem[4:]}   {'fp16' if half else 'fp32'}  {scale}  {mode:9s} {h:2d}x{w:<2d} {padding} "
          f"{ksize[0]}x{ksize[1]}     {bk}/{bl}        {err:.3e}       {rel:.1e}  {np.abs(out - ref_host).max():.3e}"
          f"{'' if ok else '  FAILED'}")
print(f"worst relative error: fp32 {worst[0]:.2e} (limit 1e-4), fp16 {worst[1]:.2e} (limit 2e-3); {failed} failed")
sys.exit(1 if failed else 0)
EOF

time "$WORK/runner_check" --scan
echo "gpu_check: OK"
