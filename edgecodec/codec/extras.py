"""What a file carries besides the coded RGB picture (format version 4's extras, docs/format.md):
the source's alpha plane, coded losslessly, and its EXIF and XMP metadata.

The learned transforms code RGB only. Transparency is a mask that must come back exactly (a
lossy edge around a logo shows), so it is coded losslessly beside the picture: as one byte when
the plane is constant (an opaque RGBA export), else as an 8-bit grayscale PNG, Pillow's
encoder being the maintained lossless coder at hand for one 8-bit plane.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import FormatError
from .container import Container
from .imageio import EXIF_PREFIX, PreparedImage, pillow_pixel_limit, to_pil

ALPHA = "alph"
EXIF = "exif"  # the TIFF-structured EXIF block, without the "Exif\0\0" prefix of a JPEG APP1 segment
XMP = "xmp "  # the XMP packet, UTF-8
EXTRA_NAMES = {ALPHA: "alpha (lossless)", EXIF: "EXIF", XMP: "XMP"}  # as `edgecodec info` shows them

_CONSTANT, _PNG = 0, 1  # first byte of an alpha extra: how the plane is coded


def encode_alpha(alpha: np.ndarray) -> bytes:
    """An (H, W) uint8 alpha plane, losslessly: one byte for a constant plane, else a PNG."""
    if alpha.size and (alpha == alpha.flat[0]).all():
        return bytes([_CONSTANT, int(alpha.flat[0])])
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(alpha), "L").save(buf, format="PNG", compress_level=9)
    return bytes([_PNG]) + buf.getvalue()


def decode_alpha(data: bytes, width: int, height: int) -> np.ndarray:
    """The (height, width) uint8 plane of an alpha extra; FormatError for anything else. The PNG's
    size is checked against the header's (already within the pixel limit) before it is decoded."""
    if len(data) == 2 and data[0] == _CONSTANT:
        return np.full((height, width), data[1], dtype=np.uint8)
    if len(data) < 2 or data[0] != _PNG:
        raise FormatError("corrupted .edc file: invalid alpha plane")
    try:
        with pillow_pixel_limit(), Image.open(io.BytesIO(data[1:]), formats=["PNG"]) as png:
            if png.size != (width, height) or png.mode != "L":
                raise FormatError(f"corrupted .edc file: alpha plane is {png.mode} {png.size[0]}x{png.size[1]}, "
                                  f"the image {width}x{height}")
            png.load()
            return np.array(png, dtype=np.uint8)
    except UnidentifiedImageError:
        raise FormatError("corrupted .edc file: alpha plane is not a PNG") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise FormatError(f"corrupted .edc file: alpha plane does not decode ({exc})") from None


def source_extras(prepared: PreparedImage) -> dict[str, bytes]:
    """The extras a file of this prepared image carries (none for an opaque image without kept metadata)."""
    extras: dict[str, bytes] = {}
    if prepared.alpha is not None:
        extras[ALPHA] = encode_alpha(prepared.alpha)
    if prepared.exif:
        extras[EXIF] = prepared.exif
    if prepared.xmp:
        extras[XMP] = prepared.xmp
    return extras


def decoded_image(rgb: np.ndarray, container: Container) -> Image.Image:
    """The decoded picture as the source was: L or RGB, LA or RGBA with its alpha plane, and the
    kept metadata in ``info["exif"]`` (with the APP1 prefix, as Pillow reads a JPEG's) and ``info["xmp"]``."""
    h, extras = container.header, container.extras
    image = to_pil(rgb, bool(h.conversions & 1))
    if ALPHA in extras:
        image.putalpha(Image.fromarray(decode_alpha(extras[ALPHA], h.width, h.height), "L"))
    if extras.get(EXIF):
        image.info["exif"] = EXIF_PREFIX + extras[EXIF]
    if extras.get(XMP):
        image.info["xmp"] = extras[XMP]
    return image
