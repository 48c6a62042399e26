"""Host build of the Converse2D plugin's arithmetic, and helpers to find the CUDA tool chain.

The element functions of ``converse2d_kernels.h`` (padding, p2o kernel placement, the spectral
solve with the transfer function G, cropping, float16 conversion) are compiled for the CPU with
g++ into a small C-ABI library (``converse2d_host.cpp``). :class:`HostConverse2D` drives it from
numpy, with numpy's pocketfft doing the FFTs in cuFFT's layout: R2C spectra one-sided along the
last axis (W/2 + 1), forward unnormalised, and the inverse unnormalised too (``norm="forward"``),
as cuFFT's C2R; the solve divides by H·W itself, as on the GPU.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

PLUGIN_DIR = Path(__file__).resolve().parent
HOST_SOURCE = PLUGIN_DIR / "converse2d_host.cpp"
PADDING_MODES = {"circular": 0, "reflect": 1, "replicate": 2, "constant": 3, "zeros": 3}
_GEOMETRY_ERRORS = {
    -1: "invalid scale, padding or padding_mode",
    -2: "x has an empty dimension",
    -3: "kernel must be (1 or N, C, kh, kw)",
    -4: "lam must be (1 or N, C, 1, 1)",
    -5: "the kernel is larger than the padded, upsampled grid",
    -6: "the work-area model failed",
}
# Callbacks of c2d_profile_workspace: length -> bytes; (N, C, Hp, Wp, Bk, Hs, Ws) -> bytes.
LENGTH_COST = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_int64)
FFT_WORK = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_uint64))


# --------------------------------------------------------------------------------------------
# Tool chain


def find_compiler() -> str | None:
    """A C++17 compiler for the host build: $CXX, else g++, c++ or clang++ on PATH."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def build_host_library(out_dir: str | os.PathLike, compiler: str | None = None) -> Path:
    """Compile ``converse2d_host.cpp`` into ``out_dir/libconverse2d_host.so``; returns its path."""
    compiler = compiler or find_compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    out = Path(out_dir) / "libconverse2d_host.so"
    cmd = [compiler, "-std=c++17", "-O2", "-Wall", "-Wextra", "-shared", "-fPIC", "-fvisibility=hidden",
           str(HOST_SOURCE), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return out


def find_nvcc() -> str | None:
    """nvcc from $NVCC, $CUDA_HOME/bin, $CUDA_PATH/bin or PATH."""
    candidates = [os.environ.get("NVCC")]
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(str(Path(os.environ[var]) / "bin" / "nvcc"))
    candidates.append(shutil.which("nvcc"))
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def nvcc_version(nvcc: str) -> tuple[int, int] | None:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def nvcc_archs(nvcc: str) -> set[int]:
    """The sm_XY numbers this nvcc can compile for."""
    out = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True).stdout
    return {int(m) for m in re.findall(r"compute_(\d+)", out)}


def cuda_include_dir(nvcc: str | None = None) -> Path | None:
    """The CUDA toolkit's include directory (cuda_runtime_api.h), found through nvcc's own setup
    (``nvcc --dryrun`` prints TOP), so that a wrapper script on PATH still works."""
    candidates: list[Path] = []
    nvcc = nvcc or find_nvcc()
    if nvcc:
        with _tempdir() as tmp:
            src = Path(tmp) / "probe.cu"
            src.write_text("\n")
            proc = subprocess.run([nvcc, "--dryrun", "-c", str(src)], capture_output=True, text=True, cwd=tmp)
        text = proc.stdout + proc.stderr
        top = re.search(r"^#\$ TOP=(.*)$", text, re.M)
        target = re.search(r"^#\$ _TARGET_DIR_=(\S+)$", text, re.M)
        if top:
            root = Path(top.group(1).strip())
            candidates.append(root / "include")
            if target:
                candidates.append(root / target.group(1) / "include")
        candidates.append(Path(nvcc).resolve().parent.parent / "include")
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]) / "include")
    candidates.append(Path("/usr/local/cuda/include"))
    for c in candidates:
        if (c / "cuda_runtime_api.h").is_file():
            return c.resolve()
    return None


def find_cufft_include(nvcc: str | None = None) -> Path | None:
    """cufft.h: $CUFFT_INCLUDE_DIR, the pip package ``nvidia-cufft`` (``nvidia/cu13/include`` for
    CUDA 13, ``nvidia/cufft/include`` for CUDA 12), or the CUDA toolkit's include directory."""
    candidates: list[Path] = []
    if os.environ.get("CUFFT_INCLUDE_DIR"):
        candidates.append(Path(os.environ["CUFFT_INCLUDE_DIR"]))
    nvcc = nvcc or find_nvcc()
    major = (nvcc_version(nvcc) or (None,))[0] if nvcc else None
    try:
        import nvidia  # namespace package of the pip CUDA libraries

        roots = [Path(p) for p in nvidia.__path__]
    except ImportError:
        roots = []
    pip_dirs = []
    for root in roots:
        pip_dirs += [root / f"cu{major}" / "include"] if major else []
        pip_dirs += sorted(root.glob("cu*/include"), reverse=True) + [root / "cufft" / "include"]
    candidates += pip_dirs
    cuda_inc = cuda_include_dir(nvcc)
    if cuda_inc:
        candidates.append(cuda_inc)
    for c in candidates:
        if (c / "cufft.h").is_file():
            return c.resolve()
    return None


