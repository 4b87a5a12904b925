"""Quality maps: a quality per latent pixel (16 x 16 image pixels), so that parts of an image (a
region of interest) get more bits than the rest (the ``qmap`` extra of format version 5, one
quality per 64 x 64 cell, and the ``qlat`` extra of versions 6 and 7, one per latent pixel;
docs/format.md).

The gain units that make one model variable-rate (Cui et al., CVPR 2021) are per channel; a map
applies the gains of each latent pixel's quality to that pixel instead. y's gain and inverse gain
follow the map; z has one pixel per 4 x 4 latent pixels and takes their mean quality. Both sides
compute the Gaussian parameters from the same z symbols and the same fixed-point z gains
(``ExactEntropyModel.side``), so decoding stays exact. Where the quality changes within a z pixel,
the hyper-synthesis predicts Gaussian parameters for its mean quality; version 7 rescales them to
each latent pixel's own (``matched_ratio``). In memory a map is always at latent resolution (a
version-5 map is expanded), and the encoder writes the coarser ``qmap`` when the map allows it,
so that the file still decodes with version-5 decoders. Torch-free: the lite coders use it too.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

from ..codec.container import GAIN_MATCHED_VERSION, QMAP, QMAP_LATENT, QUALITY_SCALE, Container, check_quality
from ..errors import FormatError, UsageError
from .hyper import GAIN_BITS, fixed_gain, gain
from .tiles import HYPER_STRIDE, LATENT_STRIDE, Region, check_region

CELL = LATENT_STRIDE * HYPER_STRIDE  # image pixels per side of a version-5 map cell (one z pixel, 64)
# A region's quality reaches this many pixels beyond it: the synthesis draws each decoded pixel
# from latent pixels around it. On the 24 Kodak images (benchmarks/roi.py --margin, fidelity,
# format 7, the margin at MARGIN_WEIGHT), 48- to 160-pixel squares added 11-25% fewer bytes with
# no margin than with 8 pixels but decoded 0.03-0.10 dB lower; with 16 pixels they added 12-30%
# more bytes and decoded no better (within 0.012 dB).
MARGIN = 8
# Latent pixels that only the margin reaches need less than the region's quality: they only feed
# the region's edge. Chosen on 24 crops of the training photos (not Kodak; fidelity, 0.2 / 0.8):
# at 0.75 of the way to the region's quality, the squares added 5-10% fewer bytes than at full
# weight for at most 0.010 dB; at 0.5, 9-19% fewer for up to 0.04 dB. On the 24 Kodak images
# (benchmarks/roi.py against --margin-weight 1): 4-10% fewer for the squares and 3% for the
# central third, every PSNR within 0.02 dB.
MARGIN_WEIGHT = 0.75
_SHAPE = struct.Struct("<HH")  # rows, columns

# One quality for the whole image, or a (latent rows, latent columns) float64 array of them.
Quality = Union[float, np.ndarray]


def encode_quality_map(q16: np.ndarray) -> bytes:
    """A ``qmap`` or ``qlat`` extra of a (rows, cols) map of 16-bit qualities (quality * 65535):
    the shape, then the values as little-endian uint16 in raster order, zlib-compressed (a map is
    mostly runs of a few values)."""
    q16 = np.asarray(q16)
    if q16.ndim != 2 or 0 in q16.shape or max(q16.shape) > 0xFFFF:
        raise ValueError(f"a quality map is a 2-D array, not shape {q16.shape}")
    if q16.min() < 0 or q16.max() > QUALITY_SCALE:
        raise ValueError("quality map values are 16-bit qualities, 0 to 65535")
    return _SHAPE.pack(*q16.shape) + zlib.compress(q16.astype("<u2").tobytes(), 9)


def decode_quality_map(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The qualities (float64, in [0, 1]) of a ``qmap`` or ``qlat`` extra, which must have
    ``shape`` (the file's hyper-latent or latent shape). Inflates at most one byte more than the
    map holds, so a hostile extra cannot expand beyond it."""
    if len(data) < _SHAPE.size or _SHAPE.unpack_from(data) != tuple(shape):
        found = "x".join(map(str, _SHAPE.unpack_from(data))) if len(data) >= _SHAPE.size else "no shape"
        raise FormatError(f"corrupted .edc file: quality map of {found} values, the image needs "
                          f"{shape[0]}x{shape[1]}")
    size = 2 * shape[0] * shape[1]
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data[_SHAPE.size:], size + 1)
    except zlib.error:
        raise FormatError("corrupted .edc file: quality map is not a zlib stream") from None
    if len(raw) != size or not inflater.eof or inflater.unused_data:
        raise FormatError("corrupted .edc file: quality map of the wrong length")
    return np.frombuffer(raw, dtype="<u2").reshape(shape).astype(np.float64) / QUALITY_SCALE


