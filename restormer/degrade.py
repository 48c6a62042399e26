"""Synthetic degradations of the official ConverseNet test scripts, and the ``--degrade`` SPEC.

SPEC grammar (SIGMA on the 0-255 scale, float >= 0; SCALE an integer >= 2)::

    noise:SIGMA                          Gaussian noise on [0, 1] floats, unclipped
    sr:SCALE                             MATLAB bicubic downsampling, PSNR on Y, SCALE px shaved
    blur:KERNELFILE[:INDEX][+noise:SIGMA]  circular blur of the uint8 image, then noise (default 0)

Any SPEC may end in ``+quantize``: the network input is then clipped to [0, 1] and rounded to the
image's bit depth, as in a degraded image saved to a file (real noisy files are clipped 8-bit
images). Without it the input stays float, unclipped: the papers' protocol.

KERNELFILE is .npy, .mat (MATLAB v5 or v7.3, key ``kernels``) or .png. INDEX is a 0-based index
into the file's stack of kernels (axis 0 of a 3-D .npy; the MATLAB cell ``kernels{INDEX+1}``);
files holding a single kernel need no INDEX.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from scipy import ndimage

SPEC_GRAMMAR = "noise:SIGMA | sr:SCALE | blur:KERNELFILE[:INDEX][+noise:SIGMA], optionally ending in +quantize"
QUANTIZE = "+quantize"

# --------------------------------------------------------------------------- MATLAB imresize


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax ** 2, ax ** 3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _resize_matrix(in_len: int, out_len: int, scale: float, antialiasing: bool) -> np.ndarray:
    """Dense (out_len, in_len) float64 matrix of MATLAB imresize weights along one axis."""
    widen = scale < 1 and antialiasing
    width = 4.0 / scale if widen else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in 1-based input coordinates
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if widen else _cubic(dist)
    w /= w.sum(axis=1, keepdims=True)
    # Symmetric boundary (edge pixel repeated), periodic with period 2*in_len as in MATLAB.
    j = (idx.astype(np.int64) - 1) % (2 * in_len)
    j = np.where(j < in_len, j, 2 * in_len - 1 - j)
    mat = np.zeros((out_len, in_len))
    np.add.at(mat, (np.repeat(np.arange(out_len), taps), j.ravel()), w.ravel())
    return mat


def imresize(img: np.ndarray, scale: float, antialiasing: bool = True) -> np.ndarray:
    """MATLAB-compatible bicubic ``imresize`` of an HxW or HxWxC float image.

    Output size ceil(H*scale) x ceil(W*scale), float32, neither clipped nor rounded.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize needs an HxW or HxWxC image, got shape {img.shape}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    h, w = img.shape[:2]
    out_h, out_w = math.ceil(h * scale), math.ceil(w * scale)
    rows = _resize_matrix(h, out_h, scale, antialiasing)
    cols = _resize_matrix(w, out_w, scale, antialiasing)
    x = img.astype(np.float64).reshape(h, w, -1)
    x = (rows @ x.reshape(h, -1)).reshape(out_h, w, -1)  # along H
    x = (x.transpose(0, 2, 1) @ cols.T).transpose(0, 2, 1)  # along W
    return np.ascontiguousarray(x.reshape(out_h, out_w, *img.shape[2:]), dtype=np.float32)


# --------------------------------------------------------------------------- simple ops


