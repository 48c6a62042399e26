"""The Converse2D TensorRT plugin without a GPU.

* Host build: the plugin's element functions (``engines/plugins/converse2d/converse2d_kernels.h``:
  padding, p2o placement, the spectral solve with the transfer function G, tile averaging, zero
  insertion as spectrum tiling, cropping, float16 conversion) compiled with g++ and driven from
  numpy, which does the FFTs in cuFFT's R2C/C2R layout; compared with ``restormer_deploy.restormer.ops``.
* nvcc compiles the CUDA sources (object files only) when nvcc and cufft.h are found.
* With TENSORRT_INCLUDE_DIR pointing at TensorRT's headers: the IPluginV3 classes compile, the
  CMake build links the plugin library, and ``converse2d_selftest.cpp`` checks its creator, fields,
  serialization and format combinations (and, on a machine with a GPU, runs ``enqueue`` against
  ``restormer_deploy.restormer.ops``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from restormer_deploy.engines.plugins.converse2d import host as c2d_host
from restormer_deploy.restormer.ops import converse2d, converse_filter

PLUGIN_DIR = c2d_host.PLUGIN_DIR
MODES = ("circular", "reflect", "replicate", "constant")
# (H, W, padding, (kh, kw)): odd and even images and kernels, with and without padding.
GEOMETRIES = [(9, 12, 2, (5, 5)), (10, 7, 3, (4, 6)), (8, 11, 0, (3, 3))]
# (kernel batch, lam batch) for N = 2: shared / per sample.
BATCHES = [(1, 1), (2, 1), (1, 2), (2, 2)]


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    if c2d_host.find_compiler() is None:
        pytest.skip("no C++ compiler (g++/c++/clang++ or $CXX) to build the host library")
    return c2d_host.HostConverse2D(c2d_host.build_host_library(tmp_path_factory.mktemp("converse2d_host")))


def _inputs(rng, n, c, h, w, kernel_size, bk, bl, dtype=np.float32):
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    kernel = rng.standard_normal((bk, c, *kernel_size)).astype(dtype)
    lam = (10.0 ** rng.uniform(-4, -1, (bl, c, 1, 1))).astype(dtype)  # λ = sigmoid(b − 9) + eps range
    return x, kernel, lam


def _torch64(*arrays):
    return [torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in arrays]


def _rel_err(a, ref):
    a = np.asarray(a)
    a = a.astype(np.complex128 if np.iscomplexobj(a) else np.float64)
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("batches", BATCHES, ids=lambda b: f"k{b[0]}-lam{b[1]}")
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g[0]}x{g[1]}p{g[2]}k{g[3][0]}x{g[3][1]}")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale", [1, 2, 3])
def test_host_build_matches_pytorch(host, scale, mode, geometry, batches):
    h, w, padding, kernel_size = geometry
    rng = np.random.default_rng(zlib.crc32(repr((scale, mode, geometry, batches)).encode()))
    x, kernel, lam = _inputs(rng, 2, 3, h, w, kernel_size, *batches)
    out = host(x, kernel, lam, scale, padding, mode)
    ref = converse2d(*_torch64(x, kernel, lam), scale, padding, mode).numpy()
    assert out.shape == ref.shape == (2, 3, h * scale, w * scale)
    assert out.dtype == np.float32
    assert _rel_err(out, ref) < 1e-4


@pytest.mark.parametrize("batches", BATCHES, ids=lambda b: f"k{b[0]}-lam{b[1]}")
@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_transfer_function_matches_pytorch(host, scale, batches):
    """G from the host build's tile averaging vs ``converse_filter`` (float64)."""
    rng = np.random.default_rng(scale)
    hp, wp = 7, 10
    x, kernel, lam = _inputs(rng, 2, 2, hp, wp, (5, 4), *batches)
    params = host.params(x.shape, kernel.shape, lam.shape, scale, 0, "circular")
    g = host.transfer(params, host.kernel_spectrum(params, kernel), lam)
    k64, lam64 = _torch64(kernel, lam)
    ref = converse_filter(k64, lam64, scale, (hp, wp)).numpy()
    assert g.shape == ref.shape
    assert not np.isnan(g).any()
    assert _rel_err(g, ref) < 1e-5


