"""Input handling: file formats, EXIF orientation, grayscale/palette/16-bit/alpha sources, bad inputs."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from conftest import ADOBE_RGB, SHIPPED, png16, rgb_icc_profile
from PIL import Image, ImageCms

import edgecodec
from edgecodec.codec.container import Container
from edgecodec.codec.imageio import IMAGE_SUFFIXES, load_image, prepare_pil, register_plugins
from edgecodec.errors import FormatError, ImageTooLargeError, InputImageError, UnknownModelError


@pytest.fixture(scope="module")
def crop(kodim23_rgb) -> np.ndarray:
    """A 96x64 (W x H) crop of kodim23, a non-square size so rotations show."""
    return np.ascontiguousarray(kodim23_rgb[200:264, 300:396])


def header_of(data: bytes):
    return edgecodec.read_header(data)


@pytest.mark.parametrize("suffix,lossless", [
    ("png", True), ("jpg", False), ("webp", False), ("tif", True), ("bmp", True), ("ppm", True),
    ("webp-lossless", True), ("gif-gray", True), ("avif", False), ("jxl", False), ("jxl-lossless", True),
    ("heic", False),
])
def test_file_formats(crop, tmp_path, suffix, lossless):
    """Every format folder runs pick up (IMAGE_SUFFIXES) reads: JPEG XL and HEIC (phones' photos)
    through the plugins register_plugins loads."""
    ext = suffix.split("-")[0]
    assert f".{ext}" in IMAGE_SUFFIXES
    path = tmp_path / f"crop.{ext}"
    register_plugins()  # for Pillow to write them here
    source = crop
    if suffix == "gif-gray":  # GIF holds 256 colours: a grayscale image is exact
        source = np.repeat(crop.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    Image.fromarray(source).save(path, **({"lossless": True} if suffix.endswith("-lossless") else {}))
    prepared = load_image(path)
    assert prepared.rgb.shape == (64, 96, 3) and prepared.rgb.dtype == np.uint8
    if suffix == "gif-gray":  # a palette of grays, coded as RGB and decoded to grayscale
        assert prepared.conversions & 2
    else:
        assert (prepared.channels, prepared.bit_depth, prepared.conversions) == (3, 8, 0)
    if lossless:
        assert np.array_equal(prepared.rgb, source)
    else:
        assert np.abs(prepared.rgb.astype(int) - source).mean() < 10
    data = edgecodec.compress(path, model="tiny")
    image = edgecodec.decompress(data)
    assert image.size == (96, 64)
    assert header_of(data).conversions == prepared.conversions


def test_exif_orientation_is_applied(crop, tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(crop).save(path, exif=exif, quality=95)
    with Image.open(path) as img:
        assert img.size == (96, 64)
    prepared = load_image(path)
    assert prepared.rgb.shape == (96, 64, 3)
    # Orientation 6: the displayed image is the stored one turned clockwise.
    expected = np.rot90(crop, k=-1)
    assert np.abs(prepared.rgb.astype(int) - expected).mean() < 10
    data = edgecodec.compress(path, model="tiny")
    header = header_of(data)
    assert header.conversions & 16 and (header.width, header.height) == (64, 96)
    assert "EXIF orientation applied" in header.conversion_names()
    assert edgecodec.decompress(data).size == (64, 96)


def test_tiff_orientation_is_applied_once_and_recorded(crop, tmp_path):
    """Pillow's TIFF loader turns the image in load() and drops the tag: the turn was not recorded."""
    path = tmp_path / "rotated.tif"
    Image.fromarray(crop).save(path, tiffinfo={0x0112: 6})
    data = edgecodec.compress(path, model="tiny")
    header = header_of(data)
    assert (header.width, header.height) == (64, 96) and "EXIF orientation applied" in header.conversion_names()
    prepared = load_image(path)
    assert np.array_equal(prepared.rgb, np.rot90(crop, k=-1)) and prepared.conversions == 16


def test_orientation_one_is_no_conversion(crop, tmp_path):
    path = tmp_path / "upright.jpg"
    exif = Image.Exif()
    exif[0x0112] = 1
    Image.fromarray(crop).save(path, exif=exif)
    data = edgecodec.compress(path, model="tiny")
    assert header_of(data).conversions == 0
    assert edgecodec.decompress(data).size == (96, 64)


def test_grayscale_source(crop, tmp_path):
    path = tmp_path / "gray.png"
    gray = Image.fromarray(crop).convert("L")
    gray.save(path)
    prepared = load_image(path)
    assert (prepared.channels, prepared.bit_depth, prepared.conversions) == (1, 8, 1)
    assert np.array_equal(prepared.rgb[..., 0], np.asarray(gray))
    assert np.array_equal(prepared.rgb[..., 0], prepared.rgb[..., 2])
    data = edgecodec.compress(path, model="tiny")
    assert header_of(data).conversions == 1 and header_of(data).channels == 1
    image = edgecodec.decompress(data)
    assert image.mode == "L" and image.size == (96, 64)


def test_palette_source(crop, tmp_path):
    path = tmp_path / "palette.png"
    palette = Image.fromarray(crop).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.save(path)
    prepared = load_image(path)
    assert prepared.conversions == 2 and prepared.channels == 3
    assert np.array_equal(prepared.rgb, np.asarray(palette.convert("RGB")))
    data = edgecodec.compress(path, model="tiny")
    assert header_of(data).conversions == 2
    assert edgecodec.decompress(data).mode == "RGB"


def test_sixteen_bit_grayscale_png(tmp_path):
    yy, xx = np.mgrid[0:128, 0:192]
    arr = ((xx / 191 * 0.7 + yy / 127 * 0.3) * 65535).round().astype(np.uint16)
    assert arr.max() == 65535
    path = tmp_path / "gray16.png"
    Image.fromarray(arr).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")
    prepared = load_image(path)
    assert prepared.bit_depth == 16 and prepared.conversions & 4 and prepared.conversions & 1
    assert np.array_equal(prepared.rgb[..., 1], np.rint(arr / 257.0).astype(np.uint8))
    data = edgecodec.compress(path, quality=1.0, model=SHIPPED)
    header = header_of(data)
    assert header.bit_depth == 16 and header.conversions & 4 and header.channels == 1
    image = edgecodec.decompress(data)
    assert image.mode == "L" and image.size == (192, 128)
    decoded = np.asarray(image).astype(np.float64)
    reference = arr / 257.0
    assert np.corrcoef(decoded.ravel(), reference.ravel())[0, 1] > 0.9
    assert np.abs(decoded - reference).mean() < 25


def test_sixteen_bit_rgb_png_records_its_depth(tmp_path):
    """A 48-bit RGB PNG is reduced to 8 bits: flag 4 and bit depth 16 must say so (docs/format.md)."""
    arr = (np.random.RandomState(0).rand(40, 50, 3) * 65535).astype(np.uint16)
    path = tmp_path / "rgb16.png"
    path.write_bytes(png16(arr))
    with Image.open(path) as img:
        assert img.mode == "RGB" and img.size == (50, 40)
        # Given the not-yet-loaded image object, the depth is seen ...
        assert prepare_pil(img).bit_depth == 16
    # ... and given the path, it must be seen too.
    prepared = load_image(path)
    assert prepared.bit_depth == 16, "16-bit RGB PNG read from a path recorded as 8-bit"
    assert prepared.conversions & 4


def test_sixteen_bit_gray_alpha_png_stays_grayscale(crop, tmp_path):
    """Pillow reads a 16-bit gray + alpha PNG as RGBA: it was coded as a colour image (4 channels,
    no grayscale flag) and decoded to RGBA. The raw mode tells it is gray + alpha."""
    gray = crop[..., 1].astype(np.uint16) * 257
    alpha = np.where(crop[..., 0] > 100, 65535, 0).astype(np.uint16)
    path = tmp_path / "la16.png"
    path.write_bytes(png16(np.dstack([gray, alpha])))
    prepared = load_image(path)
    assert (prepared.channels, prepared.bit_depth, prepared.conversions) == (2, 16, 1 | 4)
    assert np.array_equal(prepared.rgb[..., 0], crop[..., 1]) and np.array_equal(prepared.alpha, alpha // 257)
    decoded = edgecodec.decompress(edgecodec.compress(path, model="tiny"))
    assert decoded.mode == "LA" and np.array_equal(np.array(decoded)[..., 1], alpha // 257)


def test_sixteen_bit_grayscale_colour_key_of_any_value(crop, tmp_path):
    """A 16-bit grayscale PNG's tRNS value above 255: convert("RGBA") ignores it, and the image was
    coded opaque (a constant alpha plane)."""
    arr = crop[..., 0].astype(np.uint16) * 257 + 3
    key = int(arr[0, 0])
    assert key > 255
    path = tmp_path / "key16.png"
    Image.fromarray(arr).save(path, transparency=key)
    expected = np.where(arr == key, 0, 255).astype(np.uint8)
    assert 0 < expected.sum() < 255 * expected.size
    assert np.array_equal(load_image(path).alpha, expected)
    decoded = edgecodec.decompress(edgecodec.compress(path, model="tiny"))
    assert decoded.mode == "LA" and np.array_equal(np.array(decoded)[..., 1], expected)


def test_alpha_is_kept_losslessly_by_default(crop, tmp_path):
    alpha = np.zeros(crop.shape[:2], np.uint8)
    alpha[10:50, 20:80] = 255
    alpha[20:30, 30:60] = np.arange(30, dtype=np.uint8)[None] * 8  # a soft edge
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([crop, alpha]), "RGBA").save(path)
    data = edgecodec.compress(path, model="tiny")
    container = Container.from_bytes(data)
    assert container.header.version == 4 and list(container.extras) == ["alph"]
    assert container.header.conversions == 0 and container.header.channels == 4
    decoded = edgecodec.decompress(data)
    assert decoded.mode == "RGBA" and np.array_equal(np.array(decoded)[..., 3], alpha)
    # The picture is coded as without alpha: the same streams, and the alpha's bytes are in the file.
    dropped = edgecodec.compress(path, model="tiny", alpha="drop")
    assert Container.from_bytes(dropped).streams == container.streams
    assert len(data) == len(dropped) + 1 + 8 + len(container.extras["alph"])
    # Extras a decoder does not know (a later version's) are skipped.
    future = Container(container.header, container.streams, {"futr": b"\x01\x02", **container.extras}).to_bytes()
    assert np.array_equal(np.array(edgecodec.decompress(future)), np.array(edgecodec.decompress(data)))
    assert np.array_equal(np.array(decoded)[..., :3], np.array(edgecodec.decompress(dropped)))
    header = header_of(dropped)
    assert header.version == 3 and header.conversions == 8 and "alpha dropped" in header.conversion_names()
    assert edgecodec.decompress(dropped).mode == "RGB"
    with pytest.raises(InputImageError, match="--alpha keep"):
        edgecodec.compress(path, model="tiny", alpha="refuse")
    # An opaque alpha channel costs two bytes of extra, and comes back opaque.
    opaque = edgecodec.compress(Image.fromarray(crop).convert("RGBA"), model="tiny")
    assert Container.from_bytes(opaque).extras == {"alph": b"\x00\xff"}
    assert np.array(edgecodec.decompress(opaque))[..., 3].min() == 255
    # An HxWx4 array is an RGBA image.
    assert Container.from_bytes(edgecodec.compress(np.dstack([crop, alpha]), model="tiny")).extras == container.extras


def test_invalid_alpha_metadata_or_icc_policy_is_a_value_error(crop, tmp_path):
    """A wrong argument is the caller's error (ValueError), not a broken image file."""
    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    for bad in (dict(alpha="blend"), dict(metadata="all"), dict(icc="ignore")):
        with Image.open(path) as img:
            with pytest.raises(ValueError):
                prepare_pil(img, **bad)
        with pytest.raises(ValueError) as info:
            load_image(path, **bad)
        assert not isinstance(info.value, InputImageError), info.value


@pytest.mark.parametrize("kind", ["LA", "P-transparency", "RGB-colour-key", "16-bit-gray-colour-key"])
def test_other_alpha_sources(crop, tmp_path, kind):
    path = tmp_path / "alpha.png"
    if kind == "LA":
        img = Image.fromarray(crop).convert("L")
        img.putalpha(Image.fromarray((crop[..., 0] > 100).astype(np.uint8) * 255))
        flags, mode = 8 | 1, "LA"
    elif kind == "P-transparency":
        img = Image.fromarray(crop).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        img.info["transparency"] = 0
        flags, mode = 8 | 2, "RGBA"
    elif kind == "RGB-colour-key":
        img = Image.fromarray(crop)
        img.info["transparency"] = tuple(int(v) for v in crop[0, 0])
        flags, mode = 8, "RGBA"
    else:  # a 16-bit grayscale PNG whose tRNS chunk names one value (here 0) as transparent
        img = Image.fromarray((crop[..., 0].astype(np.uint16) * 256 + 1) * (crop[..., 1] > np.median(crop[..., 1])))
        img.info["transparency"] = 0
        flags, mode = 8 | 4 | 1, "LA"
    img.save(path, transparency=img.info.get("transparency"))
    with Image.open(path) as source:
        expected = np.array(source.convert("RGBA" if mode == "RGBA" else "LA"))[..., -1]
    assert 0 < expected.sum() < 255 * expected.size  # both transparent and opaque pixels
    with pytest.raises(InputImageError, match="alpha"):
        load_image(path, alpha="refuse")
    assert load_image(path, alpha="drop").conversions == flags
    assert np.array_equal(load_image(path).alpha, expected)
    decoded = edgecodec.decompress(edgecodec.compress(path, model="tiny"))
    assert decoded.mode == mode and np.array_equal(np.array(decoded)[..., -1], expected)


def test_in_memory_alpha_modes(crop):
    """Premultiplied (RGBa, La) and palette + alpha (PA) images, which only the API can be given."""
    rgba = Image.fromarray(np.dstack([crop, np.full(crop.shape[:2], 128, np.uint8)]), "RGBA")
    cases = [(rgba.convert("RGBa"), rgba, 0), (rgba.convert("LA").convert("La"), rgba.convert("LA"), 1),
             (rgba.convert("RGB").convert("P").convert("PA"), None, 2)]
    for image, straight, flags in cases:
        prepared = load_image(image)
        assert prepared.conversions == flags and prepared.alpha is not None, image.mode
        if straight is not None:  # un-premultiplied, as Pillow converts it
            assert np.array_equal(prepared.alpha, np.array(straight)[..., -1])
            expected = np.array(image.convert(straight.mode).convert("RGB"))
            assert np.array_equal(prepared.rgb, expected), image.mode
        assert load_image(image, alpha="drop").conversions == flags | 8


def test_metadata_is_stripped_unless_kept(crop, tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "TestMaker"  # Make
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"'
           ' tiff:Orientation="6" dc:format="image/jpeg"/></rdf:RDF></x:xmpmeta>')
    path = tmp_path / "camera.jpg"
    Image.fromarray(crop).save(path, quality=95, exif=exif.tobytes(), xmp=xmp.encode())
    stripped = edgecodec.compress(path, model="tiny")
    assert header_of(stripped).version == 3 and not Container.from_bytes(stripped).extras
    assert "exif" not in edgecodec.decompress(stripped).info
    kept = edgecodec.compress(path, model="tiny", metadata="keep")
    container = Container.from_bytes(kept)
    assert container.header.version == 4 and set(container.extras) == {"exif", "xmp "}
    decoded = edgecodec.decompress(kept)
    assert decoded.size == (64, 96)  # the orientation was applied ...
    assert decoded.getexif().get(0x010F) == "TestMaker"
    assert 0x0112 not in decoded.getexif()  # ... and removed, so viewers do not rotate it again
    assert b"dc:format" in decoded.info["xmp"] and b"tiff:Orientation" not in decoded.info["xmp"]
    assert decoded.info["exif"].startswith(b"Exif\x00\x00")


def test_a_tiffs_exif_is_kept(crop, tmp_path):
    """A TIFF holds its EXIF tags in its own directory, which Pillow gives no info["exif"]: they were
    lost with metadata="keep". Kept now, the camera and date tags with the EXIF and GPS directories,
    not the TIFF's layout (strip offsets, sample format), which would describe no other file."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0132] = "TestMaker", "2020:01:01 00:00:00"  # Make, DateTime
    exif[0x8769] = {0x9003: "2019:05:06 07:08:09"}  # the EXIF directory: DateTimeOriginal
    exif[0x8825] = {1: "N", 2: (1.0, 2.0, 3.0)}  # GPS
    path = tmp_path / "camera.tif"
    Image.fromarray(crop).save(path, exif=exif.tobytes())
    assert not Container.from_bytes(edgecodec.compress(path, model="tiny")).extras
    kept = Image.Exif()
    kept.load(load_image(path, metadata="keep").exif)
    assert kept[0x010F] == "TestMaker" and 0x0111 not in kept and 0x0100 not in kept  # not StripOffsets, width
    decoded = edgecodec.decompress(edgecodec.compress(path, model="tiny", metadata="keep"))
    tags = decoded.getexif()
    assert (tags[0x010F], tags[0x0132]) == ("TestMaker", "2020:01:01 00:00:00")
    assert tags.get_ifd(0x8769)[0x9003] == "2019:05:06 07:08:09" and tags.get_ifd(0x8825)[1] == "N"


def test_metadata_over_the_format_limit_is_refused_not_written(crop, tmp_path, monkeypatch):
    """Readers refuse a file over limits.max_input_bytes, so the encoder refuses to keep metadata
    over MAX_METADATA_BYTES rather than write a file nothing reads (the limit is lowered here)."""
    import edgecodec.codec.imageio as imageio

    path = tmp_path / "notes.jpg"
    Image.fromarray(crop).save(path, quality=90, xmp=b"<x:xmpmeta>" + b" " * 5000 + b"</x:xmpmeta>")
    monkeypatch.setattr(imageio, "MAX_METADATA_BYTES", 4000)
    with pytest.raises(InputImageError, match="metadata='strip'"):
        edgecodec.compress(path, model="tiny", metadata="keep")
    assert Container.from_bytes(edgecodec.compress(path, model="tiny")).extras == {}  # stripped: fine


def test_worst_known_inputs_stay_far_under_the_per_pixel_read_bound():
    """limits.INPUT_BYTES_PER_PIXEL bounds how much of an .edc input is read. Uniform RGBA noise at
    the best quality (noise defeats the transforms, and its alpha plane does not compress) must
    stay far under it with every shipped model, or readers would refuse real files."""
    from edgecodec.codec.limits import INPUT_BYTES_PER_PIXEL
    from edgecodec.zoo import shipped_models

    noise = np.random.default_rng(0).integers(0, 256, (128, 192, 4), dtype=np.uint8)
    for model in shipped_models():
        data = edgecodec.compress(noise, model=model, quality=1.0)
        assert 8 * len(data) / noise[..., 0].size < 8 * INPUT_BYTES_PER_PIXEL / 10, model  # 10x margin


def test_damaged_alpha_planes_are_format_errors(crop):
    import zlib

    data = edgecodec.compress(np.dstack([crop, (crop[..., :1] > 90).astype(np.uint8) * 255]), model="tiny")
    container = Container.from_bytes(data)
    plane = container.extras["alph"]
    assert plane[0] == 1 and np.array_equal(
        np.cumsum(np.frombuffer(zlib.decompress(plane[1:]), np.uint8).reshape(64, 96), axis=0, dtype=np.uint8),
        (crop[..., 0] > 90).astype(np.uint8) * 255)  # docs/format.md: zlib of the rows' differences
    n = 64 * 96
    for bad in (b"", b"\x00", b"\x00\x00\x00", b"\x07\x00", b"\x01garbage", plane[: len(plane) // 2],
                b"\x01" + zlib.compress(bytes(n - 1)), b"\x01" + zlib.compress(bytes(n + 1)),
                b"\x01" + zlib.compress(bytes(100 * n)),  # inflates far beyond the image: stopped at n + 1
                plane + b"\x00"):
        damaged = Container(container.header, container.streams, {"alph": bad}).to_bytes()
        with pytest.raises(FormatError, match="alpha"):
            edgecodec.decompress(damaged)


def test_one_bit_source(crop, tmp_path):
    path = tmp_path / "bw.png"
    Image.fromarray(crop).convert("1").save(path)
    prepared = load_image(path)
    assert prepared.bit_depth == 1 and prepared.conversions == 64 | 1
    assert set(np.unique(prepared.rgb)) <= {0, 255}
    assert edgecodec.decompress(edgecodec.compress(path, model="tiny")).mode == "L"


def test_cmyk_source(crop, tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(crop).convert("CMYK").save(path, quality=95)
    prepared = load_image(path)
    assert prepared.conversions == 32 and prepared.channels == 4
    assert np.abs(prepared.rgb.astype(int) - crop).mean() < 12


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_icc_profile_is_kept_or_converted_to_srgb(crop, tmp_path, suffix):
    """A photo tagged Adobe RGB is coded as its numbers with the profile kept (the decoded image is
    tagged with it, so it shows as the source did), or with icc="convert" as the sRGB image it
    shows (flag 128), not as untagged raw numbers, which viewers would display desaturated."""
    path = tmp_path / f"adobe{suffix}"
    Image.fromarray(crop).save(path, icc_profile=ADOBE_RGB, **({"quality": 95} if suffix == ".jpg" else {}))
    with Image.open(path) as img:
        raw = np.asarray(img.convert("RGB"))
        expected = np.asarray(ImageCms.profileToProfile(img, ImageCms.ImageCmsProfile(io.BytesIO(ADOBE_RGB)),
                                                        ImageCms.createProfile("sRGB"), outputMode="RGB"))
    kept = load_image(path)
    assert kept.conversions == 0 and kept.icc == ADOBE_RGB and np.array_equal(kept.rgb, raw)
    data = edgecodec.compress(path, model="tiny")
    assert Container.from_bytes(data).extras == {"iccp": ADOBE_RGB}
    assert edgecodec.decompress(data).info["icc_profile"] == ADOBE_RGB
    converted = load_image(path, icc="convert")
    assert converted.conversions == 128 and converted.icc is None
    assert np.array_equal(converted.rgb, expected)
    assert np.abs(converted.rgb.astype(int) - raw).mean() > 2  # the profile really changed the numbers
    data = edgecodec.compress(path, model="tiny", icc="convert")
    assert "ICC profile converted to sRGB" in header_of(data).conversion_names()
    assert not Container.from_bytes(data).extras and "icc_profile" not in edgecodec.decompress(data).info


def test_cmyk_sources_never_keep_a_profile(crop, tmp_path):
    """The models code RGB: a CMYK image is converted (with its print profile when LittleCMS reads
    one), never coded as CMYK numbers under a kept profile. (Pillow cannot write CMYK profiles; a
    mismatched RGB profile on a CMYK image is not kept either.)"""
    for name, profile in (("plain", None), ("mismatched", ADOBE_RGB)):
        path = tmp_path / f"{name}.tif"
        Image.fromarray(crop).convert("CMYK").save(path, **({"icc_profile": profile} if profile else {}))
        for icc in ("keep", "convert"):
            prepared = load_image(path, icc=icc)
            assert prepared.icc is None and prepared.conversions & 32, (name, icc)


def test_kept_profiles_reach_png_tiff_and_webp_outputs_and_others_get_srgb(crop, tmp_path):
    from edgecodec.cli import main

    path = tmp_path / "adobe.png"
    Image.fromarray(crop).save(path, icc_profile=ADOBE_RGB)
    edc = tmp_path / "adobe.edc"
    edc.write_bytes(edgecodec.compress(path, model="tiny"))
    decoded = edgecodec.decompress(edc)
    for suffix in ("png", "tif", "webp", "bmp"):
        out = tmp_path / f"out.{suffix}"
        assert main(["decompress", str(edc), "-o", str(out)]) == 0
        with Image.open(out) as img:
            if suffix == "bmp":  # no profile in a BMP: the sRGB image it shows instead
                assert "icc_profile" not in img.info
                srgb = ImageCms.profileToProfile(decoded, ImageCms.ImageCmsProfile(io.BytesIO(ADOBE_RGB)),
                                                 ImageCms.createProfile("sRGB"), outputMode="RGB")
                assert np.array_equal(np.asarray(img), np.asarray(srgb))
            else:
                assert img.info["icc_profile"] == ADOBE_RGB and np.array_equal(np.asarray(img), np.asarray(decoded))


def test_srgb_and_broken_profiles_leave_pixels_alone(crop, tmp_path):
    for name, profile in [("srgb", ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()),
                          ("broken", b"not an ICC profile" * 8)]:
        path = tmp_path / f"{name}.png"
        Image.fromarray(crop).save(path, icc_profile=profile)
        prepared = load_image(path)
        assert prepared.conversions == 0 and prepared.icc is None, name  # nothing to keep
        assert np.array_equal(prepared.rgb, crop), name


def test_a_profile_is_srgb_by_what_it_does_not_by_its_name(crop, tmp_path):
    """An RGB profile was taken for sRGB when its description contained "sRGB", so an altered one of
    that name was dropped (its colours shown as sRGB) and sRGB under another name was kept (its
    bytes in every file). Now the profile's mapping decides."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    renamed = srgb.replace("sRGB".encode("utf-16-be"), "Mine".encode("utf-16-be"))
    assert "srgb" not in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(renamed))).lower()
    misnamed = rgb_icc_profile("sRGB IEC61966-2.1 (edited)",
                               [(0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446)], 2.2)
    for name, profile, foreign in (("renamed", renamed, False), ("misnamed", misnamed, True)):
        path = tmp_path / f"{name}.png"
        Image.fromarray(crop).save(path, icc_profile=profile)
        kept, converted = load_image(path), load_image(path, icc="convert")
        assert np.array_equal(kept.rgb, crop), name
        assert kept.icc == (profile if foreign else None), name
        assert converted.conversions == (128 if foreign else 0), name
        assert np.array_equal(converted.rgb, crop) != foreign, name


