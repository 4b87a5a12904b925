"""The GCRB objective: rate + lambda-weighted (L1 + LPIPS) + adaptively weighted PatchGAN hinge loss.

One class holds the whole GAN objective, in the style of taming-transformers'
``VQLPIPSWithDiscriminator``: the discriminator, the frozen perceptual network and every weight
live here; the trainer only calls :meth:`generator_loss` and :meth:`discriminator_loss` and steps
the optimizers.

Generator (codec) loss, per batch of images x with per-image qualities q::

    L_G = mean(R) + mean(lambda(q) * S * (D(x, x_hat) + lambda_LPIPS * LPIPS(x, x_hat)))   # = R + L_rec
          + lambda_GAN * w * L_GAN,          L_GAN = -mean(Disc(x_hat))

R is the estimated rate in bits per pixel, D the L1 (or MSE) distortion of [0, 1] images, S its
8-bit scale (255 for L1, 255^2 for MSE; see rate_distortion.DISTORTION_SCALE), lambda(q) the
interpolated per-image lambda.

Design choice: the perceptual term is *inside* the lambda-weighted distortion, the adversarial
term *outside*.

* LPIPS is a distortion like L1: weighting both by lambda(q) keeps the rate-distortion trade-off
  of each quality level (a low-quality image is not asked for a perceptually perfect result it
  has no bits for) and keeps GCRB's rate range on top of CRB's, so GCRB can warm-start from a
  CRB checkpoint with the same lambdas.
* The adversarial gradient is rescaled by the adaptive weight
  ``w = ||grad_last L_rec|| / (||grad_last L_GAN|| + 1e-4)`` (clamped to [0, 1e4], detached),
  taken at the decoder's last convolution (Esser et al. 2021). Since L_rec already carries
  lambda, w makes lambda_GAN "the adversarial gradient as a fraction of the reconstruction
  gradient" for the batch; multiplying L_GAN by lambda too would largely cancel inside w. Keeping
  it outside also means the realism push per image does not shrink with lambda: at low quality,
  where distortion is weighted least, the adversarial term matters relatively most, which is
  where generated texture pays off (HiFiC).

Weights (defaults in train/config.py, gan section): lambda_LPIPS = 0.5, which is
taming-transformers' perceptual_weight 1.0 expressed for L1 measured on [0, 1] instead of
[-1, 1] images; lambda_GAN = 0.1, a fidelity-leaning setting (taming's VQGAN uses 0.8).

Discriminator loss (hinge): ``mean(relu(1 - Disc(x))) + mean(relu(1 + Disc(x_hat.detach())))``.
Before ``disc_start`` the GAN term is 0 (w is not computed) and the discriminator is not trained.
A conditional discriminator (HiFiC) sees the detached quantized latent y_hat of the image in
both passes.

Without a rate term (``lambdas=None``, ``train.rate: none``: the original experiment's float-latent
GCRB) the same objective reads, as in the original's GCRB_train.py::

    L_G = S_1 * L1(x, x_hat) + lambda_LPIPS * LPIPS(x, x_hat) + lambda_GAN * w * L_GAN

with S_1 = NO_RATE_SCALE["l1"] = 2 (its L1 is measured on [-1, 1] images), lambda_LPIPS = 0.7,
lambda_GAN = 0.05. ``alternate=True`` reproduces its schedule: from ``disc_start`` on, steps
alternate between a codec update (even steps counted from disc_start) and a discriminator update
(odd ones), each on its own batch; before disc_start every step is a codec update.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from ..models import EdgeCodecModel, PatchDiscriminator
from ..models.codec_model import quality_batch
from .perceptual import PerceptualDistance
from .rate_distortion import (DISTORTION_SCALE, NO_RATE_SCALE, RateDistortionLoss, bits_per_pixel, check_output,
                              psnr)

ADAPTIVE_EPS = 1e-4
ADAPTIVE_MAX = 1e4


def last_layer(model: EdgeCodecModel | nn.Module) -> nn.Parameter:
    """Weight of the last Conv2d / ConvTranspose2d of the synthesis transform ``g_s``.

    For CAE/CRB that is ``g_s[-2]`` (``g_s[-1]`` is the output tanh); for GDN ``g_s[-1]``.
    Accepts a DistributedDataParallel wrapper too.
    """
    model = getattr(model, "module", model)
    for module in reversed(list(model.g_s.modules())):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            return module.weight
    raise ValueError("the synthesis transform g_s has no Conv2d/ConvTranspose2d layer")


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss E[max(0, 1 - D(x))] + E[max(0, 1 + D(x_hat))]."""
    return F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean()


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` need no gradient inside the block (the generator step's D pass)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class GANRateDistortionLoss(nn.Module):
    """Rate + lambda * (distortion + lambda_LPIPS * LPIPS) + lambda_GAN * w * hinge GAN loss.

    Args:
        lambdas: per-quality-level lambdas (as RateDistortionLoss); None: no rate term.
        discriminator: the PatchGAN; its parameters are trained by the trainer's own optimizer.
        perceptual: frozen perceptual distance, or None for no perceptual term.
        distortion: "l1" (default) or "mse".
        perceptual_weight: lambda_LPIPS (relative to the distortion on [0, 1] images).
        gan_weight: lambda_GAN.
        disc_start: first step with an adversarial term and discriminator updates.
        adaptive_weight: use w (else w = 1).
        lpips_crop: evaluate LPIPS on a random ``lpips_crop`` square (same place for the whole
            batch) in training, or on the whole image downscaled to it when ``lpips_resize``;
            None uses the whole image. Validation always uses the whole image.
        conditional: the discriminator is conditioned on the detached y_hat.
        alternate: from disc_start on, alternate codec and discriminator updates (see above)
            instead of both on every step.
    """

    def __init__(self, lambdas: list[float] | None, discriminator: PatchDiscriminator,
                 perceptual: PerceptualDistance | None, distortion: str = "l1", perceptual_weight: float = 0.5,
                 gan_weight: float = 0.1, disc_start: int = 0, adaptive_weight: bool = True,
                 lpips_crop: int | None = None, lpips_resize: bool = False, conditional: bool = False,
                 min_level: float = 0.0, alternate: bool = False) -> None:
        super().__init__()
        if not isinstance(discriminator, nn.Module):
            raise TypeError(f"discriminator must be a module (a PatchDiscriminator), not {type(discriminator).__name__}")
        if perceptual is not None and not callable(perceptual):  # e.g. a backend name: build_perceptual(name)
            raise TypeError(f"perceptual must be a distance module (build_perceptual(...)) or None, not "
                            f"{type(perceptual).__name__}")
        self.rd = RateDistortionLoss(lambdas, distortion, min_level)
        self.rate = self.rd.rate
        self.distortion = distortion
        self.scale = DISTORTION_SCALE[distortion] if self.rate else NO_RATE_SCALE[distortion]
        self.alternate = bool(alternate)
        self.discriminator = discriminator
        self.perceptual = perceptual
        self.perceptual_weight = float(perceptual_weight)
        self.gan_weight = float(gan_weight)
        self.disc_start = int(disc_start)
        self.adaptive_weight = bool(adaptive_weight)
        self.lpips_crop = int(lpips_crop) if lpips_crop else None
        self.lpips_resize = bool(lpips_resize)
        self.conditional = bool(conditional)

    # --- pieces ------------------------------------------------------------------------------
    def gan_active(self, step: int) -> bool:
        """Adversarial term in the generator loss and discriminator updates from disc_start on."""
        return step >= self.disc_start and self.gan_weight > 0

    def updates_codec(self, step: int) -> bool:
        """Whether ``step`` updates the codec (always, unless alternating past disc_start on an odd step)."""
        return not (self.alternate and self.gan_active(step) and (step - self.disc_start) % 2)

    def updates_discriminator(self, step: int) -> bool:
        """Whether ``step`` updates the discriminator."""
        return self.gan_active(step) and (not self.alternate or (step - self.disc_start) % 2 == 1)

    def _cond(self, out: dict) -> torch.Tensor | None:
        return out["y_hat"].detach() if self.conditional else None

    def discriminate(self, images: torch.Tensor, out: dict) -> torch.Tensor:
        """Patch logits for images in [0, 1] (the discriminator works on [-1, 1])."""
        return self.discriminator(images * 2 - 1, self._cond(out))

    def perceptual_distance(self, x_hat: torch.Tensor, x: torch.Tensor, crop: bool) -> torch.Tensor:
        """LPIPS per image (B,), on the configured crop / downscale when ``crop``."""
        if self.perceptual is None or self.perceptual_weight == 0:
            return x.new_zeros(x.shape[0])
        size = self.lpips_crop
        h, w = x.shape[-2:]
        if crop and size and size < min(h, w):
            if self.lpips_resize:
                x, x_hat = (F.interpolate(t, size=(size, size), mode="area") for t in (x, x_hat))
            else:  # one random window for the whole batch, from the global (checkpointed) RNG
                top = int(torch.randint(h - size + 1, (1,)))
                left = int(torch.randint(w - size + 1, (1,)))
                x, x_hat = (t[..., top:top + size, left:left + size] for t in (x, x_hat))
        return self.perceptual(x_hat, x)

    def reconstruction_terms(self, out: dict, x: torch.Tensor, quality: torch.Tensor | None,
                             crop: bool = True) -> dict[str, torch.Tensor]:
        """Rate and lambda-weighted reconstruction: everything but the adversarial term. Without
        rate: S * D + lambda_LPIPS * LPIPS (and no "rate" / "bpp" terms)."""
        check_output(out, x, self.rate)
        x_hat = out["x_hat"]
        mse, l1 = self.rd.errors(x_hat, x)
        dist = l1 if self.distortion == "l1" else mse
        lp = self.perceptual_distance(x_hat, x, crop)
        terms = {"distortion": dist.mean(), "mse": mse.mean(), "l1": l1.mean(), "lpips": lp.mean(),
                 "psnr": psnr(mse).mean()}
        if not self.rate:
            rec = (self.scale * dist + self.perceptual_weight * lp).mean()
            return {"loss": rec, "rec": rec, **terms}
        bpp = bits_per_pixel(out["likelihoods"], x.shape[-2] * x.shape[-1])
        lam = self.rd.lambdas_for(quality_batch(quality, x.shape[0], x.device))
        rec = (lam * self.scale * (dist + self.perceptual_weight * lp)).mean()
        rate = bpp.mean()
        return {"loss": rate + rec, "rate": rate, "rec": rec, "bpp": rate, **terms}

    def adaptive(self, rec: torch.Tensor, g_loss: torch.Tensor, layer: torch.Tensor | None) -> torch.Tensor:
        """w = ||grad_layer rec|| / (||grad_layer g_loss|| + 1e-4), clamped to [0, 1e4], detached."""
        if not self.adaptive_weight:
            return torch.ones((), device=rec.device)
        if layer is None:
            raise ValueError("the adaptive GAN weight needs the decoder's last layer (see last_layer())")
        rec_grad = torch.autograd.grad(rec, layer, retain_graph=True)[0]
        g_grad = torch.autograd.grad(g_loss, layer, retain_graph=True)[0]
        w = rec_grad.norm() / (g_grad.norm() + ADAPTIVE_EPS)
        return w.clamp(0.0, ADAPTIVE_MAX).detach()

    # --- the two objectives ------------------------------------------------------------------
    def generator_loss(self, out: dict, x: torch.Tensor, quality: torch.Tensor, step: int,
                       layer: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """L_G and its terms. The discriminator's parameters get no gradient from it."""
        terms = self.reconstruction_terms(out, x, quality, crop=True)
        zero = terms["rec"].new_zeros(())
        if self.gan_active(step):
            with frozen(self.discriminator):
                g_loss = -self.discriminate(out["x_hat"], out).mean()
            w = self.adaptive(terms["rec"], g_loss, layer)
            terms["loss"] = terms["loss"] + self.gan_weight * w * g_loss
        else:
            g_loss, w = zero, zero
        terms.update(g_loss=g_loss, w=w)
        return terms

    def discriminator_loss(self, out: dict, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Hinge loss on real x and detached reconstructions; mean logits for monitoring."""
        logits_real = self.discriminate(x, out)
        logits_fake = self.discriminate(out["x_hat"].detach(), out)
        return {"d_loss": hinge_d_loss(logits_real, logits_fake),
                "d_real": logits_real.detach().mean(), "d_fake": logits_fake.detach().mean()}

    def forward(self, out: dict, x: torch.Tensor, quality: torch.Tensor, optimizer_idx: int, step: int,
                layer: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """taming-style entry point: optimizer_idx 0 is the codec, 1 the discriminator."""
        if optimizer_idx == 0:
            return self.generator_loss(out, x, quality, step, layer)
        if optimizer_idx == 1:
            return self.discriminator_loss(out, x)
        raise ValueError(f"optimizer_idx is 0 (the codec) or 1 (the discriminator), not {optimizer_idx!r}")
