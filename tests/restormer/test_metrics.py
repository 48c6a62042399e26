"""restormer_deploy.restormer.metrics against independent references (hand values, the MATLAB formulas)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from restormer_deploy.restormer import metrics

rng = np.random.default_rng(1234)


def test_psnr_hand_values_border_and_errors():
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    b[0, 0] = 16  # mse = 256 / 16 = 16
    assert metrics.psnr(a, b) == pytest.approx(20 * math.log10(255 / 4))
    assert metrics.psnr(a, b, border=1) == math.inf
    assert metrics.psnr(a, a) == math.inf
    c = a.astype(np.float64)
    c[1:3, 1:3] = 2.0  # inside the border: mse = 4 over the 2x2 centre
    assert metrics.psnr(a, c, border=1) == pytest.approx(20 * math.log10(255 / 2))
    assert metrics.psnr(a, b, peak=1.0) == pytest.approx(20 * math.log10(1 / 4))
    # uint8 inputs must not wrap around: 0 - 16 is -16, not 240
    assert metrics.psnr(b, a) == metrics.psnr(a, b)
    with pytest.raises(ValueError):
        metrics.psnr(a, np.zeros((4, 5), np.uint8))


def _ref_ssim_channel(x: np.ndarray, y: np.ndarray) -> float:
    """The MATLAB formula: 11x11 Gaussian (sigma 1.5) window, valid region only."""
    t = np.arange(-5, 6)
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()
    x, y = x.astype(np.float64), y.astype(np.float64)

    def filt(z):
        return ndimage.correlate(z, g, mode="constant")[5:-5, 5:-5]

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
    smap = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return float(smap.mean())


@pytest.mark.parametrize("shape", [(40, 33), (40, 33, 3), (40, 33, 1)])
@pytest.mark.parametrize("border", [0, 4])
def test_ssim_matches_matlab_formula(shape, border):
    a = rng.integers(0, 256, shape).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 20, shape), 0, 255).round().astype(np.uint8)
    h, w = shape[:2]
    ca = a[border:h - border, border:w - border].reshape(h - 2 * border, w - 2 * border, -1)
    cb = b[border:h - border, border:w - border].reshape(h - 2 * border, w - 2 * border, -1)
    ref = np.mean([_ref_ssim_channel(ca[..., i], cb[..., i]) for i in range(ca.shape[2])])
    got = metrics.ssim(a, b, border=border)
    assert got == pytest.approx(ref, abs=1e-10)
    assert 0 < got < 0.99
    assert metrics.ssim(a, a, border=border) == pytest.approx(1.0, abs=1e-12)


def test_rgb_to_y_known_colours():
    colours = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    y = metrics.rgb_to_y(colours)
    assert y.dtype == np.uint8
    assert y.tolist() == [[235, 16, 81, 145, 41]]  # MATLAB rgb2ycbcr
    f = colours.astype(np.float32) / 255
    before = f.copy()
    yf = metrics.rgb_to_y(f)
    assert yf.dtype == np.float32
    np.testing.assert_allclose(yf[0, :2], [235 / 255, 16 / 255], atol=1e-6)
    np.testing.assert_allclose(yf[0, 2], (65.481 + 16) / 255, atol=1e-6)  # unrounded
    np.testing.assert_array_equal(f, before)  # input untouched