def test_pil_images_in_memory(crop):
    """PIL images that were never files (Image.fromarray / convert / copy) are valid inputs."""
    rgb = Image.fromarray(crop)
    assert header_of(edgecodec.compress(rgb, model="tiny")).conversions == 0
    assert header_of(edgecodec.compress(rgb.convert("L"), model="tiny")).conversions == 1


def test_float_images_on_the_unit_interval(crop, tmp_path):
    """A 32-bit float TIFF holds [0, 1]: it was divided by 257 as if 16-bit and coded black (and a
    NaN in it made numpy warn on the command line)."""
    gray = np.asarray(Image.fromarray(crop).convert("L"), dtype=np.float32) / 255
    gray[0, 0] = np.nan
    path = tmp_path / "float.tif"
    Image.fromarray(gray).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = load_image(path)
    expected = np.rint(np.nan_to_num(gray) * 255).astype(np.uint8)
    assert np.array_equal(prepared.rgb[..., 0], expected) and prepared.conversions & 1
    header = header_of(edgecodec.compress(path, model="tiny"))
    assert header.bit_depth == 32 and "32-bit to 8-bit" in header.conversion_names()  # was "16-bit to 8-bit"


def test_32_bit_images_on_8_bit_levels(crop, tmp_path):
    """img.convert("I") or convert("F") of an 8-bit image holds 0-255, as Pillow's convert("L") takes
    it: they were divided by 257 as if 16-bit and coded black. Values above 255 are still 16-bit."""
    gray = Image.fromarray(crop).convert("L")
    for mode in ("I", "F"):
        prepared = prepare_pil(gray.convert(mode))
        assert np.array_equal(prepared.rgb[..., 0], np.asarray(gray)) and not prepared.conversions & 4
    wide = np.asarray(gray, dtype=np.int32) * 257  # a 32-bit integer TIFF holding 16-bit levels
    path = tmp_path / "int32.tif"
    Image.fromarray(wide).save(path)
    prepared = load_image(path)
    assert np.array_equal(prepared.rgb[..., 0], np.asarray(gray)) and prepared.conversions & 4


