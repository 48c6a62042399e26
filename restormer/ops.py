"""The two operators that export turns into custom ONNX nodes (domain ``restormer``).

Each model calls them from exactly one place; under ``torch.onnx.export`` each call becomes one
``TransposedAttention`` or ``Converse2D`` node of domain ``restormer``. Their math is the contract in ``docs/OPERATORS.md``, shared with the
ONNX reference functions and the TensorRT plugin.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

PADDING_MODES = ("circular", "reflect", "replicate", "constant")
DOMAIN, OP_VERSION = "restormer", 1
# Only Converse2D has a TensorRT plugin; from TensorRT 10.7 the parser picks a registered plugin over the
# local function (10.16+: for nodes with these attributes).
PLUGIN_ATTRIBUTES = {"plugin_namespace": "restormer", "plugin_version": "1"}


def transposed_attention(q: Tensor, k: Tensor, v: Tensor, temperature: Tensor, heads: int) -> Tensor:
    """MDTA core: attention across channels, linear in the number of pixels.

    q, k, v: (B, C, H, W); temperature: (heads, 1, 1). Returns (B, C, H, W).
    """
    b, c, h, w = q.shape
    if c % heads:
        raise ValueError(f"channels ({c}) must be divisible by heads ({heads})")
    if torch.onnx.is_in_onnx_export():
        return torch.onnx.ops.symbolic(
            f"{DOMAIN}::TransposedAttention", (q, k, v, temperature), {"heads": int(heads)},
            dtype=q.dtype, shape=q.shape, version=OP_VERSION,
        )
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in (q, k, v))
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1)) * temperature
    out = attn.softmax(dim=-1) @ v
    return out.reshape(b, c, h, w)


def check_scale(scale) -> int:
    """Scale must be a positive integer (bool and 2.0 are refused: they hide mistakes)."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    return int(scale)


def _check_attributes(scale, padding, padding_mode) -> int:
    scale = check_scale(scale)
    if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    return scale


def _check_converse_args(x: Tensor, kernel: Tensor, lam: Tensor, scale, padding, padding_mode) -> int:
    scale = _check_attributes(scale, padding, padding_mode)
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if kernel.dim() != 4 or kernel.shape[1] != c or kernel.shape[0] not in (1, b):
        raise ValueError(f"kernel must be (1 or {b}, {c}, kh, kw), got shape {tuple(kernel.shape)}")
    if lam.dim() != 4 or lam.shape[1] != c or lam.shape[0] not in (1, b) or lam.shape[2:] != (1, 1):
        raise ValueError(f"lam must be (1 or {b}, {c}, 1, 1), got shape {tuple(lam.shape)}")
    if padding_mode == "reflect" and padding >= min(h, w):
        raise ValueError(f"reflect padding {padding} needs an image larger than {padding} pixels, got {h}x{w}")
    hs, ws = (h + 2 * padding) * scale, (w + 2 * padding) * scale
    kh, kw = kernel.shape[-2:]
    if kh > hs or kw > ws:
        raise ValueError(
            f"kernel {kh}x{kw} is larger than the padded, upsampled grid {hs}x{ws} "
            f"(image {h}x{w}, padding {padding}, scale {scale})"
        )
    return scale


def _dft_matrix(n: int, cols: int, taps: int, centre: int, dtype, device) -> tuple[Tensor, Tensor]:
    """cos and sin of the DFT of length n, first ``cols`` bins, for taps at offsets a − centre."""
    u = torch.arange(cols, device=device)[:, None]
    a = torch.arange(taps, device=device)[None, :] - centre
    # Reduce u·a modulo n in integers first so the phase stays exact for large grids.
    phase = (2 * math.pi / n) * torch.remainder(u * a, n).to(torch.float64)
    return phase.cos().to(dtype), phase.sin().to(dtype)


