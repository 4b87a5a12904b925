"""The alpha plane of a format-4 file (docs/format.md, Extras), coded losslessly with numpy and
zlib only, so that the torch-free decoder returns transparency on devices without Pillow.

The learned transforms code RGB only; transparency is a mask that must come back exactly (a lossy
edge around a logo shows). A constant plane (an opaque RGBA export) is one byte. Any other is
zlib-deflated after PNG's "Up" filter on the whole plane (each row minus the one above, mod 256):
0.64 to 1.22 times the bytes of Pillow's PNG at compression level 9 on seven 768 x 512 masks
(`python benchmarks/alpha.py`), without the PNG decoder that PNG's per-row filters would need on
the device.
"""

from __future__ import annotations

import zlib

import numpy as np

from ..errors import FormatError

CONSTANT, DEFLATE_UP = 0, 1  # first byte of an alpha extra: how the plane is coded


def encode_alpha(alpha: np.ndarray) -> bytes:
    """An (H, W) uint8 alpha plane, losslessly."""
    alpha = np.ascontiguousarray(alpha, dtype=np.uint8)
    if alpha.size and (alpha == alpha.flat[0]).all():
        return bytes([CONSTANT, int(alpha.flat[0])])
    up = alpha.copy()
    up[1:] -= alpha[:-1]  # uint8 arithmetic wraps: mod 256
    return bytes([DEFLATE_UP]) + zlib.compress(up.tobytes(), 9)


def decode_alpha(data: bytes, width: int, height: int) -> np.ndarray:
    """The (height, width) uint8 plane of an alpha extra; FormatError for anything else. The zlib
    stream is inflated to at most width x height bytes (the header's size, already within the
    pixel limit), so a small stream cannot expand beyond the image."""
    if len(data) == 2 and data[0] == CONSTANT:
        return np.full((height, width), data[1], dtype=np.uint8)
    if len(data) < 2 or data[0] != DEFLATE_UP:
        raise FormatError("corrupted .edc file: invalid alpha plane")
    size = width * height
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(data[1:], size + 1)
    except zlib.error as exc:
        raise FormatError(f"corrupted .edc file: alpha plane does not inflate ({exc})") from None
    if len(raw) != size or not inflate.eof or inflate.unused_data:
        raise FormatError(f"corrupted .edc file: alpha plane is not {width}x{height} values")
    return np.cumsum(np.frombuffer(raw, np.uint8).reshape(height, width), axis=0, dtype=np.uint8)
