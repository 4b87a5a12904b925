"""What a file carries besides the coded RGB picture (format version 4's extras, docs/format.md):
the source's alpha plane, coded losslessly (``edgecodec/lite/alpha.py``, which the torch-free
decoder shares), the ICC profile its numbers are in, and its EXIF and XMP metadata.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..lite.alpha import decode_alpha, encode_alpha
from ..lite.tiles import Region, crop_region
from .container import ALPHA, EXIF, GRAYSCALE_SOURCE, ICC, XMP, Container
from .imageio import PreparedImage, image_info, to_pil


def source_extras(prepared: PreparedImage) -> dict[str, bytes]:
    """The extras a file of this prepared image carries (none for an opaque image without kept metadata)."""
    extras: dict[str, bytes] = {}
    if prepared.alpha is not None:
        extras[ALPHA] = encode_alpha(prepared.alpha)
    if prepared.icc:
        extras[ICC] = prepared.icc
    if prepared.exif:
        extras[EXIF] = prepared.exif
    if prepared.xmp:
        extras[XMP] = prepared.xmp
    return extras


def decoded_image(pixels: np.ndarray, container: Container, region: Region | None = None) -> Image.Image:
    """The decoded picture as the source was: L or RGB, LA or RGBA with its alpha plane, the file's
    model and quality in ``info["edc_model"]`` and ``info["edc_quality"]``, its kept
    ICC profile in ``info["icc_profile"]``, and the kept metadata in ``info["exif"]`` (with the APP1
    prefix, as Pillow reads a JPEG's) and ``info["xmp"]``.
    ``pixels``: (H, W, 3), or (H, W, 4) with the file's alpha already decoded (``edgecodec.lite``);
    the ``region`` (left, top, width, height) of the image when they hold only that part."""
    h, extras = container.header, container.extras
    image = to_pil(np.ascontiguousarray(pixels[..., :3]), bool(h.conversions & GRAYSCALE_SOURCE))
    if ALPHA in extras:
        alpha = pixels[..., 3] if pixels.shape[-1] == 4 else crop_region(
            decode_alpha(extras[ALPHA], h.width, h.height), region)
        image.putalpha(Image.fromarray(np.ascontiguousarray(alpha), "L"))
    image.info.update(image_info(container))
    return image