def test_empty_pil_images_are_input_errors():
    """A 0-pixel PIL image (no file format holds one) used to reach torch's convolutions and fail there."""
    for size in ((0, 0), (5, 0), (0, 5)):
        with pytest.raises(InputImageError, match="empty"):
            edgecodec.compress(Image.new("RGB", size), model="tiny")


def test_encoded_bytes_in_memory(crop, tmp_path):
    """An image file's bytes (an upload, standard input) code exactly as the file does."""
    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    assert edgecodec.compress(path.read_bytes(), model="tiny") == edgecodec.compress(path, model="tiny")
    gray = tmp_path / "gray.jpg"
    Image.fromarray(crop).convert("L").save(gray)
    assert header_of(edgecodec.compress(gray.read_bytes(), model="tiny")).conversions == 1
    with pytest.raises(InputImageError, match="empty"):
        edgecodec.compress(b"", model="tiny")
    with pytest.raises(InputImageError, match="not an image"):
        edgecodec.compress(b"this is not an image\n" * 10, model="tiny")


@pytest.mark.parametrize("name,content", [
    ("x.png", b"this is not an image\n" * 10),
    ("empty.png", b""),
    ("half.png", None),
])
def test_unreadable_files(crop, tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        Image.fromarray(crop).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(InputImageError) as info:
        edgecodec.compress(path, model="tiny")
    assert str(path.name) in str(info.value)


@pytest.mark.parametrize("suffix", [".gif", ".png", ".webp", ".tif", ".avif", ".heic"])
def test_animated_and_multi_page_files_are_refused(crop, tmp_path, suffix):
    """Coding the first frame would silently lose the others; a single frame of the format is fine.
    (HEIC: a container of several top-level images, as a burst; pillow-jxl-plugin cannot write animations.)"""
    register_plugins()
    first, second = Image.fromarray(crop), Image.fromarray(crop[::-1].copy())
    path = tmp_path / f"two{suffix}"
    first.save(path, save_all=True, append_images=[second])
    with pytest.raises(InputImageError, match="2 frames"):
        edgecodec.compress(path, model="tiny")
    with pytest.raises(InputImageError, match="2 frames"):
        edgecodec.compress(path.read_bytes(), model="tiny")
    with Image.open(path) as opened, pytest.raises(InputImageError, match="2 frames"):
        edgecodec.compress(opened, model="tiny")  # an opened file too, not its current frame alone
    single = tmp_path / f"one{suffix}"
    first.save(single)
    assert edgecodec.decompress(edgecodec.compress(single, model="tiny")).size == first.size


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputImageError, match="no such file"):
        edgecodec.compress(tmp_path / "missing.png", model="tiny")
    with pytest.raises(InputImageError, match="folder"):
        edgecodec.compress(tmp_path, model="tiny")


