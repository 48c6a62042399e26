"""PSNR, SSIM and the Y channel, as in the official ConverseNet/KAIR test scripts.

Images are on the [0, 255] scale (uint8, or float holding such values), HxW or HxWxC.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

# MATLAB rgb2ycbcr, Y row (ITU-R BT.601, studio swing).
_Y_COEFFS = np.array([65.481, 128.553, 24.966])


def _shaved_pair(a, b, border: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {a.shape}")
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    h, w = a.shape[:2]
    if h <= 2 * border or w <= 2 * border:
        raise ValueError(f"border {border} leaves nothing of a {h}x{w} image")
    return a[border:h - border, border:w - border], b[border:h - border, border:w - border]


def psnr(a, b, border: int = 0, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB after shaving ``border`` pixels; inf when identical."""
    a, b = _shaved_pair(a, b, border)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse == 0:
        return math.inf
    return float(20 * math.log10(peak / math.sqrt(mse)))


def ssim(a, b, border: int = 0) -> float:
    """MATLAB-style SSIM (11x11 Gaussian window, sigma 1.5) averaged over the valid region.

    For several channels: the mean of the per-channel SSIMs.
    """
    a, b = _shaved_pair(a, b, border)
    if a.ndim == 3 and a.shape[2] == 1:
        a, b = a[..., 0], b[..., 0]
    # skimage crops (win_size - 1) // 2 = 5 pixels before averaging: the official "valid" region.
    return float(structural_similarity(
        a.astype(np.float64), b.astype(np.float64),
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
        K1=0.01, K2=0.03, channel_axis=-1 if a.ndim == 3 else None,
    ))


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y of MATLAB ``rgb2ycbcr`` for an HxWx3 RGB image, HxW result.

    uint8 in [0, 255]: rounded uint8 in [16, 235]. Float in [0, 1]: unrounded, same dtype, in
    [16/255, 235/255]. The input is not modified (the official function scales floats in place).
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return np.round(np.dot(img, _Y_COEFFS) / 255.0 + 16.0).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        # Same operation order as the official code: scale in the input precision, dot in float64.
        scaled = img * img.dtype.type(255.0)
        return ((np.dot(scaled, _Y_COEFFS) / 255.0 + 16.0) / 255.0).astype(img.dtype)
    raise TypeError(f"rgb_to_y supports uint8 or float images, got {img.dtype}")


def _to_255(img: np.ndarray) -> np.ndarray:
    """uint8 as is; uint16 rescaled to the 0-255 scale (float64); floats are taken as 0-255 already."""
    if img.dtype == np.uint16:
        return img.astype(np.float64) * (255.0 / 65535.0)
    return img


def task_scores(restored, gt, *, border: int = 0, y_channel: bool = False, with_ssim: bool = True) -> tuple[float, float]:
    """PSNR and SSIM of a restored image against its ground truth, as the papers' test scripts.

    Both uint8 or uint16 (HxW or HxWxC; 16-bit is scored on the 0-255 scale); ``border`` pixels
    shaved; ``y_channel``: on the Y of MATLAB ``rgb2ycbcr`` for RGB images (rounded for uint8, as the
    official code). SSIM is NaN where it is not asked for or the image is smaller than its window.
    """
    restored, gt = np.asarray(restored), np.asarray(gt)
    if restored.shape != gt.shape:
        raise ValueError(f"ground truth is {gt.shape[1]}x{gt.shape[0]}, the output "
                         f"{restored.shape[1]}x{restored.shape[0]}")
    if y_channel and restored.ndim == 3 and restored.shape[2] == 3:
        if restored.dtype == np.uint16:
            restored, gt = (rgb_to_y(x.astype(np.float64) / 65535.0) * 255.0 for x in (restored, gt))
        else:
            restored, gt = rgb_to_y(restored), rgb_to_y(gt)
    a, b = _to_255(restored), _to_255(gt)
    value = psnr(a, b, border)
    small = min(a.shape[:2]) - 2 * border < 7
    return value, (ssim(a, b, border) if with_ssim and not small else float("nan"))


PSNR_CAP = 200.0  # identical outputs (JSON has no inf)


def psnr_peak1(a, b) -> float:
    """PSNR with peak 1.0 on float outputs clamped to [0, 1] (artefact against reference); capped at 200 dB."""
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1).astype(np.float64)) ** 2))
    return PSNR_CAP if mse <= 10 ** (-PSNR_CAP / 10) else float(10 * np.log10(1.0 / mse))
