"""Pixel limits for inputs and decoded headers, and the byte limits of inputs that follow from them.
Imports neither torch nor Pillow (the torch-free decoder, edgecodec.lite, applies the same limits as
the PyTorch codec)."""

from __future__ import annotations

import io
import os
from typing import Any, BinaryIO

import numpy as np

from ..errors import ImageTooLargeError, UsageError

PILLOW_DEFAULT_MAX_PIXELS = 89_478_485
PADDED_PIXELS_FACTOR = 4  # decode work per declared pixel is bounded by this (see check_padded_pixels)


def default_max_pixels() -> int:
    """Pixel limit for inputs and decoded headers: $EDGECODEC_MAX_PIXELS, else Pillow's limit
    (its default where Pillow is not installed)."""
    value = os.environ.get("EDGECODEC_MAX_PIXELS")
    if value:
        try:
            limit = int(value)
        except ValueError:
            limit = 0
        if limit < 1:
            raise UsageError(f"EDGECODEC_MAX_PIXELS must be a whole number of pixels, 1 or more, not {value!r}")
        return limit
    try:
        from PIL import Image
    except ImportError:
        return PILLOW_DEFAULT_MAX_PIXELS
    return int(Image.MAX_IMAGE_PIXELS or PILLOW_DEFAULT_MAX_PIXELS)


def pixel_limit(max_pixels: int | None) -> int:
    """The pixel limit in force: ``max_pixels`` when given (a caller's --max-pixels), else the default."""
    if max_pixels is None:
        return default_max_pixels()
    if not isinstance(max_pixels, (int, np.integer)) or isinstance(max_pixels, bool):
        raise TypeError(f"max_pixels must be a whole number of pixels, not {type(max_pixels).__name__}")
    if max_pixels < 1:
        raise UsageError(f"max_pixels must be 1 or more, not {max_pixels}")
    return int(max_pixels)


def check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    limit = pixel_limit(max_pixels)
    if width * height > limit:
        raise ImageTooLargeError(f"image of {width}x{height} = {width * height} pixels exceeds the limit of "
                                 f"{limit} pixels (--max-pixels, max_pixels= or EDGECODEC_MAX_PIXELS raise it)")


def check_padded_pixels(width: int, height: int, stride: int, max_pixels: int | None) -> tuple[int, int]:
    """The padded (height, width) that decoding works on, refused above PADDED_PIXELS_FACTOR x the limit.

    A 1-pixel-wide header costs 64 times its pixel count at stride 64 (found by benchmarks/fuzz.py:
    a 1 x 642817 header took 16 s under a 1 MP limit). The limit itself stays exact for the image;
    its padded size may exceed it at most PADDED_PIXELS_FACTOR times."""
    padded = (height + (-height % stride), width + (-width % stride))
    limit = pixel_limit(max_pixels)
    if padded[0] * padded[1] > PADDED_PIXELS_FACTOR * limit:
        raise ImageTooLargeError(
            f"image of {width}x{height} pixels decodes at its padded size {padded[1]}x{padded[0]} = "
            f"{padded[0] * padded[1]} pixels, over {PADDED_PIXELS_FACTOR} x the limit of {limit} pixels "
            "(--max-pixels, max_pixels= or EDGECODEC_MAX_PIXELS raise it)")
    return padded


# Inputs are read into memory, so their size is bounded by the pixel limit too: an endless input
# (`cat x.edc /dev/zero | edgecodec decompress -`) is refused once it passes the bound instead of
# filling the memory. 32 bytes a pixel is 25x the largest .edc file the encoder has made (10.3 bpp:
# RGBA noise at quality 1; RGB noise is 2.3 bpp) and twice a float32 RGBA image's raw size; the base
# covers what does not grow with the pixels: headers, and the kept metadata (at most
# MAX_METADATA_BYTES, which the encoder enforces, so every .edc file it writes fits the bound).
INPUT_BYTES_PER_PIXEL = 32
INPUT_BYTES_BASE = 64 << 20
MAX_METADATA_BYTES = 32 << 20  # a file's kept ICC profile, EXIF and XMP together
_READ_CHUNK = 1 << 20


def max_input_bytes(pixels: int, max_pixels: int | None = None) -> int:
    """The most bytes an input of an image of ``pixels`` pixels may hold (an .edc file, or an image
    file on standard input); ``pixels`` over the pixel limit count as the limit."""
    return INPUT_BYTES_BASE + INPUT_BYTES_PER_PIXEL * min(pixels, pixel_limit(max_pixels))


def read_limited(f: BinaryIO, limit: int) -> bytes | None:
    """The rest of a binary stream, or None as soon as it passes ``limit`` bytes (read in chunks, so a
    short stream never costs an allocation of ``limit`` bytes)."""
    chunks, total = [], 0
    while chunk := f.read(min(_READ_CHUNK, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            return None
    return b"".join(chunks)


def is_binary_stream(obj: Any) -> bool:
    """Whether an API input is an open file (or any object with ``read``) to read bytes from; a
    text-mode file is a TypeError, since images and .edc files are bytes."""
    if isinstance(obj, io.TextIOBase):
        raise TypeError("open the file in binary mode ('rb'), not text mode")
    return callable(getattr(obj, "read", None))
