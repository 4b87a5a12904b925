"""Training objectives."""

from .rate_distortion import RateDistortionLoss, bits_per_pixel, psnr

__all__ = ["RateDistortionLoss", "bits_per_pixel", "psnr"]