def find_cufft_library(include_dir: Path | None) -> Path | None:
    """libcufft next to a cufft.h directory: ``../lib`` (pip wheel) or ``../lib64`` (toolkit);
    $CUFFT_LIBRARY wins."""
    if os.environ.get("CUFFT_LIBRARY") and Path(os.environ["CUFFT_LIBRARY"]).is_file():
        return Path(os.environ["CUFFT_LIBRARY"])
    if include_dir is None:
        return None
    for lib in ("lib", "lib64"):
        found = sorted(Path(include_dir).parent.joinpath(lib).glob("libcufft.so*"), key=lambda f: len(f.name))
        if found:
            return found[0]
    return None


def cuda_library_dir(include_dir: Path | None) -> Path | None:
    """The CUDA toolkit's library directory (libcudart) beside its include directory."""
    if include_dir is None:
        return None
    for lib in ("lib64", "lib"):
        d = Path(include_dir).parent / lib
        if any(d.glob("libcudart.so*")):
            return d
    return None


class _tempdir:
    def __enter__(self):
        import tempfile

        self._d = tempfile.TemporaryDirectory()
        return self._d.name

    def __exit__(self, *exc):
        self._d.cleanup()


# --------------------------------------------------------------------------------------------
# The host build, driven from numpy


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def _storage(a: np.ndarray) -> tuple[np.ndarray, int]:
    """C-contiguous float32 or float16 array and the host build's type flag (1 = half)."""
    a = np.asarray(a)
    if a.dtype == np.float16:
        return np.ascontiguousarray(a), 1
    return np.ascontiguousarray(a, dtype=np.float32), 0


