"""Image quality metrics on 8-bit RGB, the way the field reports them (PSNR per image, MS-SSIM)."""

from __future__ import annotations

import math

import numpy as np
import torch

# MS-SSIM with 5 scales and an 11-px window needs a side of more than 160 px.
MS_SSIM_MIN_SIDE = 161


def _check_pair(reference: np.ndarray, decoded: np.ndarray) -> None:
    """Two 8-bit images of one shape, (H, W) or (H, W, C): floats in [0, 1] gave a PSNR 48 dB too
    high against the 255 peak, and another shape broadcast into a number."""
    for name, image in (("reference", reference), ("decoded", decoded)):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            kind = f"{type(image).__name__} of {image.dtype}" if hasattr(image, "dtype") else type(image).__name__
            raise TypeError(f"{name}: the metrics take uint8 numpy images (0-255), not a {kind}")
    if reference.shape != decoded.shape or reference.ndim not in (2, 3):
        raise ValueError(f"the metrics compare two images of one shape, (H, W) or (H, W, C); got "
                         f"{reference.shape} and {decoded.shape}")


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB between two uint8 images of one shape (inf when identical)."""
    _check_pair(reference, decoded)
    mse = np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _nchw(image: np.ndarray) -> torch.Tensor:
    arr = image if image.ndim == 3 else image[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].double()


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """MS-SSIM (pytorch-msssim) of two uint8 images of one shape, (H, W) or (H, W, C); NaN for
    images too small for 5 scales."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    _check_pair(reference, decoded)

    if min(reference.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan
    return float(_ms_ssim(_nchw(reference), _nchw(decoded), data_range=255.0))


def ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """SSIM (pytorch-msssim, 11-pixel Gaussian window) of two uint8 images of one shape, (H, W)
    or (H, W, C); NaN for sides under 11 pixels."""
    from pytorch_msssim import ssim as _ssim

    _check_pair(reference, decoded)

    if min(reference.shape[:2]) < 11:
        return math.nan
    return float(_ssim(_nchw(reference), _nchw(decoded), data_range=255.0))