def kernel_spectrum(kernel: Tensor, size: tuple[int, int], onesided: bool = True) -> tuple[Tensor, Tensor]:
    """Real and imaginary parts of the DFT of the kernel zero-padded to ``size`` with its centre
    ⌊k/2⌋ rolled to the origin (the official ``p2o``).

    Computed as two small matrix products with the k relevant DFT columns: the kernel has k×k taps,
    so this beats padding it to the grid and running an FFT, most of all on grids that factor badly.
    """
    kh, kw = kernel.shape[-2:]
    hs, ws = size
    ch, sh = _dft_matrix(hs, hs, kh, kh // 2, kernel.dtype, kernel.device)
    cw, sw = _dft_matrix(ws, ws // 2 + 1 if onesided else ws, kw, kw // 2, kernel.dtype, kernel.device)
    kc, ks = kernel @ cw.T, kernel @ sw.T  # (.., kh, cols)
    # (ch − i·sh) K (cw − i·sw)ᵀ
    return ch @ kc - sh @ ks, -(sh @ kc + ch @ ks)


def _box_spectrum(scale: int, size: tuple[int, int], dtype, device) -> Tensor:
    """DFT of the s×s box at the origin: nearest-neighbour upsampling = zero insertion ⊛ box."""

    def axis(n: int) -> Tensor:
        c, s = _dft_matrix(n, n, scale, 0, torch.float64, device)
        return torch.complex(c.sum(-1), -s.sum(-1)).to(torch.promote_types(dtype, torch.complex64))

    return axis(size[0])[:, None] * axis(size[1])[None, :]


def _mean_tiles(z: Tensor, scale: int) -> Tensor:
    """``mean_s``: cut an (s·h)×(s·w) spectrum into s×s tiles of h×w and average them."""
    h, w = z.shape[-2] // scale, z.shape[-1] // scale
    # Summing views is much faster than a reduction over strided axes on CPU.
    acc = z[..., :h, :w]
    for i in range(scale):
        for j in range(scale):
            if i or j:
                acc = acc + z[..., i * h : (i + 1) * h, j * w : (j + 1) * w]
    return acc / scale**2


def converse_filter(kernel: Tensor, lam: Tensor, scale: int, size: tuple[int, int]) -> Tensor:
    """Transfer function G with F(X) = tile_s(F(y)) ⊙ G, one-sided along the last axis.

    Starting from the division-free closed form F(X) = F(X0) + conj(FK) ⊙ tile_s((F(y) −
    mean_s(FK ⊙ F(X0))) / (mean_s|FK|² + λ)) and F(X0) = tile_s(F(y)) ⊙ F(box), F(y) factors out:
    G = F(box) + conj(FK) ⊙ tile_s((1 − mean_s(FK ⊙ F(box))) / (mean_s|FK|² + λ)).
    G depends only on the kernel, λ and the grid, so the image needs one small forward FFT and one
    inverse FFT. At s = 1 it is (conj(FK) + λ) / (|FK|² + λ).
    """
    hp, wp = size
    hs, ws = hp * scale, wp * scale
    half = ws // 2 + 1
    if scale == 1:
        fr, fi = kernel_spectrum(kernel, (hs, ws))
        inv = (fr.square() + fi.square() + lam).reciprocal()
        return torch.complex((fr + lam) * inv, -fi * inv)
    fr, fi = kernel_spectrum(kernel, (hs, ws), onesided=False)
    fk = torch.complex(fr, fi)
    box = _box_spectrum(scale, (hs, ws), kernel.dtype, kernel.device)
    num = 1 - _mean_tiles(fk * box, scale)
    den = _mean_tiles(fr.square() + fi.square(), scale) + lam
    t = (num / den).repeat(1, 1, scale, scale)[..., :half]
    return box[:, :half] + fk[..., :half].conj() * t


_CHUNK_BYTES = 32 << 20


def _solve(y: Tensor, kernel: Tensor, lam: Tensor, scale: int) -> Tensor:
    """X on the padded grid: one small forward FFT of y, the transfer function, one inverse FFT."""
    hp, wp = y.shape[-2:]
    hs, ws = hp * scale, wp * scale
    g = converse_filter(kernel, lam, scale, (hp, wp))
    if scale == 1:
        fy = torch.fft.rfft2(y)
    else:
        fy = torch.fft.fft2(y).repeat(1, 1, scale, scale)[..., : ws // 2 + 1]  # tile_s(F(y))
    return torch.fft.irfft2(fy * g, s=(hs, ws))


def converse2d(
    x: Tensor,
    kernel: Tensor,
    lam: Tensor,
    scale: int = 1,
    padding: int = 0,
    padding_mode: str = "circular",
) -> Tensor:
    """Reverse convolution (Converse2D), solved in closed form with FFTs.

    x: (B, C, H, W); kernel: (1 or B, C, kh, kw); lam: (1 or B, C, 1, 1), positive.
    Returns argmin_X ‖y − (X ⊛ K)↓s‖² + λ‖X − X0‖² on the padded grid with circular boundary,
    cropped back: (B, C, H·s, W·s). y is x padded by ``padding`` with ``padding_mode``; X0 is the
    nearest-neighbour upsampling of y; ↓s keeps the top-left sample of each s×s block.
    The solve runs in float32 at least (float64 stays float64), whatever the input dtype.
    """
    if torch.onnx.is_in_onnx_export():  # shapes are symbolic here: only the attributes are checked
        scale = _check_attributes(scale, padding, padding_mode)
        b, c, h, w = x.shape
        attrs = {"scale": scale, "padding": int(padding), "padding_mode": padding_mode, **PLUGIN_ATTRIBUTES}
        return torch.onnx.ops.symbolic(
            f"{DOMAIN}::Converse2D", (x, kernel, lam), attrs,
            dtype=x.dtype, shape=(b, c, h * scale, w * scale), version=OP_VERSION,
        )
    scale = _check_converse_args(x, kernel, lam, scale, padding, padding_mode)
    out_dtype = x.dtype
    work = torch.promote_types(x.dtype, torch.float32)
    x, kernel, lam = x.to(work), kernel.to(work), lam.to(work)
    if padding:
        x = F.pad(x, (padding,) * 4, mode=padding_mode)
    # Solve in channel chunks of about 32 MB per spectrum: big temporaries are mmapped and
    # page-faulted afresh on every allocation, which cost as much system time as the FFTs.
    hp, wp = x.shape[-2:]
    per_channel = x.shape[0] * hp * wp * scale * scale * x.element_size()
    chunk = max(1, _CHUNK_BYTES // per_channel)
    parts = [
        _solve(x[:, i : i + chunk], kernel[:, i : i + chunk], lam[:, i : i + chunk], scale)
        for i in range(0, x.shape[1], chunk)
    ]
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    if padding:
        c = padding * scale
        out = out[..., c : out.shape[-2] - c, c : out.shape[-1] - c]
    return out.to(out_dtype)
