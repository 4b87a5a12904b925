"""Encoder-side latent refinement: more encoding time for fewer bytes at the same quality.

The analysis transform g_a is amortised inference: one pass guesses the latent that minimises the
training objective ``R + lambda * D`` for any image. Optimising the latent of the one image being
coded lowers that objective further (Campos et al., "Content Adaptive Optimization for Neural Image
Compression", 2019; Yang, Bamler & Mandt, "Improving Inference for Neural Image Compression",
NeurIPS 2020). Only the encoder changes: the bitstream, the format and every decoder (torch and
``edgecodec.lite``) stay as they are, so refined files decode anywhere.

The relaxation of rounding is Yang et al.'s stochastic Gumbel annealing (SGA): each quantized value
is a Gumbel-softmax mix of its floor and ceiling, and the temperature falls towards hard rounding,
for the rate and the distortion alike. Measured here (fidelity, kodim01 at quality 0.5, 50 steps):
SGA gave 6% fewer bytes and +0.16 dB; straight-through rounding lost 0.9 dB, and uniform noise for
the rate (the training proxy) drifted away from what rounding gives (-0.46 dB after 100 steps).

The result is kept only if it measures better than the unrefined latent on the real objective:
the bytes of the actual streams plus lambda times the distortion of the actual decoded image.

Written here: CompressAI and the other maintained libraries have no inference-time latent
optimisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from compressai.latent_codecs import CheckerboardLatentCodec
from compressai.ops import quantize_ste

from .. import zoo
from ..errors import UsageError
from ..losses.rate_distortion import DISTORTION_SCALE, RateDistortionLoss
from ..models import EdgeCodecModel

# Adam on the gained latent (the values that get rounded, in quantization steps), cosine decay;
# temperature annealed geometrically from TAU_START to TAU_END over the steps. First chosen on two
# Kodak images, then checked on training photos (benchmarks/refine_settings.py, 6 crops x qualities
# 0 / 0.5 / 1, 50 steps): mean objective change -7.4% here; lr 0.03 / 0.1 / 0.2: -7.3 / -7.2 / -6.1%;
# tau 1 -> 0.05, 0.25 -> 0.05, 0.5 -> 0.15, 0.5 -> 0.02: -6.8 / -7.0 / -7.1 / -7.0%.
LEARNING_RATE = 0.05
TAU_START, TAU_END = 0.5, 0.05
SEED = 0  # the Gumbel noise is seeded: the same image, settings and thread count give the same bytes
# Recorded with evaluation rows of refined encodes, so changed settings are measured again.
SETTINGS_ID = f"sga-lr{LEARNING_RATE:g}-tau{TAU_START:g}-{TAU_END:g}-seed{SEED}"


class RefinementUnsupported(UsageError):
    """The model cannot be refined (no rate-distortion training objective to optimise)."""


def refinement_objective(model_name: str) -> RateDistortionLoss:
    """The rate-distortion objective the named model was trained with, from its model card.

    Models trained against a discriminator are refused: their objective includes an adversarial
    term that cannot be evaluated here (the discriminator is not shipped), and optimising the
    distortion term alone would trade their texture for PSNR. Keeping their perceptual term
    (``R + lambda * S * (MSE + 0.6 * ST-LPIPS)``) was tried and attacks the metric instead: over 25
    steps on three Kodak images at quality 0.3, ST-LPIPS with the AlexNet trunk it optimises fell
    49-64% while ST-LPIPS with the VGG trunk, held out, rose 3-14%, with 4-21% more bytes and
    0.5-0.9 dB less PSNR (benchmarks/refine_perceptual.py)."""
    model, _ = zoo.load_model(model_name)
    card = zoo.find_model(model_name).card
    if not isinstance(model, EdgeCodecModel) or model.config.prior == "factorized":
        raise RefinementUnsupported("encoder refinement needs a hyperprior model")
    if model.config.discriminator:
        raise RefinementUnsupported(
            "encoder refinement optimises the rate-distortion objective, and this model was trained with a "
            "perceptual and adversarial loss: refine a fidelity model (e.g. --model fidelity)")
    train = (card.get("training") or {}).get("train") or {}
    lambdas, distortion = train.get("lambdas"), train.get("distortion")
    if not lambdas or distortion not in DISTORTION_SCALE:
        raise RefinementUnsupported("the model card records no rate-distortion objective (train.lambdas, "
                                    "train.distortion) to refine with")
    return RateDistortionLoss(list(lambdas), distortion, model.config.min_level)


def _soft_round(v: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """SGA: floor(v) + a Gumbel-softmax weight on the ceiling. The logits grow with closeness
    (-atanh of the distance), sharpened by the temperature ``tau``."""
    floor = torch.floor(v)
    frac = v - floor
    eps = 1e-5
    logits = torch.stack([-torch.atanh(frac.clamp(eps, 1 - eps)), -torch.atanh((1 - frac).clamp(eps, 1 - eps))],
                         -1) / tau
    uniform = torch.rand(logits.shape, generator=generator).clamp_min(1e-20)
    weights = torch.softmax(logits - torch.log(-torch.log(uniform)), -1)
    return floor + weights[..., 1]


def _checkerboard_soft(codec: CheckerboardLatentCodec, side: torch.Tensor, u: torch.Tensor, tau: float,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scales, means and soft-rounded y of a checkerboard model: the anchors' from the hyper
    parameters alone, the others' also from the soft-rounded anchors (the coding order)."""
    anchor = codec._keep_only(torch.ones_like(u[:, :1]), "anchor").bool()
    no_context = side.new_zeros((side.shape[0], codec.context_prediction.out_channels, *side.shape[2:]))
    scales_a, means_a = codec.entropy_parameters(codec.merge(no_context, side)).chunk(2, 1)
    y_anchor = torch.where(anchor, _soft_round(u - means_a, tau, generator) + means_a, 0.0)
    scales_n, means_n = codec.entropy_parameters(codec.merge(codec.context_prediction(y_anchor), side)).chunk(2, 1)
    means = torch.where(anchor, means_a, means_n)
    y_soft = torch.where(anchor, y_anchor, _soft_round(u - means_n, tau, generator) + means_n)
    return torch.where(anchor, scales_a, scales_n), means, y_soft