@pytest.mark.parametrize("array", [
    np.zeros((8, 8, 3), np.float32),
    np.zeros((8, 8, 3), np.uint16),
    np.zeros((8, 8), np.uint8),
    np.zeros((8, 8, 2), np.uint8),
    np.zeros((8, 8, 1), np.uint8),
    np.zeros((0, 8, 3), np.uint8),
    np.zeros((2, 8, 8, 3), np.uint8),
])
def test_bad_arrays(array):
    """An array is an argument: another dtype is a TypeError, another shape a UsageError (a ValueError),
    as the README says of the API's arguments."""
    from edgecodec.errors import UsageError

    with pytest.raises(TypeError if array.dtype != np.uint8 else UsageError, match="HxWx3 or HxWx4 uint8"):
        edgecodec.compress(array, model="tiny")


def test_non_contiguous_array(kodim23_rgb):
    view = kodim23_rgb[:64:2, :96:2]  # a strided view
    assert not view.flags.c_contiguous
    data = edgecodec.compress(view, model="tiny")
    assert edgecodec.compress(np.ascontiguousarray(view), model="tiny") == data


def test_api_argument_types_are_named(crop):
    """Arguments of the wrong type or value are one TypeError / ValueError naming the argument
    (these were TypeErrors from deep inside: comparing int and str, int() of a list, open()'s
    'embedded null byte'), and a limit under one pixel is refused instead of refusing every image."""
    from edgecodec.errors import InputImageError

    data = edgecodec.compress(crop, model="tiny")
    for kwargs, error, fragment in (({"max_pixels": "x"}, TypeError, "max_pixels"),
                                    ({"max_pixels": 0}, ValueError, "max_pixels"),
                                    ({"target_size": [1]}, TypeError, "target size")):
        with pytest.raises(error, match=fragment):
            edgecodec.compress(crop, model="tiny", **kwargs)
    with pytest.raises(TypeError, match="max_pixels"):
        edgecodec.decompress(data, max_pixels="x")
    with pytest.raises(InputImageError, match="NUL"):
        edgecodec.decompress(data.decode("latin1"))


