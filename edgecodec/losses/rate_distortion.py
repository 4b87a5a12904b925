"""Rate-distortion objective L = R + lambda * D for variable-rate training.

Each sample in a batch carries its own quality q in [0, 1]; its lambda is interpolated
geometrically between the per-level lambdas, matching how the model interpolates its gains.

Without lambdas (``train.rate: none``, the original experiment's float-latent autoencoders) there
is no rate term and the loss is the distortion alone, measured as the original measured it: on
images in [-1, 1], i.e. ``NO_RATE_SCALE`` times the distortion of [0, 1] images.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..models.codec_model import interpolate_levels, quality_batch

# D is measured on [0, 1] images; scaling to 8-bit units keeps lambdas comparable to CompressAI's
# (lambda * 255^2 * MSE).
DISTORTION_SCALE = {"mse": 255.0**2, "l1": 255.0}
# No rate term: D of [-1, 1] images (the original's F.l1_loss / F.mse_loss on its normalised tensors).
NO_RATE_SCALE = {"mse": 4.0, "l1": 2.0}


def bits_per_pixel(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated rate of each sample (B,) from the entropy model's likelihoods; a zero tensor when
    there are none (the float-latent ``original-*`` models)."""
    if not likelihoods:
        return torch.zeros(())
    bits = sum(-torch.log2(lik).flatten(1).sum(1) for lik in likelihoods.values())
    return bits / num_pixels


def check_output(out: dict, x: torch.Tensor, rate: bool) -> None:
    """TypeError / ValueError when a loss is given something other than (a model's output dict, its
    input batch): swapped arguments failed with an IndexError deep in the distortion."""
    keys = ("x_hat", "likelihoods") if rate else ("x_hat",)
    if not isinstance(out, dict) or any(k not in out for k in keys):
        raise TypeError(f"the loss takes (out, x, quality): out the model's output, a dict with {keys}")
    if not isinstance(x, torch.Tensor) or out["x_hat"].shape != x.shape:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x_hat {tuple(out['x_hat'].shape)} and x {shape} differ in shape")


def psnr(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of mean squared errors of [0, 1] images."""
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


class RateDistortionLoss(nn.Module):
    """``R + lambda(q) * S * D``; with ``lambdas=None`` (no rate) ``NO_RATE_SCALE * D``.

    ``lambdas``: one per quality level of the model (``ModelConfig.levels``), and ``min_level`` the
    model's ``ModelConfig.min_level``, so that a quality means the same level here as in the model's
    gains (the shipped ``fidelity`` has -0.5: ``RateDistortionLoss(lambdas,
    min_level=model.config.min_level)``)."""

    def __init__(self, lambdas: list[float] | None, distortion: str = "mse", min_level: float = 0.0) -> None:
        super().__init__()
        self.min_level = min_level  # the model's ModelConfig.min_level
        if distortion not in DISTORTION_SCALE:
            raise ValueError(f"distortion must be one of {sorted(DISTORTION_SCALE)}")
        self.rate = lambdas is not None
        if self.rate and len(lambdas) < 2:
            raise ValueError("need one lambda per quality level (at least 2)")
        if self.rate and not all(v > 0 for v in lambdas):
            raise ValueError(f"lambdas must be positive, got {list(lambdas)}")
        self.distortion = distortion
        self.register_buffer("log_lambdas", torch.tensor([math.log(v) for v in lambdas or []]))

    def lambdas_for(self, quality: torch.Tensor) -> torch.Tensor:
        """lambda at each quality (B,) in [0, 1], interpolated geometrically between the levels'."""
        if not self.rate:
            raise ValueError("a loss without rate term has no lambdas")
        return interpolate_levels(self.log_lambdas, quality, self.min_level).exp()

    @staticmethod
    def errors(x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image MSE and L1 (B,) of [0, 1] images."""
        err = x_hat - x
        return err.pow(2).flatten(1).mean(1), err.abs().flatten(1).mean(1)

    def forward(self, out: dict, x: torch.Tensor, quality: torch.Tensor | float | None) -> dict[str, torch.Tensor]:
        """The loss and its terms (batch means) of a model's output ``out`` (``model(x, quality)``)
        for its input ``x``, at the qualities it was run at (a (B,) tensor or one number)."""
        check_output(out, x, self.rate)
        mse, l1 = self.errors(out["x_hat"], x)
        dist = mse if self.distortion == "mse" else l1
        terms = {"distortion": dist.mean(), "mse": mse.mean(), "l1": l1.mean(), "psnr": psnr(mse).mean()}
        if not self.rate:
            return {"loss": NO_RATE_SCALE[self.distortion] * dist.mean(), **terms}
        bpp = bits_per_pixel(out["likelihoods"], x.shape[-2] * x.shape[-1])
        lam = self.lambdas_for(quality_batch(quality, x.shape[0], x.device))
        loss = (bpp + lam * DISTORTION_SCALE[self.distortion] * dist).mean()
        return {"loss": loss, "bpp": bpp.mean(), **terms}
