"""Reverse convolution (ICCV 2025): Converse2D, the Converse block and the ConverseNet models.

Parameter names follow cszn/ConverseNet so that its official checkpoints load with strict=True.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from restormer_deploy.restormer.ops import PADDING_MODES, check_scale, converse2d


class LayerNorm2d(nn.Module):
    """Channels-first LayerNorm: normalise each pixel over channels (mean subtracted, biased variance)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        x = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Converse2D(nn.Module):
    """Depthwise reverse convolution with a learnable kernel and λ = sigmoid(bias − 9) + eps."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        scale: int = 1,
        padding: int = 2,
        padding_mode: str = "circular",
        eps: float = 1e-5,
    ):
        super().__init__()
        if out_channels != in_channels:
            raise ValueError(f"Converse2D is depthwise: out_channels ({out_channels}) must equal in_channels ({in_channels})")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.in_channels = self.out_channels = in_channels
        self.kernel_size = kernel_size
        self.scale = check_scale(scale)
        self.padding = padding
        self.padding_mode = padding_mode
        self.eps = eps
        # Positive and summing to one per channel, as the paper initialises it.
        init = torch.softmax(torch.randn(1, in_channels, kernel_size * kernel_size), dim=-1)
        self.weight = nn.Parameter(init.view(1, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(1, in_channels, 1, 1))

    def lam(self) -> Tensor:
        return torch.sigmoid(self.bias - 9.0) + self.eps

    def forward(self, x: Tensor) -> Tensor:
        return converse2d(x, self.weight, self.lam(), self.scale, self.padding, self.padding_mode)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, kernel_size={self.kernel_size}, scale={self.scale}, padding={self.padding}, "
            f"padding_mode={self.padding_mode!r}, eps={self.eps}"
        )


class ConverseBlock(nn.Module):
    """Two residual branches: LN → 1×1 → GELU → Converse2D → GELU → 1×1, and LN → 1×1 → GELU → 1×1.

    ``alpha=True`` is the official ``ConverseBlockAlphaVariant``: each branch is scaled by a learnable
    per-channel alpha initialised to zero.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        scale: int = 1,
        padding: int = 2,
        padding_mode: str = "replicate",
        eps: float = 1e-5,
        alpha: bool = False,
    ):
        super().__init__()
        if alpha:
            self.alpha1 = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
            self.alpha2 = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        hidden = 2 * out_channels
        self.conv1 = nn.Sequential(
            LayerNorm2d(in_channels),
            nn.Conv2d(in_channels, hidden, 1),
            nn.GELU(),
            Converse2D(hidden, hidden, kernel_size, scale=scale, padding=padding, padding_mode=padding_mode, eps=eps),
            nn.GELU(),
            nn.Conv2d(hidden, out_channels, 1),
        )
        self.conv2 = nn.Sequential(
            LayerNorm2d(in_channels),
            nn.Conv2d(out_channels, hidden, 1),
            nn.GELU(),
            nn.Conv2d(hidden, out_channels, 1),
        )
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        if self.alpha:
            x = self.alpha1 * self.conv1(x) + x
            return self.alpha2 * self.conv2(x) + x
        x = self.conv1(x) + x
        return self.conv2(x) + x