def modcrop(img: np.ndarray, m: int) -> np.ndarray:
    """Crop the bottom/right so that H and W are multiples of ``m``."""
    if m < 1:
        raise ValueError(f"modcrop multiple must be >= 1, got {m}")
    h, w = img.shape[:2]
    return img[:h - h % m, :w - w % m]


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Central size x size crop (top-left at ((H-size)//2, (W-size)//2))."""
    h, w = img.shape[:2]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from a {h}x{w} image")
    top, left = (h - size) // 2, (w - size) // 2
    return img[top:top + size, left:left + size]


def add_gaussian_noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """img + N(0, sigma/255), as ``np.random.seed(seed); img += np.random.normal(...)``.

    The draw has the image's shape (HxWxC), so the layout decides which pixel gets which value.
    Result float32, unclipped.
    """
    noise = np.random.RandomState(seed).normal(0, sigma / 255.0, img.shape)
    return (img + noise).astype(np.float32)


def blur_wrap(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Circular convolution of each channel of an HxWxC image; keeps the input dtype.

    For integer images scipy truncates the result toward zero (not rounded), as in the official
    script.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if img.ndim == 3:
        kernel = kernel[..., None]
    return ndimage.convolve(img, kernel, mode="wrap")


# --------------------------------------------------------------------------- kernels


def load_kernel(path, index: int | None = None) -> np.ndarray:
    """A 2-D float64 blur kernel from .npy, .mat (v5 or v7.3) or .png; ``index`` is 0-based."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"kernel file not found: {path}")
    if index is not None and (isinstance(index, bool) or int(index) != index or index < 0):
        raise ValueError(f"{path}: kernel index must be a non-negative integer, got {index!r}")
    ext = path.suffix.lower()
    if ext == ".npy":
        kernels = np.load(path, allow_pickle=False)
        kernels = [kernels] if kernels.ndim != 3 else list(kernels)
    elif ext == ".mat":
        kernels = _mat_kernels_hdf5(path) if h5py.is_hdf5(path) else _mat_kernels_v5(path)
    elif ext == ".png":
        from restormer_deploy.restormer.imageio import read_image
        kernels = [read_image(path, channels=1)[..., 0]]
    else:
        raise ValueError(f"{path}: unsupported kernel file type {ext!r} (use .npy, .mat or .png)")

    if index is None:
        if len(kernels) != 1:
            raise ValueError(f"{path} holds {len(kernels)} kernels: give an index 0..{len(kernels) - 1}")
        kernel = kernels[0]
    elif index >= len(kernels):
        raise ValueError(f"{path}: kernel index {index} out of range (the file holds {len(kernels)})")
    else:
        kernel = kernels[index]
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.size == 0:
        raise ValueError(f"{path}: expected a 2-D kernel, got shape {kernel.shape}")
    _check_kernel(path, kernel)
    return kernel / kernel.sum() if ext == ".png" else kernel  # pixel values: normalise


def _check_kernel(path: Path, kernel: np.ndarray) -> None:
    if not np.isfinite(kernel).all():
        raise ValueError(f"{path}: kernel has non-finite values")
    total = kernel.sum()
    if not (np.isfinite(total) and total > 0):
        raise ValueError(f"{path}: kernel sums to {total:g}, not a blur (all zero or negative)")


def _mat_kernels_v5(path: Path) -> list[np.ndarray]:
    data = scipy.io.loadmat(path)
    if "kernels" not in data:
        found = ", ".join(k for k in data if not k.startswith("__"))
        raise ValueError(f"{path}: no variable 'kernels' (found: {found})")
    var = data["kernels"]
    if var.dtype == object:  # cell array; MATLAB linear indexing is column-major
        return [np.asarray(c) for c in var.ravel(order="F")]
    if var.ndim == 3:  # numeric h x w x N stack, MATLAB style
        return [var[:, :, i] for i in range(var.shape[2])]
    return [var]


def _mat_kernels_hdf5(path: Path) -> list[np.ndarray]:
    # HDF5 stores MATLAB's column-major arrays with reversed dimensions: transpose every kernel.
    with h5py.File(path, "r") as f:
        if "kernels" not in f:
            found = ", ".join(k for k in f if not k.startswith("#"))
            raise ValueError(f"{path}: no variable 'kernels' (found: {found})")
        ds = f["kernels"]
        if h5py.check_dtype(ref=ds.dtype) is not None:  # cell array of object references
            return [np.asarray(f[ref][()]).T for ref in ds[()].ravel()]
        var = ds[()]
    if var.ndim == 3:  # MATLAB h x w x N is stored N x w x h
        return [k.T for k in var]
    return [var.T]


# --------------------------------------------------------------------------- degradations


@dataclass(frozen=True, eq=False)
class Sample:
    """One degraded test pair: network input and the ground truth to score against."""

    lq: np.ndarray            # float32 HxWxC in ~[0, 1], the network input
    gt: np.ndarray            # uint HxWxC ground truth
    kernel: np.ndarray | None  # float32 2-D blur kernel, or None
    border: int               # pixels shaved on every side before PSNR/SSIM
    y_channel: bool           # score on the Y channel (RGB only)


def _as_hwc(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a uint8/uint16 HxWxC image, got {img.dtype} {img.shape}")
    return img


def _to_float(img: np.ndarray) -> np.ndarray:
    # float64 division then cast, as the official uint2single (np.float32(img / 255.)).
    return np.float32(img / (255.0 if img.dtype == np.uint8 else 65535.0))


class Degradation:
    """Base class: ``apply(gt, seed) -> Sample`` and ``describe() -> str``. Subclasses are dataclasses
    with a ``quantize`` field (the SPEC's ``+quantize``)."""

    quantize: bool = False

    def apply(self, gt: np.ndarray, seed: int) -> Sample:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def as_saved(self) -> "Degradation":
        """The same degradation with the input quantized as a saved file is."""
        return dataclasses.replace(self, quantize=True)

    def protocol(self, spec: str) -> str:
        """The label of what the network gets: the papers' float input or a saved file's."""
        base = spec.strip().removesuffix(QUANTIZE)
        if self.quantize:
            return f"{base}{QUANTIZE}, input clipped and rounded to the image's bit depth (as saved files)"
        return f"{base}, unclipped float input (the papers' protocol; {base}{QUANTIZE} scores saved files)"

    def _input(self, lq: np.ndarray, gt: np.ndarray) -> np.ndarray:
        if not self.quantize:
            return lq
        peak = 255.0 if gt.dtype == np.uint8 else 65535.0
        return _to_float(np.rint(np.clip(lq, 0, 1) * peak).astype(gt.dtype))

    def _quantized_note(self) -> str:
        return ", input clipped and rounded to the image's bit depth" if self.quantize else ""


@dataclass(frozen=True)
class GaussianNoise(Degradation):
    sigma: float
    quantize: bool = False

    def apply(self, gt, seed):
        gt = _as_hwc(gt)
        return Sample(self._input(add_gaussian_noise(_to_float(gt), self.sigma, seed), gt), gt, None, 0, False)

    def describe(self):
        clipping = "clipped and rounded to the image's bit depth" if self.quantize else "unclipped"
        return f"Gaussian noise sigma {self.sigma:g}/255, {clipping}, seeded per image"


@dataclass(frozen=True)
class BicubicSR(Degradation):
    scale: int
    quantize: bool = False

    def apply(self, gt, seed):
        gt = modcrop(_as_hwc(gt), self.scale)
        lq = imresize(_to_float(gt), 1 / self.scale)
        return Sample(self._input(lq, gt), gt, None, self.scale, gt.shape[2] == 3)

    def describe(self):
        return f"bicubic x{self.scale} (MATLAB imresize){self._quantized_note()}, PSNR/SSIM on Y, {self.scale} px shaved"


@dataclass(frozen=True)
class BlurNoise(Degradation):
    kernel_file: str
    index: int | None
    sigma: float
    kernel: np.ndarray = field(compare=False, repr=False)
    quantize: bool = False

    def apply(self, gt, seed):
        gt = modcrop(_as_hwc(gt), 8)
        lq = add_gaussian_noise(_to_float(blur_wrap(gt, self.kernel)), self.sigma, seed)
        return Sample(self._input(lq, gt), gt, self.kernel.astype(np.float32), 1, False)

    def describe(self):
        at = "" if self.index is None else f"[{self.index}]"
        return (f"circular blur with {Path(self.kernel_file).name}{at} "
                f"({self.kernel.shape[0]}x{self.kernel.shape[1]}), noise sigma {self.sigma:g}/255{self._quantized_note()}, "
                "crop to a multiple of 8, 1 px shaved")


def _bad_spec(spec: str, why: str) -> ValueError:
    return ValueError(f"bad degradation {spec!r}: {why}; expected {SPEC_GRAMMAR}")


def _parse_sigma(spec: str, text: str) -> float:
    try:
        sigma = float(text)
    except ValueError:
        raise _bad_spec(spec, f"SIGMA {text!r} is not a number") from None
    if not math.isfinite(sigma) or sigma < 0:
        raise _bad_spec(spec, f"SIGMA must be a finite number >= 0, got {text!r}")
    return sigma


def parse_degradation(spec: str) -> Degradation:
    """Parse a SPEC (grammar in the module docstring); the blur kernel is loaded here."""
    text = spec.strip()
    if text.endswith(QUANTIZE):
        return parse_degradation(text.removesuffix(QUANTIZE)).as_saved()
    kind, sep, rest = text.partition(":")
    if not sep or not rest:
        raise _bad_spec(spec, "missing ':' and argument")
    if kind == "noise":
        return GaussianNoise(_parse_sigma(spec, rest))
    if kind == "sr":
        if not re.fullmatch(r"\d+", rest) or int(rest) < 2:
            raise _bad_spec(spec, f"SCALE must be an integer >= 2, got {rest!r}")
        return BicubicSR(int(rest))
    if kind == "blur":
        kernel_part, plus, noise_part = rest.rpartition("+noise:")
        if not plus:
            kernel_part, noise_part = rest, "0"
        elif "+" in noise_part or ":" in noise_part:
            raise _bad_spec(spec, f"unexpected text after '+noise:' ({noise_part!r})")
        sigma = _parse_sigma(spec, noise_part)
        # Split INDEX off the right so that paths with ':' (e.g. C:\...) keep working.
        path, colon, idx = kernel_part.rpartition(":")
        if colon and re.fullmatch(r"\d+", idx):
            index = int(idx)
        elif colon and len(path) > 1 and not re.search(r"[/\\]", idx):  # not a drive letter / path
            raise _bad_spec(spec, f"INDEX must be a non-negative integer, got {idx!r}")
        else:
            path, index = kernel_part, None
        if not path:
            raise _bad_spec(spec, "missing KERNELFILE")
        if "+" in Path(path).suffix:
            raise _bad_spec(spec, f"only '+noise:SIGMA' may follow the kernel, got {path!r}")
        try:
            kernel = load_kernel(path, index)
        except ValueError as exc:  # a missing file stays FileNotFoundError
            raise _bad_spec(spec, str(exc)) from None
        return BlurNoise(path, index, sigma, kernel)
    raise _bad_spec(spec, f"unknown kind {kind!r}")
