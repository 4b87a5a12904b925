"""Tile layout of tiled streams (format versions 2 and 3): torch-free, shared by both decoders."""

from __future__ import annotations

import operator
import struct

import numpy as np

from ..errors import FormatError, UsageError

LATENT_STRIDE = 16  # image pixels per latent pixel
HYPER_STRIDE = 4  # latent pixels per hyper-latent pixel
# Images whose padded size exceeds this many pixels are tiled (codec/tiling.py). A whole-image pass
# costs about 215 bytes an image pixel (1.7 GB more for 3840x2160 with the shipped model), a tiled
# one about 10 bytes a pixel (the uint8 image, the latent, the output) plus one window (< 0.1 GB):
# from 2 MP on, tiling needs much less memory. Full HD (1920x1080, padded 1920x1088 = 2.09 MP) and
# smaller stay in one piece, with no tile table (one stream for y, as before tiling existed).
TILE_PIXELS = 1 << 21
# Latent pixels per tile side: 32 -> 512x512 image pixels. One window's activations then cost
# under 0.1 GB with the shipped model (64 tiles: ~0.3 GB, and 0.1-0.3 GB more peak RSS for 8K,
# measured); the per-tile stream overhead (a 4-byte length and the rANS flush) is 0.05% of an 8K
# file at 0.47 bpp; the halos add work (g_s windows (32+2*3)^2 / 32^2 = 1.4x) but the smaller
# windows run faster per pixel, so encode and decode took no longer than with 64 tiles or in one
# piece (benchmarks/large.py). The format allows any multiple of container.TILE_MULTIPLE (16).
TILE_LATENT = 32
_LENGTH = struct.Struct("<I")


def tile_grid(latent_h: int, latent_w: int, tile: int) -> list[tuple[slice, slice]]:
    """Tiles of the latent in raster order (row of tiles by row); edge tiles are smaller."""
    return [(slice(r, min(r + tile, latent_h)), slice(c, min(c + tile, latent_w)))
            for r in range(0, latent_h, tile) for c in range(0, latent_w, tile)]


def num_tiles(latent_h: int, latent_w: int, tile: int) -> int:
    return -(-latent_h // tile) * -(-latent_w // tile)


def tile_window(span: slice, halo: int, size: int) -> tuple[int, int]:
    return max(0, span.start - halo), min(size, span.stop + halo)


def analysis_window(rgb: np.ndarray, rows: slice, cols: slice, halo: int, latent_h: int,
                    latent_w: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """The (h, w, 3) uint8 image window the analysis transform reads for one tile of the latent
    (latent ``rows`` x ``cols``, widened by ``halo`` latent pixels), and the part of the window's
    latent that is the tile's own. Shared by the PyTorch and the onnxruntime encoders."""
    height, width = rgb.shape[:2]
    r0, r1 = tile_window(rows, halo, latent_h)
    c0, c1 = tile_window(cols, halo, latent_w)
    # Clipped indices replicate the last row / column: the padding of the whole-image path.
    ri = np.minimum(np.arange(LATENT_STRIDE * r0, LATENT_STRIDE * r1), height - 1)
    ci = np.minimum(np.arange(LATENT_STRIDE * c0, LATENT_STRIDE * c1), width - 1)
    return rgb[np.ix_(ri, ci)], (slice(rows.start - r0, rows.stop - r0), slice(cols.start - c0, cols.stop - c0))


def pack_tiles(strings: list[bytes]) -> bytes:
    """Stream 1 of a tiled file: each tile's stream as a 4-byte length and its bytes."""
    return b"".join(_LENGTH.pack(len(s)) + s for s in strings)


def unpack_tiles(data: bytes, count: int, what: str = "tile") -> list[bytes]:
    """Split stream 1 into ``count`` tile streams (``what``: "checkerboard half" for the two
    passes of a context model's ``y``), checking every length against the bytes present."""
    if len(data) < _LENGTH.size * count:
        raise FormatError(f"corrupted .edc file: {len(data)} bytes cannot hold {count} {what} streams")
    tiles, pos = [], 0
    for _ in range(count):
        if pos + _LENGTH.size > len(data):
            raise FormatError(f"corrupted .edc file: {what} table incomplete")
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        if pos + length > len(data):
            raise FormatError(f"corrupted .edc file: {what} stream shorter than declared")
        tiles.append(data[pos: pos + length])
        pos += length
    if pos != len(data):
        raise FormatError(f"corrupted .edc file: trailing bytes after the last {what} stream")
    return tiles


Region = tuple[int, int, int, int]  # left, top, width, height in image pixels


def check_region(region: Region, width: int, height: int) -> Region:
    """``region`` as four ints, or a UsageError unless it is a non-empty part of the image."""
    try:
        left, top, w, h = (operator.index(v) for v in region)  # ints (numpy's too), not 1.5 or "1"
    except (TypeError, ValueError):
        raise UsageError(f"region must be four integers (left, top, width, height), not {region!r}") from None
    if left < 0 or top < 0 or w < 1 or h < 1 or left + w > width or top + h > height:
        raise UsageError(f"region {left},{top},{w},{h} (left, top, width, height) is not within the "
                         f"{width}x{height} image")
    return left, top, w, h


def crop_region(pixels, region: Region | None):
    """The (H, W, ...) array's part in ``region`` (the whole array for None)."""
    if region is None:
        return pixels
    left, top, width, height = region
    return pixels[top: top + height, left: left + width]


def synthesis_windows(latent_h: int, latent_w: int, height: int, width: int, tile: int, halo: int,
                      region: Region | None = None):
    """For each tile that covers image pixels (of ``region``, if given): the latent window to
    synthesise (tile widened by ``halo``), the part of the synthesised window that is the tile's
    own (within the region), and where that part goes in the (height, width) image (the region's
    (height, width) output). Shared by the PyTorch and the onnxruntime decoders."""
    k = LATENT_STRIDE
    left, top, region_w, region_h = region or (0, 0, width, height)
    for rows, cols in tile_grid(latent_h, latent_w, tile):
        y0, x0 = max(top, k * rows.start), max(left, k * cols.start)
        y1, x1 = min(top + region_h, k * rows.stop), min(left + region_w, k * cols.stop)
        if y0 >= y1 or x0 >= x1:  # outside the region, or only padding
            continue
        r0, r1 = tile_window(rows, halo, latent_h)
        c0, c1 = tile_window(cols, halo, latent_w)
        yield ((slice(r0, r1), slice(c0, c1)),
               (slice(y0 - k * r0, y1 - k * r0), slice(x0 - k * c0, x1 - k * c0)),
               (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)))


def latent_span(windows: list) -> tuple[slice, slice]:
    """The latent rows and columns that ``synthesis_windows``' windows read: a region decode
    entropy-decodes only the tiles that meet them."""
    rows = [w[0][0] for w in windows]
    cols = [w[0][1] for w in windows]
    return (slice(min(r.start for r in rows), max(r.stop for r in rows)),
            slice(min(c.start for c in cols), max(c.stop for c in cols)))
