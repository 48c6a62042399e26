"""Converse2D against an independent float64 reference of the official algorithm, and its properties."""

import itertools
import math

import pytest
import torch

from restormer_deploy.restormer.converse_arch import Converse2D
from restormer_deploy.restormer.ops import PADDING_MODES, converse2d, transposed_attention


def _inputs(b, c, h, w, k, dtype=torch.float64, batch_kernel=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g, dtype=dtype)
    kernel = torch.softmax(torch.randn(b if batch_kernel else 1, c, k * k, generator=g, dtype=dtype), -1)
    kernel = kernel.reshape(-1, c, k, k)
    lam = torch.sigmoid(torch.randn(1, c, 1, 1, generator=g, dtype=dtype) - 9) + 1e-5
    return x, kernel, lam


CASES = list(itertools.product([1, 2, 3, 4], [(8, 8), (9, 7), (12, 13)], PADDING_MODES, [2, 3, 5]))


@pytest.mark.parametrize("scale,size,mode,k", CASES)
def test_matches_official_float64(scale, size, mode, k, converse2d_official):
    x, kernel, lam = _inputs(2, 3, *size, k, batch_kernel=(k == 3))
    ref = converse2d_official(x, kernel, lam, scale, 2, mode)
    out = converse2d(x, kernel, lam, scale, 2, mode)
    assert out.shape == (2, 3, size[0] * scale, size[1] * scale)
    assert (out - ref).abs().max().item() <= 1e-10


@pytest.mark.parametrize("scale,size,mode,k", CASES[::3])
def test_float32_relative_error(scale, size, mode, k, converse2d_official):
    x, kernel, lam = _inputs(2, 3, *size, k)
    ref = converse2d_official(x, kernel, lam, scale, 2, mode)
    out = converse2d(x.float(), kernel.float(), lam.float(), scale, 2, mode).double()
    assert ((out - ref).abs().max() / ref.abs().max()).item() <= 1e-5


@pytest.mark.parametrize("padding", [0, 1, 3])
def test_padding_amounts(padding, converse2d_official):
    x, kernel, lam = _inputs(1, 2, 10, 11, 3)
    ref = converse2d_official(x, kernel, lam, 2, padding, "reflect")
    assert (converse2d(x, kernel, lam, 2, padding, "reflect") - ref).abs().max() <= 1e-10


