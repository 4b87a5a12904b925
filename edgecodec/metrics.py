"""Image quality metrics on 8-bit RGB, the way the field reports them (PSNR per image, MS-SSIM)."""

from __future__ import annotations

import math

import numpy as np
import torch

# MS-SSIM with 5 scales and an 11-px window needs a side of more than 160 px.
MS_SSIM_MIN_SIDE = 161


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (inf when identical)."""
    mse = np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _nchw(image: np.ndarray) -> torch.Tensor:
    arr = image if image.ndim == 3 else image[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].double()


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """MS-SSIM (pytorch-msssim) on 0-255 data; NaN for images too small for 5 scales."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(reference.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan
    return float(_ms_ssim(_nchw(reference), _nchw(decoded), data_range=255.0))


def ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    from pytorch_msssim import ssim as _ssim

    if min(reference.shape[:2]) < 11:
        return math.nan
    return float(_ssim(_nchw(reference), _nchw(decoded), data_range=255.0))
