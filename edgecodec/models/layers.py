"""Building blocks of the CAE / CRB transforms: BatchNorm + ReLU convolutions and residual blocks."""

from __future__ import annotations

import torch
from torch import nn


def conv_down(in_ch: int, out_ch: int, kernel: int = 5) -> nn.Conv2d:
    """Stride-2 convolution that halves height and width exactly (for even sizes)."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=2, padding=kernel // 2)


def deconv_up(in_ch: int, out_ch: int, kernel: int = 5) -> nn.ConvTranspose2d:
    """Stride-2 transposed convolution that doubles height and width exactly."""
    return nn.ConvTranspose2d(in_ch, out_ch, kernel, stride=2, padding=kernel // 2, output_padding=1)


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus identity (1x1 projection when channels change), then ReLU."""

    def __init__(self, in_ch: int, out_ch: int | None = None) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))