class HostConverse2D:
    """Converse2D through the plugin's element functions on the CPU (FFTs by numpy).

    ``HostConverse2D(path)(x, kernel, lam, scale, padding, padding_mode)`` takes numpy arrays
    x (N, C, H, W), kernel (1 or N, C, kh, kw), lam (1 or N, C, 1, 1), float32 or float16 each,
    and returns (N, C, H·s, W·s) in x's dtype, as the plugin does.
    """

    def __init__(self, library: str | os.PathLike):
        self.lib = ctypes.CDLL(str(library))
        p, i32, i64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64
        for name, args in {
            "c2d_geometry": [p, p],
            "c2d_pad": [p, p, i32, p],
            "c2d_p2o": [p, p, i32, p],
            "c2d_solve": [p, p, p, p, i32, p],
            "c2d_transfer": [p, p, p, i32, p],
            "c2d_crop": [p, p, p, i32],
            "c2d_profile_workspace": [p, i64, i64, LENGTH_COST, FFT_WORK, p],
            "c2d_workspace_need": [p, ctypes.c_uint64, p],
        }.items():
            fn = getattr(self.lib, name)
            fn.argtypes, fn.restype = args, i32
        for name in ("c2d_float_to_half", "c2d_half_to_float"):
            fn = getattr(self.lib, name)
            fn.argtypes, fn.restype = [p, p, i64], None

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def params(x_shape, kernel_shape, lam_shape, scale, padding, padding_mode) -> np.ndarray:
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {sorted(PADDING_MODES)}, got {padding_mode!r}")
        n, c, h, w = x_shape
        return np.array(
            [n, c, h, w, kernel_shape[0], kernel_shape[-2], kernel_shape[-1], lam_shape[0], scale, padding,
             PADDING_MODES[padding_mode]],
            dtype=np.int64,
        )

    def _check(self, status: int) -> None:
        if status != 0:
            raise ValueError(_GEOMETRY_ERRORS.get(status, f"host build error {status}"))

    def geometry(self, params: np.ndarray) -> dict[str, int]:
        out = np.zeros(10, dtype=np.int64)
        self._check(self.lib.c2d_geometry(_ptr(params), _ptr(out)))
        keys = ("Hp", "Wp", "Hs", "Ws", "Wph", "Wsh", "Hout", "Wout", "transfer_batch", "workspace_bytes")
        return dict(zip(keys, (int(v) for v in out)))

    # -- the steps -----------------------------------------------------------------------------
    def pad(self, params, x) -> np.ndarray:
        g = self.geometry(params)
        x, half = _storage(x)
        y = np.full((params[0], params[1], g["Hp"], g["Wp"]), np.nan, dtype=np.float32)
        self._check(self.lib.c2d_pad(_ptr(params), _ptr(x), half, _ptr(y)))
        return y

    def p2o(self, params, kernel) -> np.ndarray:
        g = self.geometry(params)
        k, half = _storage(kernel)
        grid = np.full((params[4], params[1], g["Hs"], g["Ws"]), np.nan, dtype=np.float32)
        self._check(self.lib.c2d_p2o(_ptr(params), _ptr(k), half, _ptr(grid)))
        return grid

    def kernel_spectrum(self, params, kernel) -> np.ndarray:
        """FK as cuFFT's R2C gives it: (Bk, C, Hs, Ws/2+1) complex64."""
        return np.fft.rfft2(self.p2o(params, kernel)).astype(np.complex64)

    def transfer(self, params, fk, lam) -> np.ndarray:
        g = self.geometry(params)
        lam, half = _storage(lam)
        fk = np.ascontiguousarray(fk, dtype=np.complex64)
        out = np.full((g["transfer_batch"], params[1], g["Hs"], g["Wsh"]), np.nan, dtype=np.complex64)
        self._check(self.lib.c2d_transfer(_ptr(params), _ptr(fk), _ptr(lam), half, _ptr(out)))
        return out

    def solve(self, params, fy, fk, lam) -> np.ndarray:
        g = self.geometry(params)
        lam, half = _storage(lam)
        fy = np.ascontiguousarray(fy, dtype=np.complex64)
        fk = np.ascontiguousarray(fk, dtype=np.complex64)
        z = np.full((params[0], params[1], g["Hs"], g["Wsh"]), np.nan, dtype=np.complex64)
        self._check(self.lib.c2d_solve(_ptr(params), _ptr(fy), _ptr(fk), _ptr(lam), half, _ptr(z)))
        return z

    def crop(self, params, xs, dtype) -> np.ndarray:
        g = self.geometry(params)
        xs = np.ascontiguousarray(xs, dtype=np.float32)
        out = np.empty((params[0], params[1], g["Hout"], g["Wout"]), dtype=dtype)
        self._check(self.lib.c2d_crop(_ptr(params), _ptr(xs), _ptr(out), 1 if out.dtype == np.float16 else 0))
        return out

    def __call__(self, x, kernel, lam, scale=1, padding=0, padding_mode="circular") -> np.ndarray:
        x, kernel, lam = np.asarray(x), np.asarray(kernel), np.asarray(lam)
        out_dtype = np.float16 if x.dtype == np.float16 else np.float32
        params = self.params(x.shape, kernel.shape, lam.shape, scale, padding, padding_mode)
        g = self.geometry(params)
        fy = np.fft.rfft2(self.pad(params, x)).astype(np.complex64)  # cuFFT R2C at Hp x Wp
        fk = self.kernel_spectrum(params, kernel)  # cuFFT R2C at Hs x Ws
        z = self.solve(params, fy, fk, lam)  # already divided by Hs * Ws
        xs = np.fft.irfft2(z, s=(g["Hs"], g["Ws"]), norm="forward").astype(np.float32)  # unnormalised C2R
        return self.crop(params, xs, out_dtype)

    # -- workspace -------------------------------------------------------------------------------
    def profile_workspace(self, params, min_hw, length_cost, fft_work) -> int:
        """Workspace bytes the plugin reserves for a profile whose largest shape is ``params`` and
        whose smallest image is ``min_hw``, with cuFFT's work areas given by two Python functions:
        ``length_cost(length)`` (a 1-D estimate) and ``fft_work(N, C, Hp, Wp, Bk, Hs, Ws)`` (the
        largest work area of the shape's three plans)."""
        def work(dims, out):
            out[0] = int(fft_work(*(dims[i] for i in range(7))))
            return 0

        cost_cb, work_cb = LENGTH_COST(lambda n: int(length_cost(n))), FFT_WORK(work)
        out = np.zeros(1, dtype=np.uint64)
        self._check(self.lib.c2d_profile_workspace(_ptr(params), int(min_hw[0]), int(min_hw[1]), cost_cb, work_cb,
                                                   _ptr(out)))
        return int(out[0])

    def workspace_need(self, params, fft_work_bytes: int) -> int:
        """Workspace bytes shape ``params`` needs when its cuFFT plans need ``fft_work_bytes``."""
        out = np.zeros(1, dtype=np.uint64)
        self._check(self.lib.c2d_workspace_need(_ptr(params), int(fft_work_bytes), _ptr(out)))
        return int(out[0])

    # -- float16 conversions of the host build ---------------------------------------------------
    def float_to_half_bits(self, values) -> np.ndarray:
        v = np.ascontiguousarray(values, dtype=np.float32)
        out = np.empty(v.shape, dtype=np.uint16)
        self.lib.c2d_float_to_half(_ptr(v), _ptr(out), v.size)
        return out

    def half_bits_to_float(self, bits) -> np.ndarray:
        b = np.ascontiguousarray(bits, dtype=np.uint16)
        out = np.empty(b.shape, dtype=np.float32)
        self.lib.c2d_half_to_float(_ptr(b), _ptr(out), b.size)
        return out
