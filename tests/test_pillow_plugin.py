"""The Pillow plugin: Image.open / Image.save of .edc files with the shipped model."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageCms, UnidentifiedImageError

import edgecodec
from edgecodec import pillow as plugin
from edgecodec.codec import api
from edgecodec.zoo import DEFAULT_MODEL

from conftest import ADOBE_RGB, SHIPPED


@pytest.fixture(scope="module")
def crop(kodim23) -> Image.Image:
    with Image.open(kodim23) as img:
        return img.convert("RGB").crop((200, 150, 328, 246))  # 128 x 96


@pytest.fixture(scope="module")
def edc_file(crop, tmp_path_factory):
    path = tmp_path_factory.mktemp("pil") / "x.edc"
    crop.save(path, quality=0.6, model=SHIPPED)
    return path


def test_registered_on_import_edgecodec_without_torch():
    code = ("import sys, edgecodec; from PIL import Image; "
            "assert Image.registered_extensions()['.edc'] == 'EDC', 'extension'; "
            "assert Image.MIME['EDC'] == 'image/x-edc', 'mime'; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_open_reads_header_without_decoding(edc_file, monkeypatch):
    def no_decode(*args, **kwargs):
        raise AssertionError("Image.open must not decode")

    monkeypatch.setattr(api, "decompress", no_decode)
    monkeypatch.setattr(api, "decode_array", no_decode)
    with Image.open(edc_file) as img:
        assert img.format == "EDC"
        assert img.size == (128, 96)
        assert img.mode == "RGB"
        assert img.info["edc_model"] == SHIPPED
        assert img.info["edc_quality"] == pytest.approx(0.6, abs=1e-4)
        assert Image.MIME[img.format] == "image/x-edc"


def test_open_reads_the_header_fields(edc_file):
    data = edc_file.read_bytes()
    header = edgecodec.read_header(data)
    with Image.open(edc_file) as img:
        assert img.size == (header.width, header.height)
        assert img.info["edc_model"] == header.model
        assert img.info["edc_quality"] == header.quality


def test_decompress_gives_the_info_open_gives(edc_file):
    """``edgecodec.decompress`` returned an image without ``edc_model`` / ``edc_quality``, which
    ``Image.open`` of the same file carries: one decoder, two sets of fields."""
    decoded = edgecodec.decompress(edc_file.read_bytes())
    with Image.open(edc_file) as img:
        assert decoded.info == img.info and decoded.info["edc_model"] == SHIPPED
        img.load()
        assert img.info == decoded.info


def test_load_equals_decompress(edc_file, crop):
    data = edc_file.read_bytes()
    with Image.open(edc_file) as img:
        img.load()
        pixels = np.array(img)
    assert pixels.shape == (96, 128, 3)
    assert np.array_equal(pixels, np.array(edgecodec.decompress(data)))
    # a plausible picture of the crop (no quality figure asserted: the shipped model may change)
    assert np.abs(pixels.astype(int) - np.array(crop).astype(int)).mean() < 40


def test_save_round_trip_to_buffer(crop, edc_file):
    buf = io.BytesIO()
    crop.save(buf, format="EDC", quality=0.6, model=SHIPPED)
    assert buf.getvalue() == edc_file.read_bytes()  # same as saving by extension: deterministic
    buf.seek(0)
    with Image.open(buf) as img:
        assert img.format == "EDC"
        assert img.convert("RGB").size == crop.size


def test_save_takes_max_pixels(crop, edc_file, monkeypatch):
    """Saving under a small Image.MAX_IMAGE_PIXELS was refused with a message naming max_pixels=,
    which save() did not pass on."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # under the crop's 12,288 pixels
    with pytest.raises(OSError, match="exceeds the limit of 5000"):
        crop.save(io.BytesIO(), format="EDC", quality=0.6, model=SHIPPED)
    buf = io.BytesIO()
    crop.save(buf, format="EDC", quality=0.6, model=SHIPPED, max_pixels=20_000)
    assert buf.getvalue() == edc_file.read_bytes()


def test_save_target_size(crop, tmp_path):
    target = 1200
    path = tmp_path / "t.edc"
    crop.save(path, target_size=target)
    size = path.stat().st_size
    assert size <= target
    assert edgecodec.read_header(path.read_bytes()).model == DEFAULT_MODEL
    with Image.open(path) as img:
        assert np.array(img).shape == (96, 128, 3)


def test_save_target_psnr(crop, tmp_path):
    from edgecodec.metrics import psnr

    path = tmp_path / "t.edc"
    crop.save(path, target_psnr=29.0, model=SHIPPED)
    with Image.open(path) as img:
        assert psnr(np.array(crop), np.array(img.convert("RGB"))) >= 29.0