@pytest.mark.parametrize("padding", [0, 1, 4, 9])
@pytest.mark.parametrize("mode", MODES)
def test_padding_matches_numpy_pad(host, mode, padding):
    """Every padding mode, also past the image size (numpy folds reflect/wrap periodically, as the
    plugin does; torch refuses reflect padding ≥ the size)."""
    x = np.random.default_rng(padding).standard_normal((1, 2, 5, 6)).astype(np.float32)
    params = host.params(x.shape, (1, 2, 1, 1), (1, 2, 1, 1), 1, padding, mode)
    np_mode = {"circular": "wrap", "reflect": "reflect", "replicate": "edge", "constant": "constant"}[mode]
    ref = np.pad(x, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2), mode=np_mode)
    np.testing.assert_array_equal(host.pad(params, x), ref)
    if padding < 5:
        torch_ref = F.pad(torch.from_numpy(x), (padding,) * 4, mode=mode).numpy()
        np.testing.assert_array_equal(host.pad(params, x), torch_ref)


@pytest.mark.parametrize("kernel_size", [(3, 3), (4, 6), (7, 5)])
def test_p2o_placement_matches_official(host, kernel_size):
    """The kernel zero-padded to the upsampled grid, its centre ⌊k/2⌋ rolled to the origin."""
    kernel = np.random.default_rng(0).standard_normal((2, 3, *kernel_size)).astype(np.float32)
    params = host.params((2, 3, 6, 5), kernel.shape, (1, 3, 1, 1), 2, 1, "circular")
    grid = host.p2o(params, kernel)
    otf = np.zeros(grid.shape, np.float32)
    otf[..., : kernel_size[0], : kernel_size[1]] = kernel
    ref = np.roll(otf, (-(kernel_size[0] // 2), -(kernel_size[1] // 2)), axis=(-2, -1))
    np.testing.assert_array_equal(grid, ref)


def test_crop_and_output_layout(host):
    params = host.params((1, 2, 4, 3), (1, 2, 3, 3), (1, 2, 1, 1), 2, 2, "circular")
    geo = host.geometry(params)
    assert (geo["Hp"], geo["Wp"], geo["Hs"], geo["Ws"], geo["Wsh"]) == (8, 7, 16, 14, 8)
    xs = np.arange(2 * 16 * 14, dtype=np.float32).reshape(1, 2, 16, 14)
    np.testing.assert_array_equal(host.crop(params, xs, np.float32), xs[..., 4:12, 4:10])
    np.testing.assert_array_equal(host.crop(params, xs, np.float16), xs[..., 4:12, 4:10].astype(np.float16))


@pytest.mark.parametrize("scale", [1, 3])
def test_float16_io(host, scale):
    """FP16 x / kernel / lam in, FP16 out, the math in FP32 (as torch does for half inputs)."""
    rng = np.random.default_rng(16)
    x, kernel, lam = _inputs(rng, 2, 3, 9, 8, (5, 5), 1, 2, dtype=np.float16)
    out = host(x, kernel, lam, scale, 2, "reflect")
    assert out.dtype == np.float16
    ref = converse2d(*(torch.from_numpy(a) for a in (x, kernel, lam)), scale, 2, "reflect").numpy()
    assert ref.dtype == np.float16
    ref32 = converse2d(*_torch64(x, kernel, lam), scale, 2, "reflect").numpy()
    # Both round an FP32 result to FP16: at most one half-ulp apart beyond FP32 noise.
    assert np.abs(out.astype(np.float32) - ref.astype(np.float32)).max() <= 2e-3 * np.abs(ref32).max()
    assert _rel_err(out, ref32) < 2e-3
    # Mixed: FP16 x with FP32 kernel and lam.
    mixed = host(x, kernel.astype(np.float32), lam.astype(np.float32), scale, 2, "reflect")
    assert mixed.dtype == np.float16 and _rel_err(mixed, ref32) < 2e-3


def test_half_conversions_match_numpy(host):
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    got = host.half_bits_to_float(bits)
    ref = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), ref[~nan].view(np.uint32))

    rng = np.random.default_rng(1)
    values = np.concatenate([
        rng.standard_normal(20000).astype(np.float32) * np.float32(2.0) ** rng.integers(-30, 18, 20000),
        got[~nan],  # every half value exactly
        (got[~nan][:-1] + got[~nan][1:]) / 2,  # ties between neighbours (round to even)
        np.array([0.0, -0.0, np.inf, -np.inf, 65504, 65519.99, 65520, 1e-8, 2.0**-25, 2.0**-24, 3 * 2.0**-26,
                  6.1e-5, 5.96e-8], np.float32),
    ]).astype(np.float32)
    values = values[np.isfinite(values) | np.isinf(values)]
    with np.errstate(over="ignore", invalid="ignore"):
        ref_bits = values.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(host.float_to_half_bits(values), ref_bits)
    assert np.isnan(host.half_bits_to_float(host.float_to_half_bits(np.array([np.nan], np.float32))))[0]


def test_rejects_bad_shapes(host):
    x = np.zeros((2, 3, 4, 4), np.float32)
    lam = np.ones((1, 3, 1, 1), np.float32)
    with pytest.raises(ValueError, match="larger than the padded, upsampled grid"):
        host(x, np.zeros((1, 3, 9, 3), np.float32), lam, 2, 0)
    with pytest.raises(ValueError, match="kernel must be"):
        host(x, np.zeros((3, 3, 3, 3), np.float32), lam, 1, 0)
    with pytest.raises(ValueError, match="lam must be"):
        host(x, np.zeros((1, 3, 3, 3), np.float32), np.ones((3, 3, 1, 1), np.float32), 1, 0)
    # The kernel may exceed the low-resolution image when it fits the upsampled grid (as restormer_deploy.restormer.ops).
    out = host(x, np.full((1, 3, 7, 7), 1 / 49, np.float32), lam, 2, 0)
    assert out.shape == (2, 3, 8, 8)


# --------------------------------------------------------------------------------------------
# The workspace reserved per profile (converse2d_workspace.h), with a model of cuFFT's work areas


def _smooth(n):
    for p in (2, 3, 5, 7):
        while n % p == 0:
            n //= p
    return n == 1


def _model_length(n):
    """Elements a transform of length n works on: n, or Bluestein's doubled power of two ≥ 2n − 1
    when n has a prime factor above 7 (so the work area is not monotone in n, as cuFFT's)."""
    return n if _smooth(n) else 2 * (1 << (2 * n - 2).bit_length())


def _model_work(n, c, hp, wp, bk, hs, ws):
    """The three plans' largest work area: 8 bytes per element of the batch's 2-D grid."""
    return 8 * max(n * c * _model_length(hp) * _model_length(wp), bk * c * _model_length(hs) * _model_length(ws),
                   n * c * _model_length(hs) * _model_length(ws))


@pytest.mark.parametrize("scale,padding", [(1, 0), (2, 2), (3, 1)])
def test_profile_workspace_covers_the_profile(host, scale, padding):
    """For a work area that is a product of per-axis costs (here non-monotone, Bluestein-like), the
    budget the plugin reserves for a profile is what the worst shape of the profile needs: at least
    every shape's need, and equal to the buffers at the largest shape plus the largest work area."""
    n_max, c, (h_lo, h_hi), (w_lo, w_hi) = 2, 3, (40, 72), (30, 50)
    largest = host.params((n_max, c, h_hi, w_hi), (n_max, c, 5, 5), (1, c, 1, 1), scale, padding, "reflect")
    budget = host.profile_workspace(largest, (h_lo, w_lo), lambda length: 8 * _model_length(length), _model_work)

    def geometry(n, bk, h, w):
        params = host.params((n, c, h, w), (bk, c, 5, 5), (1, c, 1, 1), scale, padding, "reflect")
        g = host.geometry(params)
        return params, _model_work(n, c, g["Hp"], g["Wp"], bk, g["Hs"], g["Ws"])

    worst = 0
    for h in range(h_lo, h_hi + 1):
        for w in range(w_lo, w_hi + 1):
            for n, bk in [(1, 1), (2, 1), (2, 2)]:
                params, work = geometry(n, bk, h, w)
                assert host.workspace_need(params, work) <= budget, (n, bk, h, w)
                if (n, bk) == (2, 2):
                    worst = max(worst, work)
    assert budget == host.workspace_need(largest, worst)
    # The model is not monotone over the range: smaller sizes need more than the largest.
    assert max(map(_model_length, range(h_lo, h_hi + 1))) > _model_length(h_hi)


def test_profile_workspace_probes_few_shapes(host):
    """The work area is measured on a few shapes (plans are made for each), not the whole range."""
    calls = []

    def work(*dims):
        calls.append(dims)
        return _model_work(*dims)

    largest = host.params((1, 3, 1024, 1024), (1, 3, 9, 9), (1, 3, 1, 1), 2, 4, "circular")
    host.profile_workspace(largest, (64, 64), lambda length: 8 * _model_length(length), work)
    assert 1 <= len(calls) <= 81


# --------------------------------------------------------------------------------------------
# Compilation of the GPU sources


def _run(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def nvcc():
    path = c2d_host.find_nvcc()
    if path is None:
        pytest.skip("nvcc not found (set NVCC or CUDA_HOME, or put nvcc on PATH)")
    return path


def test_nvcc_compiles_kernels(nvcc, tmp_path):
    """converse2d_kernels.cu as an object file for sm_75 and sm_90 (or the newest arch this nvcc has)."""
    offered = c2d_host.nvcc_archs(nvcc)
    archs = [a for a in (75, 90) if a in offered] or sorted(offered)[-1:]
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    out = tmp_path / "kernels.o"
    _run([nvcc, "-std=c++17", "-c", PLUGIN_DIR / "converse2d_kernels.cu", *gencode, "-Xcompiler=-Wall,-Wextra",
          "-Werror", "all-warnings", "-o", out], tmp_path)
    assert out.stat().st_size > 0


@pytest.mark.parametrize("source", ["converse2d_runner.cpp", "converse2d_runner_check.cpp"])
def test_nvcc_compiles_cufft_pipeline(nvcc, tmp_path, source):
    """converse2d_runner.cpp (cuFFT plans, workspace, launches) and the driver gpu_check.sh builds
    from it, as object files."""
    cufft = c2d_host.find_cufft_include(nvcc)
    if cufft is None:
        pytest.skip("cufft.h not found (pip install nvidia-cufft, or set CUFFT_INCLUDE_DIR)")
    out = tmp_path / "runner.o"
    _run([nvcc, "-std=c++17", "-c", PLUGIN_DIR / source, f"-I{cufft}", "-Xcompiler=-Wall,-Wextra,-Werror", "-o", out],
         tmp_path)
    assert out.stat().st_size > 0


def test_plugin_compiles_against_tensorrt(tmp_path):
    """The IPluginV3 classes against the TensorRT headers in $TENSORRT_INCLUDE_DIR (syntax only)."""
    trt = os.environ.get("TENSORRT_INCLUDE_DIR")
    if not trt or not (Path(trt) / "NvInferRuntime.h").is_file():
        pytest.skip("TENSORRT_INCLUDE_DIR is not set to a directory with NvInferRuntime.h")
    compiler = c2d_host.find_compiler()
    if compiler is None:
        pytest.skip("no C++ compiler")
    nvcc = c2d_host.find_nvcc()
    cuda_inc = c2d_host.cuda_include_dir(nvcc)
    cufft = c2d_host.find_cufft_include(nvcc)
    if cuda_inc is None or cufft is None:
        pytest.skip("the CUDA runtime headers or cufft.h were not found (needed by the TensorRT headers)")
    for source in ("converse2d_plugin.cpp", "converse2d_runner.cpp"):
        _run([compiler, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-isystem", trt,
              "-isystem", cuda_inc, "-isystem", cufft, PLUGIN_DIR / source], tmp_path)


# (N, C, H, W, Bk, kh, kw, Bl, scale, padding, mode, half): run on the GPU when there is one.
GPU_CASES = [
    (1, 1, 40, 36, 1, 7, 7, 1, 1, 6, "circular", 0),  # Converse-DnCNN-like
    (2, 3, 17, 22, 2, 5, 4, 2, 2, 3, "reflect", 0),  # per-sample kernel and lam, odd sizes
    (2, 2, 15, 16, 1, 9, 9, 2, 3, 2, "replicate", 1),  # FP16 x / output
    (1, 2, 12, 10, 1, 5, 5, 1, 4, 0, "constant", 0),  # no padding: C2R straight into the output
]


def test_plugin_library_builds_and_selftests(tmp_path):
    """With TENSORRT_INCLUDE_DIR set: the CMake build of the plugin library (PTX for compute_75
    only, to keep it short), then converse2d_selftest.cpp linked against it: the creator, fields,
    serialization, format combinations and error paths; on a machine with a GPU also the plugin's
    enqueue against restormer_deploy.restormer.ops."""
    trt = os.environ.get("TENSORRT_INCLUDE_DIR")
    if not trt or not (Path(trt) / "NvInferRuntime.h").is_file():
        pytest.skip("TENSORRT_INCLUDE_DIR is not set to a directory with NvInferRuntime.h")
    nvcc, cmake, compiler = c2d_host.find_nvcc(), shutil.which("cmake"), c2d_host.find_compiler()
    if not (nvcc and cmake and compiler):
        pytest.skip("needs nvcc, cmake and a C++ compiler")
    cuda_inc = c2d_host.cuda_include_dir(nvcc)
    cufft_inc = c2d_host.find_cufft_include(nvcc)
    cufft_lib = c2d_host.find_cufft_library(cufft_inc)
    cuda_lib = c2d_host.cuda_library_dir(cuda_inc)
    if not (cuda_inc and cufft_inc and cufft_lib and cuda_lib):
        pytest.skip("CUDA runtime or cuFFT headers/libraries not found")
    build = tmp_path / "build"
    _run([cmake, "-S", PLUGIN_DIR, "-B", build, f"-DTENSORRT_INCLUDE_DIR={trt}", f"-DCMAKE_CUDA_COMPILER={nvcc}",
          "-DCMAKE_CUDA_ARCHITECTURES=75-virtual", f"-DCUFFT_INCLUDE_DIR={cufft_inc}",
          f"-DCUFFT_LIBRARY={cufft_lib}"], tmp_path)
    _run([cmake, "--build", build, "-j2"], tmp_path)
    selftest = tmp_path / "converse2d_selftest"
    _run([compiler, "-std=c++17", "-O1", "-I", PLUGIN_DIR, "-isystem", trt, "-isystem", cuda_inc,
          PLUGIN_DIR / "converse2d_selftest.cpp", "-o", selftest, f"-L{build}", "-lconverse2d_plugin",
          f"-L{cuda_lib}", "-lcudart", f"-Wl,-rpath,{build}:{cuda_lib}:{cufft_lib.parent}"], tmp_path)
    assert "selftest OK" in _run([selftest], tmp_path).stdout

    for i, case in enumerate(GPU_CASES):
        n, c, h, w, bk, kh, kw, bl, scale, padding, mode, half = case
        rng = np.random.default_rng(i)
        x, kernel, lam = _inputs(rng, n, c, h, w, (kh, kw), bk, bl)
        header = np.array([n, c, h, w, bk, kh, kw, bl, scale, padding, MODES.index(mode), half], np.int64)
        (tmp_path / "case.bin").write_bytes(header.tobytes() + x.tobytes() + kernel.tobytes() + lam.tobytes())
        stdout = _run([selftest, tmp_path / "case.bin", tmp_path / "out.bin"], tmp_path).stdout
        if "gpu: no CUDA device" in stdout:
            return  # no GPU here: the host checks above are what could be run
        out = np.fromfile(tmp_path / "out.bin", np.float32).reshape(n, c, h * scale, w * scale)
        if half:
            x = x.astype(np.float16)
        ref = converse2d(*_torch64(x, kernel, lam), scale, padding, mode).numpy()
        assert _rel_err(out, ref) < (2e-3 if half else 1e-4), case
