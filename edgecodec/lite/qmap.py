"""Quality maps: a quality per hyper-latent pixel, so that parts of an image (a region of interest)
get more bits than the rest (format version 5's ``qmap`` extra, docs/format.md).

The gain units that make one model variable-rate (Cui et al., CVPR 2021) are per channel; a map
applies the gains of each cell's quality to that cell's latent pixels instead: y's gain and inverse
gain at latent resolution (4 x 4 latent pixels a cell) and z's at hyper-latent resolution (one a
cell). Both sides compute the Gaussian parameters from the same z symbols and the same fixed-point
z gains (``ExactEntropyModel.side``), so decoding stays exact; where the quality changes the
hyper-synthesis sees mixed gains, which costs bits there, not correctness. Torch-free: the lite
coders use it too.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

from ..codec.container import QMAP, QUALITY_SCALE, Container
from ..errors import FormatError, UsageError
from .tiles import HYPER_STRIDE, LATENT_STRIDE, Region, check_region

CELL = LATENT_STRIDE * HYPER_STRIDE  # image pixels per side of a map cell (64)
_SHAPE = struct.Struct("<HH")  # cell rows, cell columns

# One quality for the whole image, or a (cell rows, cell columns) float64 array of them.
Quality = Union[float, np.ndarray]


def encode_quality_map(q16: np.ndarray) -> bytes:
    """The ``qmap`` extra of a (rows, cols) map of 16-bit qualities (quality * 65535): the shape,
    then the values as little-endian uint16 in raster order, zlib-compressed (a map is mostly runs
    of a few values)."""
    q16 = np.asarray(q16)
    if q16.ndim != 2 or 0 in q16.shape or max(q16.shape) > 0xFFFF:
        raise ValueError(f"a quality map is a 2-D array of cells, not shape {q16.shape}")
    if q16.min() < 0 or q16.max() > QUALITY_SCALE:
        raise ValueError("quality map values are 16-bit qualities, 0 to 65535")
    return _SHAPE.pack(*q16.shape) + zlib.compress(q16.astype("<u2").tobytes(), 9)


def decode_quality_map(data: bytes, cells: tuple[int, int]) -> np.ndarray:
    """The qualities (float64, in [0, 1]) of a ``qmap`` extra, which must have ``cells`` (the
    file's hyper-latent shape). Inflates at most one byte more than the map holds, so a hostile
    extra cannot expand beyond it."""
    if len(data) < _SHAPE.size or _SHAPE.unpack_from(data) != tuple(cells):
        found = "x".join(map(str, _SHAPE.unpack_from(data))) if len(data) >= _SHAPE.size else "no shape"
        raise FormatError(f"corrupted .edc file: quality map of {found} cells, the image has {cells[0]}x{cells[1]}")
    size = 2 * cells[0] * cells[1]
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data[_SHAPE.size:], size + 1)
    except zlib.error:
        raise FormatError("corrupted .edc file: quality map is not a zlib stream") from None
    if len(raw) != size or not inflater.eof or inflater.unused_data:
        raise FormatError("corrupted .edc file: quality map of the wrong length")
    return np.frombuffer(raw, dtype="<u2").reshape(cells).astype(np.float64) / QUALITY_SCALE


def cells_of(quality: Quality, rows: slice, cols: slice) -> Quality:
    """The part of a map under latent ``rows`` and ``cols`` (a tile, whose edges lie on the cell
    grid), or the one quality."""
    if not isinstance(quality, np.ndarray):
        return quality
    return quality[rows.start // HYPER_STRIDE: -(-rows.stop // HYPER_STRIDE),
                   cols.start // HYPER_STRIDE: -(-cols.stop // HYPER_STRIDE)]


def per_latent_pixel(values: np.ndarray) -> np.ndarray:
    """Per-channel values laid over y: (C,) (one quality) -> (C, 1, 1); (rows, cols, C), one row a
    map cell -> (C, 4 rows, 4 cols), each cell's over its latent pixels."""
    if values.ndim == 1:
        return values[:, None, None]
    return np.repeat(np.repeat(np.moveaxis(values, -1, 0), HYPER_STRIDE, axis=1), HYPER_STRIDE, axis=2)


def per_cell(values: np.ndarray) -> np.ndarray:
    """Per-channel values laid over z: (C,) (one quality) -> (C, 1, 1); (rows, cols, C), one row a
    map cell -> (C, rows, cols)."""
    return values[:, None, None] if values.ndim == 1 else np.moveaxis(values, -1, 0)


def file_quality(container: Container, latent_shape: tuple[int, int]) -> Quality:
    """The quality a file's streams decode with: its quality map (version 5), else the header's."""
    data = container.extras.get(QMAP)
    if data is None:
        return container.header.quality
    return decode_quality_map(data, (latent_shape[0] // HYPER_STRIDE, latent_shape[1] // HYPER_STRIDE))


@dataclass(frozen=True)
class RegionsOfInterest:
    """Regions of an image coded at their own quality, the rest at a background quality that the
    encoder chooses (``at``): the weight of each quality-map cell, 0 (background) to 1 (region)."""

    weights: np.ndarray  # (cell rows, cell cols) float64
    region_q16: int

    @classmethod
    def of(cls, roi: Sequence[Region] | np.ndarray, width: int, height: int,
           region_quality: float) -> "RegionsOfInterest":
        """``roi``: (left, top, width, height) rectangles within the image, or an (H, W) uint8 mask
        (0 background, 255 region, values between grade it) or bool mask of the image's size."""
        if isinstance(region_quality, bool) or not isinstance(region_quality, (int, float, np.floating)) \
                or not 0 <= region_quality <= 1:
            raise ValueError(f"region quality must be a number in [0, 1], not {region_quality!r}")
        padded = (height + (-height % CELL), width + (-width % CELL))
        return cls(cell_weights(region_mask(roi, width, height), padded), int(round(region_quality * QUALITY_SCALE)))

    def at(self, background_q16: int) -> tuple[int, Quality, dict[str, bytes]]:
        """For a background quality: the header's quality (q16), the quality to code with (a map, or
        one quality when the regions' equals the background's) and the extra that carries the map."""
        q16 = np.round(background_q16 + self.weights * max(0, self.region_q16 - background_q16)).astype(np.int64)
        if q16.min() == q16.max():  # one quality after all: a plain file
            return int(q16.flat[0]), int(q16.flat[0]) / QUALITY_SCALE, {}
        return background_q16, q16 / QUALITY_SCALE, {QMAP: encode_quality_map(q16)}


def cell_weights(mask: np.ndarray, padded: tuple[int, int]) -> np.ndarray:
    """Per-cell weights in [0, 1] of an (H, W) uint8 mask: each cell takes the largest value among
    its pixels, so every pixel of a region lies in a cell of its full weight. ``padded``: the
    image's size padded to a multiple of ``CELL``; padding counts as background."""
    h, w = mask.shape
    full = np.zeros(padded, dtype=np.uint8)
    full[:h, :w] = mask
    rows, cols = padded[0] // CELL, padded[1] // CELL
    return full.reshape(rows, CELL, cols, CELL).max(axis=(1, 3)).astype(np.float64) / 255.0


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
    mask = np.zeros((height, width), dtype=np.uint8)
    for rect in roi:
        left, top, w, h = check_region(rect, width, height)
        mask[top: top + h, left: left + w] = 255
    return mask


def quality_map_summary(container: Container) -> dict | None:
    """What ``edgecodec info`` shows of a file's quality map: its cells (rows, cols) and the
    lowest, highest and mean quality; None without one."""
    data = container.extras.get(QMAP)
    if data is None:
        return None
    h = container.header
    cells = (-(-h.height // CELL), -(-h.width // CELL))
    q = decode_quality_map(data, cells)
    return {"cells": list(cells), "min": float(q.min()), "max": float(q.max()), "mean": float(q.mean())}