def test_pixel_limit_on_input(crop, tmp_path, monkeypatch):
    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    pixels = 96 * 64
    for image in (crop, path):
        with pytest.raises(ImageTooLargeError):
            edgecodec.compress(image, model="tiny", max_pixels=pixels - 1)
        assert header_of(edgecodec.compress(image, model="tiny", max_pixels=pixels)).width == 96
    monkeypatch.setenv("EDGECODEC_MAX_PIXELS", str(pixels - 1))
    with pytest.raises(ImageTooLargeError):
        edgecodec.compress(path, model="tiny")


def test_explicit_pixel_limit_overrides_pillows(crop, tmp_path, monkeypatch):
    """max_pixels (or EDGECODEC_MAX_PIXELS) above Pillow's MAX_IMAGE_PIXELS governs (imageio.py says
    so): an image over twice Pillow's limit must load when the caller's limit allows it. Pillow's
    limit is lowered here to stand for a >179-megapixel image under the default."""
    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    pixels = 96 * 64
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels // 4)
    assert load_image(path, max_pixels=pixels).rgb.shape == (64, 96, 3)
    monkeypatch.setenv("EDGECODEC_MAX_PIXELS", str(pixels))
    assert load_image(path).rgb.shape == (64, 96, 3)


def test_pillows_global_pixel_limit_is_left_alone_within_twice_its_value(crop, tmp_path, monkeypatch):
    """compress() set Image.MAX_IMAGE_PIXELS to None while it opened any image: a service's other
    threads opened images without Pillow's bomb check meanwhile, and a value the service set
    during the call was put back to the old one. Now it is lifted only for a limit over twice
    Pillow's (where Pillow would refuse what the caller allowed); Pillow's refusal is ours."""
    from edgecodec.errors import ImageTooLargeError

    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    pixels = 96 * 64
    seen, open_image = [], Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: seen.append(Image.MAX_IMAGE_PIXELS) or open_image(*a, **k))
    edgecodec.compress(path, model="tiny")
    assert seen == [Image.MAX_IMAGE_PIXELS]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels // 4)  # Pillow refuses above pixels // 2
    seen.clear()
    assert load_image(path, max_pixels=pixels).rgb.shape == (64, 96, 3)  # over twice Pillow's: lifted
    assert seen == [None] and Image.MAX_IMAGE_PIXELS == pixels // 4
    for limit in (pixels // 2, None):  # within twice Pillow's (None: Pillow's own): Pillow's refusal, as ours
        with pytest.raises(ImageTooLargeError, match="exceeds the limit"):
            load_image(path, max_pixels=limit)
    assert seen[1:] == [pixels // 4, pixels // 4]


def test_bad_argument_values_are_edgecodec_errors_and_value_errors(crop):
    """The README: every failure the API reports is an EdgecodecError, and a bad value also a
    ValueError; a quality, a target or a region quality out of range were plain ValueErrors."""
    from edgecodec.errors import EdgecodecError

    for bad in (dict(quality=2), dict(target_size="abc"), dict(target_bpp=-1), dict(target_psnr=-3),
                dict(target_ms_ssim=1.5), dict(roi=[(0, 0, 8, 8)], roi_quality=2),
                dict(target_size="40KB", target_bpp=0.3), dict(refine_steps=-1)):
        with pytest.raises(EdgecodecError) as info:
            edgecodec.compress(crop, model="tiny", **bad)
        assert isinstance(info.value, ValueError), bad


def test_a_quality_given_with_a_target_is_refused(crop):
    """``compress(image, quality=0.3, target_bpp=0.5)`` coded at the target and dropped the
    quality in silence (the CLI refuses the pair); the default quality is what no argument gives."""
    from edgecodec.codec.api import DEFAULT_QUALITY
    from edgecodec.errors import UsageError

    for target in (dict(target_bpp=0.5), dict(target_size="2KB"), dict(target_psnr=30)):
        with pytest.raises(UsageError, match=f"give quality or {next(iter(target))}, not both"):
            edgecodec.compress(crop, quality=0.3, model="tiny", **target)
    assert edgecodec.compress(crop, model="tiny") == edgecodec.compress(crop, DEFAULT_QUALITY, model="tiny")
    assert edgecodec.read_header(edgecodec.compress(crop, model="tiny", target_bpp=0.5)).model == "tiny"


def test_encoder_takes_the_16_bit_quality_and_a_prepared_image(crop):
    """``Encoder.encode(1)`` coded quality 1/65535 where a researcher meant 1.0, ``encode(0.5)``
    failed in struct.pack, ``encode(70000)`` only after entropy coding, and an array in place of
    the prepared image was an AttributeError."""
    from edgecodec.codec.api import Encoder, quality_to_q16
    from edgecodec.errors import UsageError

    encoder = Encoder(load_image(crop), "tiny")
    with pytest.raises(TypeError, match=r"16-bit quality, 0 to 65535 \(quality_to_q16\(0.5\)"):
        encoder.encode(0.5)
    for bad in (70000, -1):
        with pytest.raises(UsageError, match="0 to 65535"):
            encoder.encode(bad)
    assert encoder.encode(quality_to_q16(1.0)) == encoder.encode(np.uint16(65535))
    with pytest.raises(TypeError, match=r"prepared image \(load_image\(image\)\), not ndarray"):
        Encoder(crop, "tiny")


def test_metrics_take_two_8_bit_images_of_one_shape(crop):
    """psnr of [0, 1] floats was 48 dB too high (against the 255 peak), another shape broadcast
    into a number, and ssim of CHW arrays was NaN."""
    from edgecodec.metrics import ms_ssim, psnr, ssim

    other = crop[::-1].copy()
    for metric in (psnr, ssim, ms_ssim):
        with pytest.raises(TypeError, match="uint8 numpy images"):
            metric(crop / 255.0, other / 255.0)
        with pytest.raises(ValueError, match="one shape"):
            metric(crop, other[..., :1])
        with pytest.raises(TypeError, match="uint8 numpy images"):
            metric(crop.tolist(), other)
    assert psnr(crop, other) == pytest.approx(psnr(crop[..., 0], other[..., 0]), abs=3)  # (H, W) too
    assert 0 < ssim(crop, other) < 1


def test_api_argument_types(crop, tmp_path):
    """Bytes-like inputs work, paths decode, and wrong types say what was expected."""
    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    raw = path.read_bytes()
    data = edgecodec.compress(raw, model="tiny")
    for same in (bytearray(raw), memoryview(raw)):
        assert edgecodec.compress(same, model="tiny") == data
    edc = tmp_path / "crop.edc"
    edc.write_bytes(data)
    for source in (edc, str(edc), bytearray(data), memoryview(data)):  # a path or the bytes
        assert np.array_equal(np.array(edgecodec.decompress(source)), np.array(edgecodec.decompress(data)))
        assert edgecodec.read_header(source) == edgecodec.read_header(data)
    with pytest.raises(InputImageError, match="cannot read"):
        edgecodec.decompress(tmp_path / "missing.edc")
    # Binary file objects, as Image.open takes them; a text-mode file says to open it in binary mode.
    with open(path, "rb") as f:
        assert edgecodec.compress(f, model="tiny") == data
    assert edgecodec.compress(io.BytesIO(raw), model="tiny") == data
    with open(edc, "rb") as f:
        assert edgecodec.read_header(f) == edgecodec.read_header(data)
    assert np.array_equal(np.array(edgecodec.decompress(io.BytesIO(data))), np.array(edgecodec.decompress(data)))
    with pytest.raises(FormatError, match="the .edc stream is not an .edc file"):
        edgecodec.decompress(io.BytesIO(raw))
    with pytest.raises(InputImageError, match="the image stream: not an image"):
        edgecodec.compress(io.BytesIO(b"not an image"), model="tiny")
    with open(path, encoding="latin-1") as text, pytest.raises(TypeError, match="binary mode"):
        edgecodec.compress(text, model="tiny")
    with open(edc, encoding="latin-1") as text, pytest.raises(TypeError, match="binary mode"):
        edgecodec.decompress(text)
    for bad, message in ((dict(image=None), "image path"), (dict(image=3), "image path"),
                         (dict(image=path, quality="0.5"), "quality must be a number"),
                         (dict(image=path, refine_steps=1.5), "whole number")):
        with pytest.raises(TypeError, match=message):
            edgecodec.compress(**{"model": "tiny", **bad})
    with pytest.raises(TypeError, match="path of an .edc file"):
        edgecodec.decompress(None)
    with pytest.raises(UnknownModelError, match="invalid model name"):
        edgecodec.compress(path, model="")  # not silently the default model
