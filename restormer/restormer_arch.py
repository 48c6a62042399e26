"""Restormer (Zamir et al., CVPR 2022), with parameter names matching the official checkpoints."""

from __future__ import annotations

import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from restormer_deploy.restormer.ops import transposed_attention

LAYER_NORM_TYPES = ("WithBias", "BiasFree")
_EPS = 1e-5


def _is_int(value, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= minimum


def _positive_int(name: str, value) -> int:
    if not _is_int(value, 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class BiasFreeLayerNorm(nn.Module):
    """Per-pixel channel norm that rescales by the standard deviation without centring."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        var = x.var(dim=1, keepdim=True, correction=0)
        return x / torch.sqrt(var + _EPS) * self.weight[:, None, None]


class WithBiasLayerNorm(nn.Module):
    """Per-pixel channel norm: centre, rescale, then scale and shift."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True, correction=0)
        return (x - mu) / torch.sqrt(var + _EPS) * self.weight[:, None, None] + self.bias[:, None, None]


class LayerNorm(nn.Module):
    """Layer norm over the channels of each pixel of a (B, C, H, W) map."""

    def __init__(self, dim: int, LayerNorm_type: str):
        super().__init__()
        if LayerNorm_type not in LAYER_NORM_TYPES:
            raise ValueError(f"LayerNorm_type must be one of {LAYER_NORM_TYPES}, got {LayerNorm_type!r}")
        self.body = BiasFreeLayerNorm(dim) if LayerNorm_type == "BiasFree" else WithBiasLayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class FeedForward(nn.Module):
    """Gated-Dconv Feed-Forward Network (GDFN)."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        if hidden < 1:
            raise ValueError(f"ffn_expansion_factor {ffn_expansion_factor!r} leaves no hidden channels for dim {dim}")
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class Attention(nn.Module):
    """Multi-Dconv Head Transposed Attention (MDTA)."""

    def __init__(self, dim: int, num_heads: int, bias: bool):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"channels ({dim}) must be divisible by heads ({num_heads})")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        # The single call site that export replaces with a custom ONNX node.
        out = transposed_attention(q, k, v, self.temperature, self.num_heads)
        return self.project_out(out)


class TransformerBlock(nn.Module):
    """Pre-norm block: MDTA then GDFN, each with a residual connection."""

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, LayerNorm_type: str):
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """Overlapped patch embedding: a 3x3 convolution to the embedding width."""

    def __init__(self, in_c: int = 3, embed_dim: int = 48):
        super().__init__()
        # No bias, whatever the model's `bias` flag: the official model never passes it on.
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Halve the resolution and double the channels: 3x3 conv to n/2, then pixel-unshuffle by 2."""

    def __init__(self, n_feat: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat // 2, kernel_size=3, padding=1, bias=False), nn.PixelUnshuffle(2)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double the resolution and halve the channels: 3x3 conv to 2n, then pixel-shuffle by 2."""

    def __init__(self, n_feat: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat * 2, kernel_size=3, padding=1, bias=False), nn.PixelShuffle(2)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Restormer(nn.Module):
    """Four-level encoder-decoder of transformer blocks; input height and width must be multiples of 8."""

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks=(4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads=(1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",
        dual_pixel_task: bool = False,
    ):
        super().__init__()
        _positive_int("inp_channels", inp_channels)
        _positive_int("out_channels", out_channels)
        _positive_int("dim", dim)
        if dim % 2:
            raise ValueError(f"dim must be even (Downsample halves it before pixel-unshuffle), got {dim}")
        num_blocks, heads = tuple(num_blocks), tuple(heads)
        if len(num_blocks) != 4 or not all(_is_int(n, 0) for n in num_blocks):
            raise ValueError(f"num_blocks must be 4 non-negative integers, got {num_blocks!r}")
        if not _is_int(num_refinement_blocks, 0):
            raise ValueError(f"num_refinement_blocks must be a non-negative integer, got {num_refinement_blocks!r}")
        if len(heads) != 4:
            raise ValueError(f"heads must have 4 entries, got {heads!r}")
        for level, h in enumerate(heads):
            _positive_int(f"heads[{level}]", h)
            if (dim * 2**level) % h:
                raise ValueError(
                    f"level {level + 1} channels ({dim * 2**level}) must be divisible by heads[{level}] ({h})"
                )
        if LayerNorm_type not in LAYER_NORM_TYPES:
            raise ValueError(f"LayerNorm_type must be one of {LAYER_NORM_TYPES}, got {LayerNorm_type!r}")

        def blocks(n: int, level_dim: int, num_heads: int) -> nn.Sequential:
            return nn.Sequential(
                *(
                    TransformerBlock(level_dim, num_heads, ffn_expansion_factor, bias, LayerNorm_type)
                    for _ in range(n)
                )
            )

        d1, d2, d3, d4 = dim, dim * 2, dim * 4, dim * 8
        self.patch_embed = OverlapPatchEmbed(inp_channels, d1)
        self.encoder_level1 = blocks(num_blocks[0], d1, heads[0])
        self.down1_2 = Downsample(d1)
        self.encoder_level2 = blocks(num_blocks[1], d2, heads[1])
        self.down2_3 = Downsample(d2)
        self.encoder_level3 = blocks(num_blocks[2], d3, heads[2])
        self.down3_4 = Downsample(d3)
        self.latent = blocks(num_blocks[3], d4, heads[3])

        self.up4_3 = Upsample(d4)
        self.reduce_chan_level3 = nn.Conv2d(d4, d3, kernel_size=1, bias=bias)
        self.decoder_level3 = blocks(num_blocks[2], d3, heads[2])
        self.up3_2 = Upsample(d3)
        self.reduce_chan_level2 = nn.Conv2d(d3, d2, kernel_size=1, bias=bias)
        self.decoder_level2 = blocks(num_blocks[1], d2, heads[1])
        # Level 1 keeps the 2*dim channels of the concatenation: no 1x1 reduction.
        self.up2_1 = Upsample(d2)
        self.decoder_level1 = blocks(num_blocks[0], d2, heads[0])
        self.refinement = blocks(num_refinement_blocks, d2, heads[0])

        self.dual_pixel_task = bool(dual_pixel_task)
        if self.dual_pixel_task:
            self.skip_conv = nn.Conv2d(d1, d2, kernel_size=1, bias=bias)
        self.output = nn.Conv2d(d2, out_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, inp_img: Tensor) -> Tensor:
        emb = self.patch_embed(inp_img)
        enc1 = self.encoder_level1(emb)
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))

        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        dec1 = self.refinement(dec1)

        if self.dual_pixel_task:
            return self.output(dec1 + self.skip_conv(emb))
        return self.output(dec1) + inp_img


def pad_to_multiple(x: Tensor, multiple: int = 8) -> tuple[Tensor, tuple[int, int]]:
    """Pad bottom/right so H and W are multiples of ``multiple``; returns the padded tensor and (h, w)."""
    multiple = _positive_int("multiple", multiple)
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return x, (h, w)
    # Reflection needs pad < size; tiny images fall back to edge replication.
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (h, w)


def crop_to(x: Tensor, h: int, w: int) -> Tensor:
    """Undo ``pad_to_multiple``: keep the top-left h x w pixels."""
    return x[..., :h, :w]
