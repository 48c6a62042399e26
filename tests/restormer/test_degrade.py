"""restormer_deploy.restormer.degrade against independent references (plain loops, hand values, scipy): MATLAB imresize,
noise, blur, crops, kernel files, degradation SPECs."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image
from scipy import ndimage

from restormer_deploy.restormer.degrade import (BicubicSR, BlurNoise, GaussianNoise, add_gaussian_noise, blur_wrap,
                               center_crop, imresize, load_kernel, modcrop, parse_degradation)
from restormer_deploy.restormer.presets import shared_dir

KERNELS = shared_dir() / "data" / "kernels"
needs_kernels = pytest.mark.skipif(
    not KERNELS.is_dir(), reason=f"shared kernels not found at {KERNELS} (set RESTORMER_SHARED)")

rng = np.random.default_rng(1234)


# ----------------------------------------------------------------------------- imresize reference

def _keys_cubic(t: float) -> float:
    t = abs(t)
    if t <= 1:
        return 1.5 * t ** 3 - 2.5 * t ** 2 + 1
    if t <= 2:
        return -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2
    return 0.0


def _ref_resize_line(line: np.ndarray, out_len: int, scale: float) -> np.ndarray:
    """MATLAB imresize along one line, written out pixel by pixel (antialiasing on)."""
    aa = scale < 1
    width = 4 / scale if aa else 4
    pad = int(math.ceil(width)) + 4
    padded = np.pad(line.astype(np.float64), pad, mode="symmetric")  # mirror including the edge
    out = np.empty(out_len)
    for i in range(1, out_len + 1):
        centre = i / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of output pixel i
        first = math.floor(centre - width / 2)
        acc = wsum = 0.0
        for k in range(first, first + int(math.ceil(width)) + 2):
            wk = scale * _keys_cubic((centre - k) * scale) if aa else _keys_cubic(centre - k)
            acc += wk * padded[k - 1 + pad]
            wsum += wk
        out[i - 1] = acc / wsum
    return out


def _ref_imresize(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape[:2]
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    x = img.reshape(h, w, -1).astype(np.float64)
    chans = range(x.shape[2])
    tmp = np.stack([[_ref_resize_line(x[:, j, c], oh, scale) for j in range(w)] for c in chans])
    tmp = tmp.transpose(2, 1, 0)  # (oh, w, c)
    out = np.stack([[_ref_resize_line(tmp[i, :, c], ow, scale) for i in range(oh)] for c in chans])
    return out.transpose(1, 2, 0).reshape(oh, ow, *img.shape[2:])


@pytest.mark.parametrize("shape", [(17, 23, 3), (12, 9), (31, 20, 1)])
@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2])
def test_imresize_matches_plain_matlab_algorithm(shape, scale):
    img = rng.random(shape).astype(np.float32)
    out = imresize(img, scale)
    ref = _ref_imresize(img, scale)
    assert out.dtype == np.float32
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)


def test_imresize_sizes_constant_and_ramp():
    assert imresize(np.zeros((17, 23, 3), np.float32), 1 / 3).shape == (6, 8, 3)
    assert imresize(np.zeros((17, 23), np.float32), 2).shape == (34, 46)
    assert imresize(np.zeros((16, 16, 1), np.float32), 1 / 4).shape == (4, 4, 1)
    const = np.full((19, 14, 3), 0.37, np.float32)
    np.testing.assert_allclose(imresize(const, 1 / 4), 0.37, atol=1e-6)
    # Cubic convolution reproduces linear functions: away from the border, output pixel i (1-based)
    # of a x1/2 downscale of ramp f(k) = k samples the input at k = 2i - 0.5.
    ramp = np.tile(np.arange(1, 41, dtype=np.float32)[:, None], (1, 8))
    out = imresize(ramp, 1 / 2)[:, 0]
    i = np.arange(1, 21)
    np.testing.assert_allclose(out[3:-3], (2 * i - 0.5)[3:-3], atol=1e-4)
    # Not clipped: overshoot of a step survives upscaling.
    step = np.zeros((8, 8), np.float32)
    step[:, 4:] = 1
    up = imresize(step, 2)
    assert up.min() < 0 and up.max() > 1


# ----------------------------------------------------------------------------- noise, blur, crops

@pytest.mark.parametrize("shape", [(10, 12, 3), (10, 12, 1)])
def test_gaussian_noise_matches_seeded_numpy_draws(shape):
    img = rng.random(shape).astype(np.float32)
    np.random.seed(seed=7)
    expected = img.copy()
    expected += np.random.normal(0, 50 / 255.0, img.shape)  # the official in-place add
    out = add_gaussian_noise(img, 50, 7)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    assert out.min() < 0 and out.max() > 1  # unclipped
    assert not np.array_equal(out, add_gaussian_noise(img, 50, 8))


def test_blur_wrap_delta_kernels_and_truncation():
    img = rng.integers(0, 256, (9, 11, 3)).astype(np.uint8)
    delta = np.zeros((5, 5))
    delta[2, 2] = 1
    np.testing.assert_array_equal(blur_wrap(img, delta), img)
    shifted = np.zeros((5, 5))
    shifted[2, 3] = 1  # one column right of the centre: convolution moves content one column right
    np.testing.assert_array_equal(blur_wrap(img, shifted), np.roll(img, 1, axis=1))
    down = np.zeros((5, 5))
    down[4, 2] = 1
    np.testing.assert_array_equal(blur_wrap(img, down), np.roll(img, 2, axis=0))
    # uint8 in, uint8 out, truncated toward zero like the official script (10 * 0.55 -> 5, not 6).
    out = blur_wrap(np.full((4, 4, 1), 10, np.uint8), np.array([[0.55]]))
    assert out.dtype == np.uint8 and (out == 5).all()


def test_blur_wrap_matches_circular_sum():
    img = rng.random((12, 10, 2))
    k = rng.random((5, 3))
    ref = sum(k[m, n] * np.roll(img, (m - 2, n - 1), axis=(0, 1)) for m in range(5) for n in range(3))
    np.testing.assert_allclose(blur_wrap(img, k), ref, atol=1e-12)


def test_modcrop_and_center_crop():
    img = np.arange(13 * 18).reshape(13, 18)
    assert modcrop(img, 4).shape == (12, 16)
    np.testing.assert_array_equal(modcrop(img, 4), img[:12, :16])
    c = center_crop(img, 6)
    np.testing.assert_array_equal(c, img[3:9, 6:12])
    with pytest.raises(ValueError):
        center_crop(img, 14)


# ----------------------------------------------------------------------------- kernels

@needs_kernels
def test_load_real_kernels():
    for i in range(1, 6):
        k = load_kernel(KERNELS / "conversenet" / f"kernel_{i}.npy")
        assert k.shape == (7, 7) and k.dtype == np.float64
        assert k.min() >= 0 and k.sum() == pytest.approx(1, abs=1e-6)
    for i in range(12):
        k = load_kernel(KERNELS / "kernels_12.mat", i)
        assert k.shape == (25, 25) and k.min() >= 0 and k.sum() == pytest.approx(1, abs=1e-5)
    levin = [load_kernel(KERNELS / "levin09" / "Levin09.mat", i) for i in range(8)]
    assert [k.shape[0] for k in levin] == [19, 17, 15, 27, 13, 21, 23, 23]
    for k in levin:
        assert k.shape[0] == k.shape[1] and k.min() >= 0 and k.sum() == pytest.approx(1, abs=1e-5)
    # Orientation cross-check between the two formats: kernels_12{9}, {10} (MATLAB, v5 file) are the
    # Levin kernels 8 and 7 (v7.3 file) zero-padded to 25x25; these kernels are not symmetric.
    for i12, il in ((8, 7), (9, 6)):
        padded = np.pad(levin[il], 1)
        assert not np.allclose(levin[il], levin[il].T, atol=1e-3)
        np.testing.assert_allclose(load_kernel(KERNELS / "kernels_12.mat", i12), padded, atol=1e-7)
    with pytest.raises(ValueError, match="kernels_12.mat"):
        load_kernel(KERNELS / "kernels_12.mat")
    with pytest.raises(ValueError, match="Levin09.mat"):
        load_kernel(KERNELS / "levin09" / "Levin09.mat", 8)


def _matlab_v73_like(path: Path, kernels: list[np.ndarray]) -> None:
    """HDF5 laid out as MATLAB -v7.3 writes a 1xN cell: column-major data, object references."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        ds = f.create_dataset("kernels", (len(kernels), 1), dtype=h5py.ref_dtype)
        for i, k in enumerate(kernels):
            ds[i, 0] = refs.create_dataset(f"k{i}", data=np.ascontiguousarray(k.T)).ref


