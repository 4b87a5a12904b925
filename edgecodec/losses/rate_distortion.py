"""Rate-distortion objective L = R + lambda * D for variable-rate training.

Each sample in a batch carries its own quality q in [0, 1]; its lambda is interpolated
geometrically between the per-level lambdas, matching how the model interpolates its gains.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..models.codec_model import interpolate_levels

# D is measured on [0, 1] images; scaling to 8-bit units keeps lambdas comparable to CompressAI's
# (lambda * 255^2 * MSE).
DISTORTION_SCALE = {"mse": 255.0**2, "l1": 255.0}


def bits_per_pixel(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated rate of each sample (B,) from the entropy model's likelihoods."""
    bits = sum(-torch.log2(lik).flatten(1).sum(1) for lik in likelihoods.values())
    return bits / num_pixels


def psnr(mse: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


class RateDistortionLoss(nn.Module):
    def __init__(self, lambdas: list[float], distortion: str = "mse", min_level: float = 0.0) -> None:
        super().__init__()
        self.min_level = min_level  # the model's ModelConfig.min_level
        if distortion not in DISTORTION_SCALE:
            raise ValueError(f"distortion must be one of {sorted(DISTORTION_SCALE)}")
        if len(lambdas) < 2:
            raise ValueError("need one lambda per quality level (at least 2)")
        self.distortion = distortion
        self.register_buffer("log_lambdas", torch.tensor([math.log(v) for v in lambdas]))

    def lambdas_for(self, quality: torch.Tensor) -> torch.Tensor:
        return interpolate_levels(self.log_lambdas, quality, self.min_level).exp()

    def forward(self, out: dict, x: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
        num_pixels = x.shape[-2] * x.shape[-1]
        bpp = bits_per_pixel(out["likelihoods"], num_pixels)
        err = out["x_hat"] - x
        mse = err.pow(2).flatten(1).mean(1)
        l1 = err.abs().flatten(1).mean(1)
        dist = mse if self.distortion == "mse" else l1
        lam = self.lambdas_for(quality)
        loss = (bpp + lam * DISTORTION_SCALE[self.distortion] * dist).mean()
        return {"loss": loss, "bpp": bpp.mean(), "distortion": dist.mean(), "mse": mse.mean(), "l1": l1.mean(),
                "psnr": psnr(mse).mean()}
