"""Independent reference for Converse2D: the official algorithm written out plainly.

Full complex FFTs, the kernel spectrum rebuilt on every call, the official arrangement that
divides by λ, nearest-neighbour X0 and zero insertion done by indexing. Used by the tests (in
float64) and by benchmarks/converse2d_speed.py (in float32) as the baseline.
"""

import torch
import torch.nn.functional as F


def converse2d_official(x, kernel, lam, scale=1, padding=0, padding_mode="circular"):
    s = scale
    if padding > 0:
        x = F.pad(x, [padding] * 4, mode=padding_mode)
    b, c, h, w = x.shape
    sty = torch.zeros(b, c, h * s, w * s, dtype=x.dtype)
    sty[..., ::s, ::s] = x
    x0 = x.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)
    kh, kw = kernel.shape[-2:]
    otf = torch.zeros(kernel.shape[:-2] + (h * s, w * s), dtype=kernel.dtype)
    otf[..., :kh, :kw] = kernel
    otf = torch.roll(otf, (-(kh // 2), -(kw // 2)), dims=(-2, -1))
    fb = torch.fft.fftn(otf, dim=(-2, -1))
    fbc = torch.conj(fb)
    f2b = torch.abs(fb) ** 2
    fr = fbc * torch.fft.fftn(sty, dim=(-2, -1)) + torch.fft.fftn(lam * x0, dim=(-2, -1))

    def mean_tiles(a):
        *lead, hh, ww = a.shape
        return a.reshape(*lead, s, hh // s, s, ww // s).mean(dim=(-4, -2))

    inv = mean_tiles(fb * fr) / (mean_tiles(f2b) + lam)
    fx = (fr - fbc * inv.repeat(1, 1, s, s)) / lam
    out = torch.real(torch.fft.ifftn(fx, dim=(-2, -1)))
    if padding > 0:
        out = out[..., padding * s : -padding * s, padding * s : -padding * s]
    return out