@pytest.mark.parametrize("size,k", [((16, 16), 3), ((15, 17), 4), ((20, 13), 7)])
def test_inverts_a_circular_convolution(size, k):
    """y = x ⊛ K (FFT product, kernel centred as p2o); tiny λ recovers x.

    The kernel is well conditioned (a dominant centre tap keeps |FK| >= 0.2), so λ = 1e-8 perturbs
    the inverse by about λ/|FK|² ≈ 2.5e-7; a random blur can have spectral zeros no solve recovers.
    """
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 2, *size, generator=g, dtype=torch.float64)
    blur = torch.softmax(torch.randn(1, 2, k * k, generator=g, dtype=torch.float64), -1).reshape(1, 2, k, k)
    kernel = 0.4 * blur
    kernel[..., k // 2, k // 2] += 0.6  # the p2o centre
    otf = torch.zeros(1, 2, *size, dtype=torch.float64)
    otf[..., :k, :k] = kernel
    otf = torch.roll(otf, (-(k // 2), -(k // 2)), dims=(-2, -1))
    y = torch.fft.ifft2(torch.fft.fft2(x) * torch.fft.fft2(otf)).real
    lam = torch.full((1, 2, 1, 1), 1e-8, dtype=torch.float64)
    assert (converse2d(y, kernel, lam, 1, 0) - x).abs().max().item() <= 1e-6


def test_convolution_convention_is_flipped_correlation():
    """The FFT product with p2o equals F.conv2d with the kernel flipped, circularly padded (odd k)."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 1, 9, 9, generator=g, dtype=torch.float64)
    kernel = torch.rand(1, 1, 3, 3, generator=g, dtype=torch.float64)
    otf = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    otf[..., :3, :3] = kernel
    otf = torch.roll(otf, (-1, -1), dims=(-2, -1))
    fft_conv = torch.fft.ifft2(torch.fft.fft2(x) * torch.fft.fft2(otf)).real
    spatial = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="circular"), kernel.flip(-1, -2))
    assert torch.allclose(fft_conv, spatial, atol=1e-12)


def test_gradcheck_float64():
    x, kernel, lam = _inputs(1, 2, 5, 6, 3)
    for t in (x, kernel, lam):
        t.requires_grad_(True)
    for scale, mode in [(1, "circular"), (2, "replicate"), (3, "reflect")]:
        assert torch.autograd.gradcheck(lambda a, b, c: converse2d(a, b, c, scale, 1, mode), (x, kernel, lam))


def test_half_input_is_solved_in_float32(converse2d_official):
    x, kernel, lam = _inputs(1, 4, 12, 12, 3, dtype=torch.float32)
    out = converse2d(x.half(), kernel, lam, 2, 2, "replicate")
    assert out.dtype == torch.float16
    ref = converse2d_official(x.half().double(), kernel.double(), lam.double(), 2, 2, "replicate")
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() < 2e-3


def test_module_lambda_and_no_state_written(converse2d_official):
    m = Converse2D(4, 4, 3, scale=2, padding=2, padding_mode="replicate", eps=1e-5).double()
    w = m.weight.detach()
    assert torch.all(w > 0) and torch.allclose(w.sum((-1, -2)), torch.ones(1, 4, dtype=torch.float64))
    lam = torch.sigmoid(m.bias.detach() - 9) + 1e-5
    assert abs(lam.mean().item() - (1 / (1 + math.exp(9)) + 1e-5)) < 1e-12  # sigmoid(0 - 9) + eps at initialisation
    before = dict(m.__dict__)
    x = torch.rand(2, 4, 6, 7, dtype=torch.float64)
    out = m(x)
    assert set(m.__dict__) == set(before)
    ref = converse2d_official(x, m.weight.detach(), lam, 2, 2, "replicate")
    assert (out.detach() - ref).abs().max() <= 1e-10


@pytest.mark.parametrize("scale", [0, -1, 1.5, 2.0, "2", True])
def test_bad_scale(scale):
    x, kernel, lam = _inputs(1, 1, 8, 8, 3)
    with pytest.raises(ValueError, match="scale must be a positive integer"):
        converse2d(x, kernel, lam, scale, 1)
    with pytest.raises(ValueError, match="scale"):
        Converse2D(1, 1, 3, scale=scale)


def test_kernel_larger_than_grid():
    x, _, lam = _inputs(1, 1, 4, 4, 3)
    kernel = torch.ones(1, 1, 9, 9, dtype=torch.float64) / 81
    with pytest.raises(ValueError, match="larger than the padded"):
        converse2d(x, kernel, lam, 1, 2)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"padding": -1}, "padding"),
        ({"padding_mode": "zeros"}, "padding_mode"),
        ({"padding": 8, "padding_mode": "reflect"}, "reflect"),
    ],
)
def test_bad_arguments(kwargs, match):
    x, kernel, lam = _inputs(1, 1, 8, 8, 3)
    with pytest.raises(ValueError, match=match):
        converse2d(x, kernel, lam, **{"scale": 1, "padding": 1, **kwargs})


def test_bad_shapes():
    x, kernel, lam = _inputs(2, 3, 8, 8, 3)
    with pytest.raises(ValueError, match="kernel must be"):
        converse2d(x, kernel[:, :2], lam)
    with pytest.raises(ValueError, match="lam must be"):
        converse2d(x, kernel, lam.reshape(1, 3, 1))


def test_transposed_attention_matches_loops():
    g = torch.Generator().manual_seed(3)
    b, c, h, w, heads = 2, 6, 3, 4, 3
    q, k, v = (torch.randn(b, c, h, w, generator=g, dtype=torch.float64) for _ in range(3))
    q[0, 0] = 0  # a zero row must not give NaN (F.normalize's eps)
    temp = torch.rand(heads, 1, 1, generator=g, dtype=torch.float64) + 0.5
    out = transposed_attention(q, k, v, temp, heads)
    d = c // heads
    ref = torch.empty_like(out)
    for bi in range(b):
        for hd in range(heads):
            qs = q[bi, hd * d : (hd + 1) * d].reshape(d, -1)
            ks = k[bi, hd * d : (hd + 1) * d].reshape(d, -1)
            vs = v[bi, hd * d : (hd + 1) * d].reshape(d, -1)
            qn = qs / qs.norm(dim=1, keepdim=True).clamp_min(1e-12)
            kn = ks / ks.norm(dim=1, keepdim=True).clamp_min(1e-12)
            a = torch.exp(qn @ kn.T * temp[hd])
            a = a / a.sum(1, keepdim=True)
            ref[bi, hd * d : (hd + 1) * d] = (a @ vs).reshape(d, h, w)
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max() <= 1e-12
