"""Checkerboard spatial context on the gained hyperprior (He et al., "Checkerboard Context Model
for Efficient Learned Image Compression", CVPR 2021).

Half of the latent (the anchors, where row + column is even) is coded with the hyperprior's
parameters alone; the other half with parameters that also see the decoded anchors around it
through a 5x5 masked convolution. Decoding takes two passes instead of one, both parallel.

CompressAI's ``CheckerboardLatentCodec`` runs training (its two-pass forward); coding goes
through the exact integer path (``lite.context``), like the hyperprior's, so that both sides pick
the same rANS tables on any backend. What this module adds is the entropy-parameters network:
a residual on the hyper-synthesis output whose last layer starts at zero, so that a trained
hyperprior model warm-starts into a context model that codes exactly as it did.
"""

from __future__ import annotations

import torch
from compressai.latent_codecs import CheckerboardLatentCodec, GaussianConditionalLatentCodec
from compressai.layers import CheckerboardMaskedConv2d
from torch import nn

CONTEXT_KERNEL = 5


class ResidualEntropyParameters(nn.Module):
    """Pointwise network: [context, hyper params] -> hyper params + correction.

    Input channels: ``context_channels`` of context, then ``param_channels`` of hyper-synthesis
    output (CompressAI's ``CheckerboardLatentCodec.merge`` order). 1x1 convolutions and ReLUs only:
    the checkerboard codec needs a pointwise function, and the integer path supports ReLU."""

    def __init__(self, context_channels: int, param_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.context_channels = context_channels
        self.net = nn.Sequential(
            nn.Conv2d(context_channels + param_channels, hidden_channels, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, hidden_channels, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, param_channels, 1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.context_channels:] + self.net(x)


def checkerboard_latent_codec(latent_channels: int, context_channels: int) -> CheckerboardLatentCodec:
    """The y codec of a mean-scale model with checkerboard context (anchors: row + column even)."""
    params = 2 * latent_channels
    return CheckerboardLatentCodec(
        latent_codec={"y": GaussianConditionalLatentCodec(quantizer="ste", chunks=("scales", "means"))},
        entropy_parameters=ResidualEntropyParameters(context_channels, params, params),
        context_prediction=CheckerboardMaskedConv2d(latent_channels, context_channels, CONTEXT_KERNEL,
                                                    padding=CONTEXT_KERNEL // 2),
        anchor_parity="even",
        forward_method="twopass",
    )