def test_load_kernel_formats_and_orientation(tmp_path):
    a = rng.random((3, 5))
    b = rng.random((7, 4))
    _matlab_v73_like(tmp_path / "v73.mat", [a, b])
    np.testing.assert_array_equal(load_kernel(tmp_path / "v73.mat", 1), b)
    np.testing.assert_array_equal(load_kernel(tmp_path / "v73.mat", 0), a)
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = a, b
    scipy.io.savemat(tmp_path / "v5.mat", {"kernels": cell})
    np.testing.assert_array_equal(load_kernel(tmp_path / "v5.mat", 1), b)
    np.save(tmp_path / "stack.npy", np.stack([a, a * 2]))
    np.testing.assert_array_equal(load_kernel(tmp_path / "stack.npy", 1), a * 2)
    png = np.zeros((5, 5), np.uint8)
    png[2, 1:4] = [50, 100, 50]
    Image.fromarray(png).save(tmp_path / "k.png")
    k = load_kernel(tmp_path / "k.png")
    assert k.sum() == pytest.approx(1)
    np.testing.assert_allclose(k[2, 1:4], [0.25, 0.5, 0.25])


def test_load_kernel_errors(tmp_path):
    np.save(tmp_path / "stack.npy", np.ones((3, 4, 4)))
    np.save(tmp_path / "line.npy", np.ones(5))
    (tmp_path / "k.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match=r"stack\.npy.*index"):
        load_kernel(tmp_path / "stack.npy")
    with pytest.raises(ValueError, match=r"stack\.npy.*out of range"):
        load_kernel(tmp_path / "stack.npy", 3)
    with pytest.raises(ValueError, match="stack.npy"):
        load_kernel(tmp_path / "stack.npy", -1)
    with pytest.raises(ValueError, match=r"line\.npy.*2-D"):
        load_kernel(tmp_path / "line.npy")
    with pytest.raises(ValueError, match=r"k\.txt"):
        load_kernel(tmp_path / "k.txt")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_kernel(tmp_path / "missing.npy")


# ----------------------------------------------------------------------------- SPEC parsing

def test_parse_valid_specs(tmp_path):
    assert parse_degradation("noise:25") == GaussianNoise(25.0)
    assert parse_degradation("noise:0") == GaussianNoise(0.0)
    assert parse_degradation("sr:4") == BicubicSR(4)
    kfile = tmp_path / "ks.npy"
    np.save(kfile, np.stack([np.eye(3) / 3, np.ones((3, 3)) / 9]))
    d = parse_degradation(f"blur:{kfile}:1+noise:2.55")
    assert isinstance(d, BlurNoise) and d.index == 1 and d.sigma == 2.55
    np.testing.assert_array_equal(d.kernel, np.ones((3, 3)) / 9)
    single = tmp_path / "k.npy"
    np.save(single, np.eye(3) / 3)
    d = parse_degradation(f"blur:{single}")
    assert d.index is None and d.sigma == 0
    for deg in (parse_degradation("noise:15"), parse_degradation("sr:2"), d):
        assert isinstance(deg.describe(), str) and deg.describe()


@pytest.mark.parametrize("spec", [
    "", "noise", "noise:", "noise:-1", "noise:abc", "noise:nan", "sr:1", "sr:0", "sr:2.5", "sr:x",
    "blur:", "jpeg:90", "blur:{k}:x", "blur:{k}+noise:-3", "blur:{k}+noise:", "blur:{k}+nois:3",
    "blur:{stack}", "blur:{stack}:2",
])
def test_parse_invalid_specs(spec, tmp_path):
    np.save(tmp_path / "k.npy", np.eye(3) / 3)
    np.save(tmp_path / "stack.npy", np.ones((2, 3, 3)) / 9)
    spec = spec.format(k=tmp_path / "k.npy", stack=tmp_path / "stack.npy")
    with pytest.raises(ValueError, match=r"noise:SIGMA \| sr:SCALE"):
        parse_degradation(spec)


# ----------------------------------------------------------------------------- applying SPECs

def test_apply_noise():
    gt = rng.integers(0, 256, (10, 13, 3)).astype(np.uint8)
    s = parse_degradation("noise:25").apply(gt, seed=0)
    np.random.seed(0)
    ref = np.float32(gt / 255.0)
    ref += np.random.normal(0, 25 / 255.0, ref.shape)
    np.testing.assert_array_equal(s.lq, ref)
    np.testing.assert_array_equal(s.gt, gt)
    assert (s.border, s.y_channel, s.kernel) == (0, False, None)


@pytest.mark.parametrize("channels", [3, 1])
def test_apply_sr(channels):
    gt = rng.integers(0, 256, (13, 18, channels)).astype(np.uint8)
    s = parse_degradation("sr:4").apply(gt, seed=0)
    assert s.gt.shape == (12, 16, channels)
    np.testing.assert_array_equal(s.gt, gt[:12, :16])
    assert s.lq.shape == (3, 4, channels) and s.lq.dtype == np.float32
    np.testing.assert_allclose(s.lq, _ref_imresize(gt[:12, :16] / 255.0, 1 / 4), atol=1e-5)
    assert s.border == 4 and s.y_channel == (channels == 3)


def test_apply_blur(tmp_path):
    k = rng.random((7, 7))
    k /= k.sum()
    np.save(tmp_path / "k.npy", k)
    gt = rng.integers(0, 256, (21, 30, 3)).astype(np.uint8)
    s = parse_degradation(f"blur:{tmp_path / 'k.npy'}+noise:2.55").apply(gt, seed=0)
    crop = gt[:16, :24]
    np.testing.assert_array_equal(s.gt, crop)
    ref = np.float32(ndimage.convolve(crop, k[..., None], mode="wrap") / 255.0)
    np.random.seed(0)
    ref += np.random.normal(0, 2.55 / 255, ref.shape)
    np.testing.assert_array_equal(s.lq, ref)
    assert s.kernel.dtype == np.float32 and s.kernel.shape == (7, 7)
    assert (s.border, s.y_channel) == (1, False)
