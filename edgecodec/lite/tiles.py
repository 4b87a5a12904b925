"""Tile layout of tiled streams (format versions 2 and 3): torch-free, shared by both decoders."""

from __future__ import annotations

import struct

from ..errors import FormatError

LATENT_STRIDE = 16  # image pixels per latent pixel
# Images whose padded size exceeds this many pixels are tiled (codec/tiling.py). A whole-image pass
# costs about 215 bytes an image pixel (1.7 GB more for 3840x2160 with the shipped model), a tiled
# one about 10 bytes a pixel (the uint8 image, the latent, the output) plus one window (< 0.1 GB):
# from 2 MP on, tiling needs much less memory. Full HD (1920x1080, padded 1920x1088 = 2.09 MP) and
# smaller stay in one piece, with version-1 streams exactly as before tiling existed.
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


def pack_tiles(strings: list[bytes]) -> bytes:
    """Stream 1 of a tiled file: each tile's stream as a 4-byte length and its bytes."""
    return b"".join(_LENGTH.pack(len(s)) + s for s in strings)


def unpack_tiles(data: bytes, count: int) -> list[bytes]:
    """Split stream 1 into ``count`` tile streams, checking every length against the bytes present."""
    if len(data) < _LENGTH.size * count:
        raise FormatError(f"corrupted .edc file: {len(data)} bytes cannot hold {count} tile streams")
    tiles, pos = [], 0
    for _ in range(count):
        if pos + _LENGTH.size > len(data):
            raise FormatError("corrupted .edc file: tile table incomplete")
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        if pos + length > len(data):
            raise FormatError("corrupted .edc file: tile stream shorter than declared")
        tiles.append(data[pos: pos + length])
        pos += length
    if pos != len(data):
        raise FormatError("corrupted .edc file: trailing bytes after the last tile stream")
    return tiles


def synthesis_windows(latent_h: int, latent_w: int, height: int, width: int, tile: int, halo: int):
    """For each tile that covers image pixels: the latent window to synthesise (tile widened by
    ``halo``), the part of the synthesised window that is the tile's own, and where that part goes
    in the (height, width) image. Shared by the PyTorch and the onnxruntime decoders."""
    k = LATENT_STRIDE
    for rows, cols in tile_grid(latent_h, latent_w, tile):
        top, left = k * rows.start, k * cols.start
        if top >= height or left >= width:  # only padding: cannot happen for tiles >= 4, kept as a guard
            continue
        r0, r1 = tile_window(rows, halo, latent_h)
        c0, c1 = tile_window(cols, halo, latent_w)
        bottom, right = min(height, k * rows.stop), min(width, k * cols.stop)
        yield ((slice(r0, r1), slice(c0, c1)),
               (slice(top - k * r0, bottom - k * r0), slice(left - k * c0, right - k * c0)),
               (slice(top, bottom), slice(left, right)))