class ConverseDnCNN(nn.Module):
    """Converse-DnCNN: 1×1 head, Converse blocks, 1×1 tail; no global residual."""

    def __init__(
        self,
        in_channels: int = 1,
        kernel_size: int = 7,
        num_features: int = 64,
        padding: int = 6,
        padding_mode: str = "circular",
        eps: float = 1e-5,
        num_blocks: int = 20,
    ):
        super().__init__()
        self.m_head = nn.Sequential(nn.Conv2d(in_channels, num_features, 1))
        self.m_body = nn.Sequential(
            *[
                ConverseBlock(num_features, num_features, kernel_size, 1, padding, padding_mode, eps)
                for _ in range(num_blocks)
            ]
        )
        self.m_tail = nn.Sequential(nn.Conv2d(num_features, in_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.m_tail(self.m_body(self.m_head(x)))


class ConverseSRResNet(nn.Module):
    """Converse-SRResNet (official ``ConverseMSRResNet``): two Converse2D ×2 upsamplers, plus bilinear skip."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_features: int = 64, num_blocks: int = 16, upscale: int = 4):
        super().__init__()
        if upscale != 4:
            raise ValueError(f"Converse-SRResNet has two x2 upsamplers, so upscale must be 4, got {upscale!r}")
        self.upscale = upscale
        nf = num_features

        def block() -> ConverseBlock:
            return ConverseBlock(nf, nf, 5, 1, 4, padding_mode="replicate", eps=1e-5)

        self.conv_first = nn.Conv2d(in_channels, nf, 1)
        self.conv_body = nn.Sequential(*[block() for _ in range(num_blocks)])
        self.upconv1 = block()
        self.up1 = Converse2D(nf, nf, 2, scale=2, padding=2, padding_mode="replicate", eps=1e-3)
        self.upconv2 = block()
        self.up2 = Converse2D(nf, nf, 2, scale=2, padding=2, padding_mode="replicate", eps=1e-3)
        self.conv_hres = block()
        self.conv_last = nn.Conv2d(nf, out_channels, 1, bias=False)
        self.gelu = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.gelu(self.conv_first(x))
        y = self.conv_body(y)
        y = self.gelu(self.up1(self.upconv1(y)))
        y = self.gelu(self.up2(self.upconv2(y)))
        y = self.conv_last(self.gelu(self.conv_hres(y)))
        return y + F.interpolate(x, scale_factor=self.upscale, mode="bilinear", align_corners=False)


class MultiConverseBlock(nn.Module):
    """A stack of Converse blocks (k 3, padding 2, circular), shared across the unrolled iterations."""

    def __init__(self, in_channels: int = 64, num_blocks: int = 7, kernel_size: int = 3, padding: int = 2,
                 padding_mode: str = "circular", alpha: bool = False):
        super().__init__()
        self.m_body = nn.Sequential(
            *[
                ConverseBlock(in_channels, in_channels, kernel_size, 1, padding, padding_mode, alpha=alpha)
                for _ in range(num_blocks)
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.m_body(x)


class ConverseNet(nn.Module):
    """ConverseNet for blind deblurring: the same block stack applied ``num_iterations`` times."""

    def __init__(self, num_iterations: int = 5, in_channels: int = 64, num_blocks: int = 7, image_channels: int = 3):
        super().__init__()
        self.num_iterations = num_iterations
        self.p = MultiConverseBlock(in_channels, num_blocks)
        self.conv1 = nn.Conv2d(image_channels, in_channels, 1)
        self.conv2 = nn.Conv2d(in_channels, image_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        for _ in range(self.num_iterations):
            x = self.p(x)
        return self.conv2(x)


class KernelNet(nn.Module):
    """MLP that embeds a k×k blur kernel into 16 feature kernels of k×k."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.kernel_size = kernel_size
        self.fc1 = nn.Linear(kernel_size**2, 64)
        self.fc2 = nn.Linear(64, 64)
        self.fc3 = nn.Linear(64, 16 * kernel_size**2)
        self.gelu = nn.GELU()

    def forward(self, k: Tensor) -> Tensor:
        b = k.shape[0]
        if k.shape[-2:] != (self.kernel_size, self.kernel_size):
            raise ValueError(f"blur kernel must be {self.kernel_size}x{self.kernel_size}, got {tuple(k.shape[-2:])}")
        k = k.float().reshape(b, -1)
        k = self.gelu(self.fc2(self.gelu(self.fc1(k))))
        return self.fc3(k).view(b, 16, self.kernel_size, self.kernel_size)


class ConverseDataStep(nn.Module):
    """Data step of Converse-USRNet (official ``ConvReverseDataNet``): Converse2D with per-sample kernels."""

    def __init__(self, channels: int = 64, eps: float = 1e-3):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: Tensor, kernel: Tensor, scale: int) -> Tensor:
        lam = torch.sigmoid(self.alpha - 9.0) + self.eps
        return converse2d(x, kernel, lam, scale, 0, "circular")


class ConverseUSRNet(nn.Module):
    """Converse-USRNet for non-blind deblurring: unrolled data steps conditioned on the blur kernel.

    forward(x, kernel, scale=1): x (B, 3, H, W); kernel (B, 1, 7, 7). The scale applies only to the
    first iteration.
    """

    def __init__(self, num_iterations: int = 5, in_channels: int = 64, num_blocks: int = 7, kernel_size: int = 7):
        super().__init__()
        self.num_iterations = num_iterations
        self.d = ConverseDataStep(in_channels)
        self.p = MultiConverseBlock(in_channels, num_blocks, alpha=True)
        self.conv1 = nn.Conv2d(3, in_channels, 1)
        self.conv2 = nn.Conv2d(in_channels, 3, 1)
        self.kernelnet = KernelNet(kernel_size)
        self.convs = nn.ModuleList([nn.Conv2d(16, in_channels, 1) for _ in range(num_iterations)])

    def forward(self, x: Tensor, kernel: Tensor, scale: int = 1) -> Tensor:
        scale = check_scale(scale)
        if kernel.dim() != 4 or kernel.shape[0] not in (1, x.shape[0]) or kernel.shape[1] != 1:
            raise ValueError(f"kernel must be (B, 1, k, k), got shape {tuple(kernel.shape)}")
        if kernel.shape[0] != x.shape[0]:
            kernel = kernel.expand(x.shape[0], -1, -1, -1)
        features = self.kernelnet(kernel)
        x = self.conv1(x)
        for i, conv in enumerate(self.convs):
            x = self.d(x, conv(features), scale if i == 0 else 1)
            x = self.p(x)
        return self.conv2(x)