def test_save_with_refinement(crop):
    buf = io.BytesIO()
    crop.save(buf, format="EDC", quality=1.0, model=SHIPPED, refine_steps=5)
    assert buf.getvalue() == edgecodec.compress(crop, quality=1.0, model=SHIPPED, refine_steps=5)
    assert buf.getvalue() != edgecodec.compress(crop, quality=1.0, model=SHIPPED)  # the refined latent was kept


def test_grayscale_opens_as_L(crop, tmp_path):
    path = tmp_path / "g.edc"
    crop.convert("L").save(path, quality=0.3)
    with Image.open(path) as img:
        assert img.mode == "L"
        img.load()
        assert np.array(img).shape == (96, 128)


def test_alpha_and_metadata_open_and_save(crop, tmp_path):
    rgba = crop.copy()
    alpha = np.zeros((96, 128), np.uint8)
    alpha[16:80, 24:104] = 255
    rgba.putalpha(Image.fromarray(alpha))
    exif = Image.Exif()
    exif[0x010F] = "TestMaker"
    rgba.info["exif"] = exif.tobytes()
    path = tmp_path / "a.edc"
    rgba.save(path, quality=0.3, metadata="keep")
    with Image.open(path) as img:
        assert img.mode == "RGBA" and img.getexif().get(0x010F) == "TestMaker"  # before decoding
        img.load()
        assert np.array_equal(np.array(img)[..., 3], alpha)
    rgba.save(path, quality=0.3)  # metadata stripped by default
    with Image.open(path) as img:
        assert "exif" not in img.info
    rgba.save(path, quality=0.3, alpha="drop")
    with Image.open(path) as img:
        assert img.mode == "RGB"
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # not sRGB, not RGB: not kept
    p3_like = crop.copy()
    p3_like.info["icc_profile"] = ADOBE_RGB
    p3_like.save(path, quality=0.3)
    with Image.open(path) as img:
        assert img.info["icc_profile"] == p3_like.info["icc_profile"]  # kept, before decoding
    p3_like.save(path, quality=0.3, icc="convert")
    with Image.open(path) as img:
        assert "icc_profile" not in img.info
    crop_lab = crop.copy()
    crop_lab.info["icc_profile"] = profile
    crop_lab.save(path, quality=0.3)
    with Image.open(path) as img:
        assert "icc_profile" not in img.info


def test_bad_quality_is_an_error(crop):
    with pytest.raises(ValueError, match="quality"):
        crop.save(io.BytesIO(), format="EDC", quality=60)


def test_other_files_not_claimed(kodim23, tmp_path):
    assert not plugin._accept(kodim23.read_bytes()[:16])
    with Image.open(kodim23) as img:
        assert img.format == "PNG"
    junk = tmp_path / "junk.edc"
    junk.write_bytes(b"hello, this is not an image at all")
    with pytest.raises(UnidentifiedImageError):
        Image.open(junk)
    # the magic alone, with a broken header, is rejected at open (not at load)
    broken = tmp_path / "broken.edc"
    broken.write_bytes(b"\x89EDC\x01\xff\x00" + b"\x00" * 8)
    with pytest.raises(UnidentifiedImageError):
        Image.open(broken)


def test_damaged_stream_is_not_opened(edc_file, tmp_path):
    data = bytearray(edc_file.read_bytes())
    data[-10] ^= 0xFF  # inside the streams: the checksum no longer matches
    path = tmp_path / "damaged.edc"
    path.write_bytes(bytes(data))
    with pytest.raises(UnidentifiedImageError, match="checksum"):  # the reason, not a bare "cannot identify"
        Image.open(path)
    path.write_bytes(edc_file.read_bytes()[:-20])
    with pytest.raises(UnidentifiedImageError, match="truncated|ends"):
        Image.open(path)


def test_load_raises_oserror_for_every_decoding_failure(edc_file, tmp_path):
    """Pillow's convention: a file that opens but cannot be decoded raises OSError from load().
    A file written by other weights of the model let WeightsMismatchError escape."""
    import dataclasses

    from edgecodec.codec.container import Container
    from edgecodec.errors import EdgecodecError

    container = Container.from_bytes(edc_file.read_bytes())
    other = dataclasses.replace(container, header=dataclasses.replace(container.header, weights_hash=bytes(8)))
    path = tmp_path / "other-weights.edc"
    path.write_bytes(other.to_bytes())
    with Image.open(path) as img:
        assert img.size == (128, 96)  # the header is fine
        with pytest.raises(OSError, match="cannot decode .edc image") as info:
            img.load()
    assert isinstance(info.value.__cause__, EdgecodecError)


def test_a_pickled_or_deep_copied_image_keeps_its_pixels(edc_file):
    """Pillow rebuilds such an image from its pixels without _open (a DataLoader worker, copy.deepcopy):
    load() raised AttributeError (no _edc_data) and np.array gave a 0-d object array."""
    import copy
    import pickle

    with Image.open(edc_file) as img:
        expected = np.array(edgecodec.decompress(edc_file.read_bytes()))
        unloaded = pickle.loads(pickle.dumps(img))
        img.load()
        for clone in (unloaded, pickle.loads(pickle.dumps(img)), copy.deepcopy(img)):
            assert clone.size == (128, 96) and clone.mode == "RGB"
            clone.load()
            assert np.array_equal(np.array(clone), expected)