def map_under(quality: Quality, rows: slice, cols: slice) -> Quality:
    """The part of a map under latent ``rows`` and ``cols`` (a tile), or the one quality."""
    return quality[rows, cols] if isinstance(quality, np.ndarray) else quality


def hyper_quality(quality: Quality) -> Quality:
    """The quality of z's pixels: the mean of each one's 4 x 4 latent pixels' 16-bit qualities,
    rounded half up in integers (so every platform gets the same), or the one quality. The map's
    sides are multiples of 4 (the latent of a padded image). The mean, because z's gains set the
    scales that the hyper-synthesis predicts for all 16 of them: with the highest quality instead,
    the central-third regions of benchmarks/roi.py added 16% more bytes to the background's file
    on 6 Kodak images (fidelity, 0.2 / 0.8), and with the lowest 18% more. With version 7's
    rescaling (``matched_ratio``) the mean still costs least: on the same images, the central
    third and 48- and 96-pixel squares, y's estimated extra bits were 7-26% more with the highest
    and 5-14% more with the lowest."""
    if not isinstance(quality, np.ndarray):
        return quality
    rows, cols = quality.shape[0] // HYPER_STRIDE, quality.shape[1] // HYPER_STRIDE
    q16 = np.rint(quality * QUALITY_SCALE).astype(np.int64)  # exact: a map holds multiples of 1/65535
    total = q16.reshape(rows, HYPER_STRIDE, cols, HYPER_STRIDE).sum(axis=(1, 3))
    return (total + HYPER_STRIDE**2 // 2) // HYPER_STRIDE**2 / QUALITY_SCALE


def matched_ratio(log_gain_inv: np.ndarray, quality: Quality, min_level: float) -> np.ndarray | None:
    """Format version 7: for each latent pixel of a map and each channel, y's inverse gain at its z
    pixel's quality (``hyper_quality``) over the one at its own, in GAIN_BITS fixed point, (M, h, w)
    int64; None where every latent pixel has its z pixel's quality (one quality, or a map constant
    over each 4 x 4 block, as version 5's).

    Why: the hyper-synthesis predicts y's scales and means for the z pixel's quality, but a latent
    pixel is coded at its own gain. Scaling the prediction by the ratio of the gains (the decoder's
    inverse gains: it has no others) makes it that pixel's again. Applied to the hyper-synthesis
    output, before the checkerboard context's networks: on 6 Kodak images (fidelity, background
    0.2, region 0.8, a float rate estimate of y) that cut the bits a region adds by 20-37%, after
    them by 16-33%; the ratio to the power 0.8 or 1.2 instead saved no more. In files on the 24
    Kodak images (benchmarks/roi.py against version 6), regions added 16% (fidelity) and 22%
    (perceptual) fewer bytes for the central third and 14-32% and 18-41% fewer for 48- to
    160-pixel squares. Integer division of fixed-point gains
    (``fixed_gain``, itself exact on every platform), so both sides get the same ratios."""
    if not isinstance(quality, np.ndarray):
        return None
    shared = np.repeat(np.repeat(hyper_quality(quality), HYPER_STRIDE, axis=0), HYPER_STRIDE, axis=1)
    if np.array_equal(shared, quality):
        return None

    def fixed(q: np.ndarray) -> np.ndarray:
        return per_pixel(lambda v: fixed_gain(log_gain_inv, v, min_level), q)

    own = fixed(quality)
    return ((fixed(shared) << GAIN_BITS) + own // 2) // own


def gains_matched(version: int) -> bool:
    """Whether a file of this format version was coded with ``matched_ratio`` (version 7 on)."""
    return version >= GAIN_MATCHED_VERSION


def per_pixel(values_of: Callable[[Quality], np.ndarray], quality: Quality) -> np.ndarray:
    """Per-channel values of one quality, (C,), or of each pixel of a map, (C, h, w).
    ``values_of`` maps qualities (any shape) to values (..., C); a map's distinct qualities are
    evaluated once each, so a large map costs no more than its output."""
    if not isinstance(quality, np.ndarray):
        return values_of(quality)
    distinct, index = np.unique(quality, return_inverse=True)
    return np.moveaxis(values_of(distinct), -1, 0)[:, index.reshape(quality.shape)]


def over_grid(values: np.ndarray) -> np.ndarray:
    """``per_pixel``'s values, shaped to multiply a (C, h, w) latent: (C,) -> (C, 1, 1)."""
    return values[:, None, None] if values.ndim == 1 else values


def gains_over(log_table: np.ndarray, quality: Quality, min_level: float) -> np.ndarray:
    """The float32 gains (from a table of log gains) of one quality, (C, 1, 1), or of each pixel
    of a map, (C, h, w): what multiplies a latent."""
    return over_grid(per_pixel(lambda q: gain(log_table, q, min_level).astype(np.float32), quality))


def file_quality(container: Container, latent_shape: tuple[int, int]) -> Quality:
    """The quality a file's streams decode with: its quality map at latent resolution (versions 6
    and 7, or version 5's expanded), else the header's."""
    if QMAP_LATENT in container.extras:
        return decode_quality_map(container.extras[QMAP_LATENT], latent_shape)
    data = container.extras.get(QMAP)
    if data is None:
        return container.header.quality
    cells = decode_quality_map(data, (latent_shape[0] // HYPER_STRIDE, latent_shape[1] // HYPER_STRIDE))
    return np.repeat(np.repeat(cells, HYPER_STRIDE, axis=0), HYPER_STRIDE, axis=1)


def map_extra(q16: np.ndarray) -> dict[str, bytes]:
    """The extra that carries a (latent rows, cols) map of 16-bit qualities: ``qmap`` (version 5)
    when each 4 x 4 block holds one quality, else ``qlat`` (version 7)."""
    rows, cols = q16.shape[0] // HYPER_STRIDE, q16.shape[1] // HYPER_STRIDE
    blocks = q16.reshape(rows, HYPER_STRIDE, cols, HYPER_STRIDE)
    cells = blocks[:, 0, :, 0]
    if np.array_equal(blocks, np.broadcast_to(cells[:, None, :, None], blocks.shape)):
        return {QMAP: encode_quality_map(cells)}
    return {QMAP_LATENT: encode_quality_map(q16)}


@dataclass(frozen=True)
class RegionsOfInterest:
    """Regions of an image coded at their own quality, the rest at a background quality that the
    encoder chooses (``at``): the weight of each latent pixel, 0 (background) to 1 (region)."""

    weights: np.ndarray  # (latent rows, latent cols) float64
    region_q16: int

    @classmethod
    def of(cls, roi: Sequence[Region] | np.ndarray, width: int, height: int,
           region_quality: float, margin: int = MARGIN, margin_weight: float = MARGIN_WEIGHT
           ) -> "RegionsOfInterest":
        """``roi``: (left, top, width, height) rectangles within the image, or an (H, W) uint8 mask
        (0 background, 255 region, values between grade it) or bool mask of the image's size.
        ``margin`` and ``margin_weight`` as in ``latent_weights``."""
        region_quality = check_quality(region_quality, name="region quality (roi_quality)")
        padded = (height + (-height % CELL), width + (-width % CELL))
        return cls(latent_weights(region_mask(roi, width, height), padded, margin, margin_weight),
                   int(round(region_quality * QUALITY_SCALE)))

    def at(self, background_q16: int) -> tuple[int, Quality, dict[str, bytes]]:
        """For a background quality: the header's quality (q16), the quality to code with (a map, or
        one quality when the regions' equals the background's) and the extra that carries the map."""
        q16 = np.round(background_q16 + self.weights * max(0, self.region_q16 - background_q16)).astype(np.int64)
        if q16.min() == q16.max():  # one quality after all: a plain file
            return int(q16.flat[0]), int(q16.flat[0]) / QUALITY_SCALE, {}
        return background_q16, q16 / QUALITY_SCALE, map_extra(q16)


def coding_quality(regions: RegionsOfInterest | None, q16: int) -> tuple[int, Quality, dict[str, bytes]]:
    """For a quality (q16), with regions of interest or without: the header's quality (q16), the
    quality to code with (one, or a map) and the extras that carry the map (``RegionsOfInterest.at``)."""
    return (q16, q16 / QUALITY_SCALE, {}) if regions is None else regions.at(q16)


def latent_weights(mask: np.ndarray, padded: tuple[int, int], margin: int = MARGIN,
                   margin_weight: float = MARGIN_WEIGHT) -> np.ndarray:
    """Per-latent-pixel weights in [0, 1] of an (H, W) uint8 mask: each latent pixel (16 x 16 image
    pixels) takes the largest value among its own pixels, or ``margin_weight`` times the largest
    within ``margin`` pixels of it if that is more, so that the pixels around a region, which its
    decoded pixels draw on, get most of its quality too. ``padded``: the image's size padded to a
    multiple of ``CELL`` (the latent of a hyperprior model); padding counts as background."""
    if margin < 0 or not 0 <= margin_weight <= 1:
        raise UsageError(f"a margin is 0 pixels or more with a weight in [0, 1], not {margin} and {margin_weight}")
    latent = (padded[0] // LATENT_STRIDE, padded[1] // LATENT_STRIDE)
    step = math.gcd(LATENT_STRIDE, margin)  # pool blocks that both divide into first (8 x 8 pixels for 8)
    full = np.zeros(padded, dtype=np.uint8)
    full[: mask.shape[0], : mask.shape[1]] = mask
    blocks = full.reshape(padded[0] // step, step, padded[1] // step, step).max(axis=(1, 3))
    per_latent = LATENT_STRIDE // step

    def pooled(reach: int) -> np.ndarray:
        # the maximum over each latent pixel's blocks and ``reach`` blocks more on every side: per axis,
        # maximum.reduceat over (start, end) pairs (after a row of zeros, so that an end may be
        # the last block's)
        out = blocks
        for axis, n in enumerate(latent):
            size = out.shape[axis]
            out = np.concatenate([out, np.zeros_like(out.take([0], axis=axis))], axis=axis)
            first = np.arange(n) * per_latent
            bounds = np.stack([first - reach, first + per_latent + reach], axis=1).clip(0, size)
            out = np.maximum.reduceat(out, bounds.ravel(), axis=axis).take(np.arange(0, 2 * n, 2), axis=axis)
        return out.astype(np.float64) / 255.0

    inner = pooled(0)
    return inner if margin == 0 else np.maximum(inner, margin_weight * pooled(margin // step))


def region_mask(roi: Sequence[Region] | np.ndarray, width: int, height: int) -> np.ndarray:
    """An (H, W) uint8 mask of regions of interest given as rectangles or as a mask (checked)."""
    if isinstance(roi, np.ndarray):
        if roi.shape != (height, width):
            raise UsageError(f"a region-of-interest mask must have the image's size ({width}x{height}), "
                             f"not shape {roi.shape}")
        if roi.dtype == bool:
            return roi.astype(np.uint8) * 255
        if roi.dtype != np.uint8:
            raise UsageError(f"a region-of-interest mask must be uint8 (0-255) or bool, not {roi.dtype}")
        return roi
    if isinstance(roi, (str, bytes)) or not isinstance(roi, Sequence) or not roi:
        raise UsageError("regions of interest are a non-empty list of (left, top, width, height) rectangles "
                         "or a mask array")
    if len(roi) == 4 and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in roi):
        # one rectangle where a list of them belongs: check_region(0) said "..., not 0"
        raise UsageError(f"regions of interest are a list of rectangles: roi=[{tuple(int(v) for v in roi)}], "
                         f"not roi={tuple(int(v) for v in roi)}")
    mask = np.zeros((height, width), dtype=np.uint8)
    for rect in roi:
        left, top, w, h = check_region(rect, width, height)
        mask[top: top + h, left: left + w] = 255
    return mask


def quality_map_summary(container: Container) -> dict | None:
    """What ``edgecodec info`` shows of a file's quality map: its cells (rows, cols), their side
    in pixels (64 in version 5, 16 in versions 6 and 7) and the lowest, highest and mean quality (over
    the padded image); None without one."""
    if QMAP not in container.extras and QMAP_LATENT not in container.extras:
        return None
    h = container.header
    latent = (-(-h.height // CELL) * HYPER_STRIDE, -(-h.width // CELL) * HYPER_STRIDE)
    q = file_quality(container, latent)
    side = LATENT_STRIDE if QMAP_LATENT in container.extras else CELL
    stored = q[::side // LATENT_STRIDE, ::side // LATENT_STRIDE]
    return {"cells": list(stored.shape), "cell_pixels": side, "min": float(stored.min()),
            "max": float(stored.max()), "mean": float(stored.mean())}
