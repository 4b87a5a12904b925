"""The original experiment's autoencoders (github.com/Krishsidd8/deep-image-compression, src/models):
float latents, no quantization, no entropy model, no file.

``original-cae`` (``CAE_model.py``)
    Five stride-2 3x3 convolutions 3 -> 64 -> 128 -> 256 -> 512 -> 64 (BatchNorm + ReLU after the
    first four, bias + ReLU on the last), so a 128x128 image becomes a 64x4x4 latent (1,024
    elements, CR 48:1); the decoder mirrors it with stride-2 3x3 transposed convolutions and ends in
    tanh.
``original-crb`` (``CRB_model.py``)
    A 3x3 input conv to 32 channels, then three levels over the channel list [32, 64, 128, 256]:
    a residual block changing the channels, a residual block keeping them, each followed by a
    ReLU, and a stride-2 3x3 conv + ReLU. The decoder runs the list backwards with nearest x2
    upsampling + 3x3 conv + ReLU in place of the strided conv, then a 3x3 conv to RGB and tanh.
    The residual block is the original's: conv-BN-ReLU-conv-BN-ReLU plus the identity (a 1x1
    conv + BN when the channels change), followed by a separate ReLU.

The CRB latent. The original's channel list with three levels gives a 256x16x16 latent for a
128x128 input: 65,536 elements, *more* than the 49,152 of the image (CR 0.75:1), so the
published 12:1 cannot come from that code as it stands. 12:1 at 128x128 means 4,096 elements.
We keep the original network and its 16x16 latent grid and add one 3x3 convolution at the end of
the encoder projecting 256 -> ``latent_channels`` = 16 channels (16x16x16 = 4,096, CR 12:1) and
one 3x3 convolution + ReLU at the start of the decoder back to 256. ``latent_channels=256``
removes both projections and gives the published code's network exactly (CR 0.75:1).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .codec_model import ModelConfig, check_image_batch

ORIGINAL_TRANSFORMS = ("original-cae", "original-crb")
CRB_LEVELS = 3  # the channel list [c, 2c, 4c, 8c] has three transitions, one downsampling each


class OriginalResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN-ReLU + identity (1x1 conv + BN when the channels change); no activation
    after the sum (the original follows every block with a separate ReLU)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
        )
        self.skip = nn.Identity() if in_ch == out_ch else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1),
                                                                         nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


def cae_transforms(channels: int, latent_channels: int) -> tuple[nn.Sequential, nn.Sequential]:
    """CAE_model.py with out_channels=``channels`` (64): 128x128x3 -> ``latent_channels``x4x4."""
    widths = [channels * 2**i for i in range(4)]  # 64, 128, 256, 512
    enc: list[nn.Module] = []
    in_ch = 3
    for w in widths:
        enc += [nn.Conv2d(in_ch, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        in_ch = w
    enc += [nn.Conv2d(in_ch, latent_channels, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
    dec: list[nn.Module] = []
    in_ch = latent_channels
    for w in reversed(widths):
        dec += [nn.ConvTranspose2d(in_ch, w, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(w),
                nn.ReLU(inplace=True)]
        in_ch = w
    dec += [nn.ConvTranspose2d(in_ch, 3, 3, stride=2, padding=1, output_padding=1), nn.Tanh()]
    return nn.Sequential(*enc), nn.Sequential(*dec)


def crb_transforms(channels: int, latent_channels: int, res_blocks: int) -> tuple[nn.Sequential, nn.Sequential]:
    """CRB_model.py with channels=[c, 2c, 4c, 8c] (c = ``channels`` = 32), residual_blocks_per_layer
    = ``res_blocks`` (2), plus the latent projection described in the module docstring."""
    if res_blocks < 1:
        raise ValueError("original-crb needs at least one residual block per level")
    widths = [channels * 2**i for i in range(CRB_LEVELS + 1)]  # 32, 64, 128, 256
    enc: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1)]
    for a, b in zip(widths[:-1], widths[1:]):
        enc += [OriginalResidualBlock(a, b), nn.ReLU(inplace=True)]
        for _ in range(res_blocks - 1):
            enc += [OriginalResidualBlock(b, b), nn.ReLU(inplace=True)]
        enc += [nn.Conv2d(b, b, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
    dec: list[nn.Module] = []
    if latent_channels != widths[-1]:
        enc.append(nn.Conv2d(widths[-1], latent_channels, 3, padding=1))
        dec += [nn.Conv2d(latent_channels, widths[-1], 3, padding=1), nn.ReLU(inplace=True)]
    back = widths[::-1]  # 256, 128, 64, 32
    for a, b in zip(back[:-1], back[1:]):
        dec += [OriginalResidualBlock(a, b), nn.ReLU(inplace=True)]
        for _ in range(res_blocks - 1):
            dec += [OriginalResidualBlock(b, b), nn.ReLU(inplace=True)]
        dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(b, b, 3, padding=1), nn.ReLU(inplace=True)]
    dec += [nn.Conv2d(widths[0], 3, 3, padding=1), nn.Tanh()]
    return nn.Sequential(*enc), nn.Sequential(*dec)


class FloatLatentAutoencoder(nn.Module):
    """Encoder ``g_a`` and decoder ``g_s`` around an unquantized float latent (``prior: none``).

    Same calling convention as :class:`EdgeCodecModel` so that the trainer drives both: images in
    [0, 1], mapped to [-1, 1] for the encoder (the original normalised its inputs to [-1, 1]);
    the tanh output mapped back. ``forward`` takes (and ignores) a quality and returns no
    likelihoods: there is no rate.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.transform not in ORIGINAL_TRANSFORMS:
            raise ValueError(f"a float-latent model's transform must be one of {ORIGINAL_TRANSFORMS}, "
                             f"not {config.transform!r}")
        if config.prior != "none":
            raise ValueError(f"{config.transform} has no entropy model: its prior must be 'none'")
        self.config = config
        if config.transform == "original-cae":
            self.g_a, self.g_s = cae_transforms(config.channels, config.latent_channels)
            self._stride = 32
        else:
            self.g_a, self.g_s = crb_transforms(config.channels, config.latent_channels, config.res_blocks)
            self._stride = 2**CRB_LEVELS

    @property
    def stride(self) -> int:
        """Inputs must have height and width divisible by this."""
        return self._stride

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, H, W) of the latent of one height x width image."""
        return self.config.latent_channels, height // self._stride, width // self._stride

    def compression_ratio(self, height: int = 128, width: int = 128) -> float:
        """The original's CR: input elements / latent elements (float latent, no file)."""
        c, h, w = self.latent_shape(height, width)
        return 3 * height * width / (c * h * w)

    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        """Latent of images (B, 3, H, W) in [0, 1]."""
        return self.g_a(x * 2 - 1)

    def synthesize(self, y: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from a latent."""
        return (self.g_s(y) + 1) / 2

    def forward(self, x: torch.Tensor, quality: torch.Tensor | None = None) -> dict[str, Any]:
        """x (B, 3, H, W) in [0, 1], H and W multiples of ``stride``; the float latent ``y`` is
        also ``y_hat`` (nothing is quantized) and there are no likelihoods. ``quality`` is ignored."""
        check_image_batch(x, self._stride, self)
        y = self.analyze(x)
        return {"x_hat": self.synthesize(y), "y": y, "y_hat": y, "likelihoods": {}}

    def aux_loss(self) -> torch.Tensor:
        """Zero: there is no entropy model to fit (the trainer calls this on every model)."""
        return torch.zeros(())

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the encoder, the decoder, and in all."""
        def count(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters())

        return {"encoder": count(self.g_a), "decoder": count(self.g_s), "total": count(self)}


def original_init_(module: nn.Module, std: float) -> None:
    """The original PatchGAN's initialisation (GCRB_model.py ``init_weights``): conv weights
    N(0, std) (std 0.2 there), BatchNorm weights N(1, 0.02) and biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
