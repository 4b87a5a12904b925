"""PatchGAN discriminator (Isola et al. 2017) of the GCRB configuration: 4x4 convs, LeakyReLU 0.2."""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Scores overlapping patches of an image in [-1, 1]; one logit per patch.

    ``cond_channels`` > 0 makes it conditional on the quantized latent (HiFiC): the latent is
    upsampled to the image size and concatenated to the input.
    """

    def __init__(self, channels: int = 64, layers: int = 3, cond_channels: int = 0) -> None:
        super().__init__()
        self.cond_channels = cond_channels
        seq: list[nn.Module] = [
            nn.Conv2d(3 + cond_channels, channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        ch = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            seq += [nn.Conv2d(ch, out, 4, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(out), nn.LeakyReLU(0.2, inplace=True)]
            ch = out
        seq.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.cond_channels:
            if cond is None:
                raise ValueError("this discriminator is conditional: pass the quantized latent")
            cond = nn.functional.interpolate(cond, size=x.shape[-2:], mode="nearest")
            x = torch.cat([x, cond], dim=1)
        return self.net(x)
