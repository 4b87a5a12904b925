"""Training objectives: rate-distortion (CAE/CRB/GDN), the GCRB GAN objective, perceptual distances."""

from .gan import GANRateDistortionLoss, hinge_d_loss, last_layer
from .perceptual import PERCEPTUAL_BACKENDS, PerceptualBackendError, PerceptualDistance, build_perceptual
from .rate_distortion import DISTORTION_SCALE, NO_RATE_SCALE, RateDistortionLoss, bits_per_pixel, psnr

__all__ = [
    "DISTORTION_SCALE",
    "GANRateDistortionLoss",
    "NO_RATE_SCALE",
    "PERCEPTUAL_BACKENDS",
    "PerceptualBackendError",
    "PerceptualDistance",
    "RateDistortionLoss",
    "bits_per_pixel",
    "build_perceptual",
    "hinge_d_loss",
    "last_layer",
    "psnr",
]