def test_pillows_metadata_save_keywords_are_written(crop, tmp_path):
    """exif=, xmp= and icc_profile=, as Pillow's PNG / WebP / JPEG plugins take them, replace the
    image's (they were ignored); EXIF and XMP are stored with metadata="keep", as the image's own:
    a given XMP does not bring the image's own EXIF (its GPS position, say) along."""
    exif = Image.Exif()
    exif[0x010F] = "Maker"  # Make
    adobe = ADOBE_RGB
    path = tmp_path / "meta.edc"
    crop.save(path, model=SHIPPED, exif=exif, icc_profile=adobe, xmp=b"<x:xmpmeta/>", metadata="keep")
    with Image.open(path) as img:
        assert img.getexif()[0x010F] == "Maker"
        assert img.info["icc_profile"] == adobe and img.info["xmp"] == b"<x:xmpmeta/>"
    own = crop.copy()
    own.info["exif"] = exif.tobytes()  # the image's own EXIF, as a camera JPEG has it
    own.save(path, model=SHIPPED, xmp=b"<x:xmpmeta/>", icc_profile=adobe)
    with Image.open(path) as img:
        assert 0x010F not in img.getexif() and "xmp" not in img.info and img.info["icc_profile"] == adobe
    assert "exif" not in crop.info  # the caller's image is not changed


def test_saving_an_opened_animation_saves_its_current_frame(tmp_path):
    """Without save_all Pillow's plugins save the frame the image is at (was refused as animated)."""
    frames = [Image.new("RGB", (64, 48), colour) for colour in ((200, 30, 30), (30, 30, 200))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with Image.open(tmp_path / "anim.gif") as gif:
        gif.seek(1)
        gif.save(tmp_path / "frame.edc", model=SHIPPED, quality=1)
    with Image.open(tmp_path / "frame.edc") as img:
        mean = np.array(img.convert("RGB")).reshape(-1, 3).mean(axis=0)
    assert mean[2] > 150 > 60 > mean[0], mean  # the blue second frame


def test_images_the_format_cannot_hold_are_oserror_bad_values_valueerror(crop, tmp_path):
    """As Pillow's plugins: OSError for what the format cannot write ("cannot write mode RGBA as
    JPEG"), ValueError for bad values; edgecodec's own errors escaped as neither."""
    path = tmp_path / "x.edc"
    rgba = crop.convert("RGBA")
    for image, options in ((rgba, {"alpha": "refuse"}), (crop, {"model": "no-such-model"}),
                           (Image.new("RGB", (0, 5)), {})):
        with pytest.raises(OSError, match="cannot write EDC"):
            image.save(path, format="EDC", **options)
    with pytest.raises(ValueError):
        crop.save(path, quality=2)


def test_save_all_saves_one_picture_and_refuses_several(tmp_path):
    """``save(..., save_all=True)`` raised Pillow's bare ``KeyError: 'EDC'`` (no save_all handler),
    and ``append_images`` without it was dropped in silence: one picture is saved as without
    save_all, several frames are refused (OSError, as Pillow's plugins refuse what they cannot
    write) rather than cut to the first, as compress refuses animations."""
    rgb = np.random.RandomState(0).randint(0, 256, (24, 40, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    plain, every = io.BytesIO(), io.BytesIO()
    image.save(plain, "EDC", model="tiny")
    image.save(every, "EDC", model="tiny", save_all=True)
    assert every.getvalue() == plain.getvalue()
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    for options in (dict(save_all=True, append_images=frames[1:]), dict(append_images=frames[1:])):
        path = tmp_path / "anim.edc"
        with pytest.raises(OSError, match="2 frames; edgecodec codes one picture"):
            frames[0].save(path, model="tiny", **options)
        assert not path.exists()  # Pillow removes the file it created for a failed save
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    with Image.open(gif) as animated, pytest.raises(OSError, match="2 frames"):
        animated.save(tmp_path / "all.edc", model="tiny", save_all=True)


def test_append_images_without_save_all_is_refused_on_every_pillow():
    """Pillow before 11.2.1 hands append_images without save_all to the plain save handler: the
    first frame was saved in silence there."""
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    frames[0].encoderinfo = {"model": "tiny", "append_images": frames[1:]}
    with pytest.raises(OSError, match="2 frames"):
        plugin._save(frames[0], io.BytesIO(), "x.edc")
    frames[0].encoderinfo = {"model": "tiny", "append_images": []}
    out = io.BytesIO()
    plugin._save(frames[0], out, "x.edc")
    assert Image.open(io.BytesIO(out.getvalue())).size == (8, 8)
