"""edgecodec.compress / decompress as users call them: in-memory Pillow
images that carry transparency or metadata the way Pillow makes them, and empty paths."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import png16
from PIL import Image

import edgecodec
from edgecodec.codec.imageio import load_image
from edgecodec.errors import InputImageError, UsageError


@pytest.fixture(scope="module")
def crop(kodim23_rgb) -> np.ndarray:
    """A 96x64 (W x H) crop of kodim23, a non-square size so rotations show."""
    return np.ascontiguousarray(kodim23_rgb[200:264, 300:396])


def test_a_palette_with_alpha_keeps_its_transparency(crop):
    """``quantize()`` / ``convert("P")`` of an RGBA image holds the alpha in the palette, with no
    info["transparency"] (only files carry that): the alpha was dropped in silence (no "alpha
    dropped" flag, decoded as RGB) and alpha="refuse" let it through."""
    alpha = np.where(crop[..., 0] > 100, 255, 0).astype(np.uint8)
    for image in (Image.fromarray(np.dstack([crop, alpha]), "RGBA").quantize(),
                  Image.fromarray(np.dstack([crop, alpha]), "RGBA").convert("P")):
        assert image.mode == "P" and "transparency" not in image.info
        expected = np.array(image.convert("RGBA"))[..., 3]
        assert expected.min() == 0 and expected.max() == 255  # some pixels are transparent
        prepared = load_image(image)
        assert prepared.alpha is not None and np.array_equal(prepared.alpha, expected)
        assert prepared.channels == 4
        decoded = edgecodec.decompress(edgecodec.compress(image, model="tiny"))
        assert decoded.mode == "RGBA" and np.array_equal(np.array(decoded)[..., 3], expected)
        with pytest.raises(InputImageError, match="alpha channel"):
            edgecodec.compress(image, model="tiny", alpha="refuse")
        assert load_image(image, alpha="drop").conversions & 8  # "alpha dropped" recorded
    # A palette without alpha stays opaque.
    assert load_image(Image.fromarray(crop).quantize()).alpha is None


def test_an_opened_16_bit_gray_alpha_png_stays_grayscale_as_a_pil_image(crop, tmp_path):
    """Pillow reads a 16-bit gray + alpha PNG as RGBA; its path was coded as gray + alpha (LA), but
    the same file opened by the caller and passed as a PIL image was coded as colour (RGBA)."""
    gray = crop[..., 1].astype(np.uint16) * 257
    alpha = np.where(crop[..., 0] > 100, 65535, 0).astype(np.uint16)
    path = tmp_path / "la16.png"
    path.write_bytes(png16(np.dstack([gray, alpha])))
    with Image.open(path) as img:
        assert img.mode == "RGBA"
        prepared = load_image(img)
    assert (prepared.channels, prepared.bit_depth, prepared.conversions) == (2, 16, 1 | 4)
    assert np.array_equal(prepared.rgb, load_image(path).rgb)
    with Image.open(path) as img:
        decoded = edgecodec.decompress(edgecodec.compress(img, model="tiny"))
    assert decoded.mode == "LA" and np.array_equal(np.array(decoded)[..., 1], alpha // 257)


def _with_exif(crop: np.ndarray, fmt: str, exif: bytes) -> bytes:
    buf = io.BytesIO()
    save = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(crop).save(buf, fmt, exif=exif, **save)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_an_unreadable_exif_block_is_no_orientation(crop, fmt):
    """A PNG's or WebP's EXIF block that Pillow cannot parse refused the whole image ("cannot decode
    image (not a TIFF file ...)"), and as an opened PIL image raised Pillow's SyntaxError from deep
    inside. Viewers show such an image as it is stored: so does the codec."""
    raw = _with_exif(crop, fmt, b"Exif\x00\x00garbage")
    for source in (raw, Image.open(io.BytesIO(raw))):
        prepared = load_image(source)
        assert prepared.conversions == 0 and np.array_equal(prepared.rgb, crop)
    assert edgecodec.decompress(edgecodec.compress(raw, model="tiny")).size == (96, 64)


def test_an_orientation_outside_1_to_8_is_not_recorded_as_applied(crop):
    """Orientation 9 turns nothing (exif_transpose ignores it), but the file said "EXIF orientation
    applied"."""
    exif = Image.Exif()
    exif[0x0112] = 9
    raw = _with_exif(crop, "PNG", exif.tobytes())
    for source in (raw, Image.open(io.BytesIO(raw))):
        prepared = load_image(source)
        assert prepared.conversions == 0 and np.array_equal(prepared.rgb, crop)
    assert "EXIF orientation applied" not in edgecodec.read_header(
        edgecodec.compress(raw, model="tiny")).conversion_names()


def test_an_empty_path_is_a_usage_error(tmp_path, monkeypatch):
    """compress("") said ". is a folder, not an image" (Path("") is the current folder) and
    decompress("") "cannot read : No such file or directory"; the CLI refuses an empty name as a
    usage error, and so does the API now (a ValueError, as the README says of bad values)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="the image path is empty"):
        edgecodec.compress("", model="tiny")
    with pytest.raises(UsageError, match="the .edc path is empty"):
        edgecodec.decompress("")
    with pytest.raises(ValueError, match="the .edc path is empty"):
        edgecodec.read_header("")