def _relaxed_loss(model: EdgeCodecModel, objective: RateDistortionLoss, u: torch.Tensor, x: torch.Tensor,
                  gains: dict[str, torch.Tensor], quality: torch.Tensor, size: tuple[int, int], tau: float,
                  generator: torch.Generator) -> torch.Tensor:
    """The training objective ``R + lambda * S * D`` of the gained latent ``u``, with soft-rounded y and
    straight-through z; the padding is not scored."""
    hyper = model.latent_codec["hyper"]
    eb, gc = hyper.entropy_bottleneck, model.gaussian_conditional
    medians = eb.quantiles[:, 0, 1].reshape(1, -1, 1, 1)
    z = hyper.h_a(u / gains["y_gain"]) * gains["z_gain"]
    z_hat = quantize_ste(z - medians) + medians  # z is small: rounded as coded, gradients straight through
    # EntropyBottleneck._likelihood takes (channels, 1, values); reshaped back to one sample below
    z_lik = eb.likelihood_lower_bound(eb._likelihood(z_hat.transpose(0, 1).reshape(z.shape[1], 1, -1))[0])
    params = hyper.h_s(z_hat * gains["z_gain_inv"])
    if model.config.context == "checkerboard":
        scales, means, y_soft = _checkerboard_soft(model.latent_codec["y"], params, u, tau, generator)
    else:
        scales, means = params.chunk(2, 1) if model.config.prior == "meanscale" else (params, torch.zeros_like(u))
        y_soft = _soft_round(u - means, tau, generator) + means
    y_lik = gc.likelihood_lower_bound(gc._likelihood(y_soft, scales, means))
    h, w = size
    x_hat = model._image(y_soft * gains["y_gain_inv"])[..., :h, :w]
    out = {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik.reshape(1, -1)}}
    return objective(out, x[..., :h, :w], quality)["loss"]


def refine_latent(model: EdgeCodecModel, objective: RateDistortionLoss, x: torch.Tensor, y: torch.Tensor,
                  quality: float, steps: int, size: tuple[int, int]) -> torch.Tensor:
    """``y`` optimised for ``steps`` gradient steps on image ``x`` (1, 3, H, W, padded) at ``quality``;
    ``size``: the image's own height and width (the padding is not scored)."""
    quality_t = torch.tensor([quality])
    with torch.no_grad():
        gains = model.gains(quality_t)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        u = (y * gains["y_gain"]).detach().requires_grad_(True)
        optimizer = torch.optim.Adam([u], lr=LEARNING_RATE)
        generator = torch.Generator().manual_seed(SEED)
        with torch.enable_grad():
            for step in range(steps):
                progress = step / steps
                optimizer.param_groups[0]["lr"] = LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * progress))
                tau = TAU_START * (TAU_END / TAU_START) ** progress
                loss = _relaxed_loss(model, objective, u, x, gains, quality_t, size, tau, generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return (u / gains["y_gain"]).detach()


@dataclass(frozen=True)
class RefinedStreams:
    strings: list[bytes]
    refined: bool  # False: the unrefined latent measured better and was kept
    refined_objective: float  # real R + lambda * S * D of the refined streams (bits per pixel units), kept or not
    unrefined_objective: float

    @property
    def objective(self) -> float:
        """Real ``R + lambda * S * D`` of the streams kept."""
        return self.refined_objective if self.refined else self.unrefined_objective


def real_objective(model: EdgeCodecModel, objective: RateDistortionLoss, strings: list[bytes],
                   shape: tuple[int, int], quality: float, rgb: np.ndarray) -> float:
    """``R + lambda * S * D`` of actual streams: their bytes, and the 8-bit image they decode to."""
    h, w = rgb.shape[:2]
    decoded = model.decompress(strings, shape, quality)[0, :, :h, :w]
    decoded = decoded.mul(255).round().permute(1, 2, 0).double().numpy()
    err = (decoded - rgb.astype(np.float64)) / 255.0
    distortion = float((err**2).mean() if objective.distortion == "mse" else np.abs(err).mean())
    lam = float(objective.lambdas_for(torch.tensor([quality]))[0])
    return 8 * sum(map(len, strings)) / (h * w) + lam * DISTORTION_SCALE[objective.distortion] * distortion


def encode_refined(model: EdgeCodecModel, objective: RateDistortionLoss, x: torch.Tensor, y: torch.Tensor,
                   rgb: np.ndarray, quality: float, steps: int) -> RefinedStreams:
    """Streams of the refined latent, or of ``y`` itself if those measure better."""
    shape = tuple(y.shape[-2:])
    plain = model.compress_latent(y, quality)["strings"]
    plain_j = real_objective(model, objective, plain, shape, quality, rgb)
    y_refined = refine_latent(model, objective, x, y, quality, steps, rgb.shape[:2])
    refined = model.compress_latent(y_refined, quality)["strings"]
    refined_j = real_objective(model, objective, refined, shape, quality, rgb)
    if refined_j < plain_j:
        return RefinedStreams(refined, True, refined_j, plain_j)
    return RefinedStreams(plain, False, refined_j, plain_j)
