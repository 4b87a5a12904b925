"""Regions of interest: a quality per latent pixel (16 x 16 image pixels; format version 7's quality
map, or version 5's, one per 64 x 64 cell, when the map allows it; lite/qmap.py). Version 6 held
the same map without rescaling y's parameters (``qmap.matched_ratio``); its files still decode."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import edgecodec
from edgecodec.codec import api
from edgecodec.codec.container import QMAP, QMAP_LATENT, Container
from edgecodec.errors import FormatError, ImageTooLargeError, UsageError
from edgecodec.lite.qmap import (RegionsOfInterest, decode_quality_map, encode_quality_map, file_quality,
                                 hyper_quality, latent_weights, quality_map_summary)
from edgecodec.zoo import load_model

from conftest import FORMAT6, REPO, SHIPPED, TINY, assert_one_error_line, cli_env, fix_crc, psnr, run_cli

sys.path.insert(0, str(REPO / "scripts"))
from format6_fixtures import CROP, decode_with_latent_digest  # noqa: E402

# Latent pixels (4..9, 8..14) of the 384 x 256 crop, rows 64-159, columns 128-239, and with the
# 8-pixel margin (3..10, 8..15)
RECT = (140, 70, 100, 90)
CELLS = (slice(70, 160), slice(140, 240))
FAR = (slice(0, 32), slice(320, 384))  # background, at least four latent pixels from the region
ALIGNED = (136, 72, 112, 112)  # with the margin at full weight, 64 x 64 cells (1..2, 2..3): a version-5 map


@pytest.fixture(scope="module")
def crop(kodim23_rgb) -> np.ndarray:
    return np.ascontiguousarray(kodim23_rgb[96:352, 192:576])


def test_quality_map_extra_round_trips_and_refuses_damage():
    q16 = np.array([[0, 65535, 3], [7, 7, 40000]])
    data = encode_quality_map(q16)
    assert np.array_equal(decode_quality_map(data, (2, 3)), q16 / 65535)
    with pytest.raises(FormatError, match="quality map of 2x3 values, the image needs 3x2"):
        decode_quality_map(data, (3, 2))
    for bad in (data[:3], data[:4] + b"not zlib", data[:-1], data + b"x",
                data[:4] + __import__("zlib").compress(bytes(14))):  # one byte too many
        with pytest.raises(FormatError, match="corrupted"):
            decode_quality_map(bad, (2, 3))
    with pytest.raises(ValueError, match="16-bit"):
        encode_quality_map(np.array([[70000]]))


def test_a_map_makes_the_file_version_7_and_older_versions_cannot_hold_one(crop):
    data = edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=[RECT], roi_quality=0.8)
    container = Container.from_bytes(data)
    assert container.header.version == 7 and container.header.quality_q16 == round(0.2 * 65535)
    assert set(container.extras) == {QMAP_LATENT}
    q = file_quality(container, (16, 24))
    expected = np.full((16, 24), round(0.2 * 65535))
    expected[3:11, 8:16] = round(0.2 * 65535 + 0.75 * (round(0.8 * 65535) - round(0.2 * 65535)))  # the margin
    expected[4:10, 8:15] = round(0.8 * 65535)
    assert np.array_equal(q, expected / 65535)
    assert quality_map_summary(container) == {"cells": [16, 24], "cell_pixels": 16, "min": expected.min() / 65535,
                                              "max": expected.max() / 65535,
                                              "mean": pytest.approx(expected.mean() / 65535)}
    for version in (4, 5):  # their decoders would skip the map and decode wrongly
        older = bytearray(data)
        older[4] = version
        with pytest.raises(FormatError, match=f"'qlat' quality map in a version-{version} file"):
            Container.from_bytes(fix_crc(older))
    both = Container(container.header, container.streams,
                     {QMAP: encode_quality_map(expected[::4, ::4]), **container.extras}).to_bytes()
    with pytest.raises(FormatError, match="two quality maps"):
        Container.from_bytes(both)


def test_z_takes_the_mean_quality_of_its_latent_pixels_in_integers():
    q16 = np.zeros((4, 8), np.int64)
    q16[:2, :4] = 1  # 8 of 16 at 1/65535: the mean 0.5 rounds half up, to 1
    q16[:, 4:] = 65535
    q16[0, 4] = 0  # 15 of 16 at 65535: 61439.06 rounds to 61439
    assert np.array_equal(np.rint(hyper_quality(q16 / 65535) * 65535), [[1, 61439]])
    assert hyper_quality(0.25) == 0.25


def test_maps_of_64_pixel_cells_stay_version_5_and_decode_as_their_per_latent_pixel_form(crop):
    """A map that holds one quality per 64 x 64 cell is written as version 5, which edgecodec
    versions that predate 6 decode; the same map at latent resolution (version 7: every z pixel's
    latent pixels share its quality, so nothing is rescaled) codes the same streams."""
    encoder = api.Encoder(api.load_image(crop), SHIPPED)
    encoder.roi = RegionsOfInterest.of([ALIGNED], 384, 256, 0.8, margin_weight=1.0)
    data = encoder.encode(api.quality_to_q16(0.2))
    c = Container.from_bytes(data)
    assert c.header.version == 5 and set(c.extras) == {QMAP}
    cells = np.full((4, 6), round(0.2 * 65535))
    cells[1:3, 2:4] = round(0.8 * 65535)
    assert np.array_equal(decode_quality_map(c.extras[QMAP], (4, 6)), cells / 65535)
    assert quality_map_summary(c)["cells"] == [4, 6] and quality_map_summary(c)["cell_pixels"] == 64
    fine = np.repeat(np.repeat(cells, 4, axis=0), 4, axis=1)
    per_latent_pixel = Container(c.header, c.streams, {QMAP_LATENT: encode_quality_map(fine)}).to_bytes()
    assert Container.from_bytes(per_latent_pixel).header.version == 7
    assert np.array_equal(api.decode_array(per_latent_pixel)[0], api.decode_array(data)[0])
    as_version_4 = bytearray(data)
    as_version_4[4] = 4
    with pytest.raises(FormatError, match="'qmap' quality map in a version-4 file"):
        Container.from_bytes(fix_crc(as_version_4))


# FORMAT6 holds version-6 files that edgecodec 9950a5f wrote (before matched_ratio) from kodim23's
# [100:356, 200:584] at 0.2 with regions (150, 60, 48, 48) and (30, 150, 100, 70) at 0.8, and in
# FORMAT6_DECODED what that code decoded them to: the digest of the latents before y's gains, and
# the pixels' PSNR. Files are bound to the weights that wrote them: a shipped model with new weights
# cannot decode its old files at all (WeightsMismatchError), so when one ships, its files are
# written again by 9950a5f's code with the new weights (scripts/format6_fixtures.py, which prints
# both figures; the fidelity files last with stage 49). The latents are compared exactly: they
# are integers plus fixed-point means, the same on every CPU. The pixels are not: the float
# synthesis gave other pixels from the same one-piece files on a CPU with AVX2 and without AVX-512
# (2026-12-06) than on the machines that wrote them, so their PSNR is compared within 0.01 dB.
FORMAT6_DECODED = {
    "fidelity-whole.edc": ("6cbf3555f0c6f1b2dc4838787f4f4684e19dc9b6c4b73510eb6868ca7e9bc184", 29.1327),
    "fidelity-tiled.edc": ("11ed099b8c4e79963fcf1be4e4154dded28ddd4cd51d01bd693eb8dee95df3ea", 29.1391),
    "perceptual-whole.edc": ("ca9cc0845da4acd0f840a4ac124d9b89b49c2857b1740de649e21ce30711cd79", 27.9201),
}


@pytest.mark.parametrize("name", sorted(FORMAT6_DECODED))
def test_version_6_files_decode_to_the_latents_and_pixels_they_did(name, kodim23_rgb):
    data = (FORMAT6 / name).read_bytes()
    assert Container.from_bytes(data).header.version == 6 and QMAP_LATENT in Container.from_bytes(data).extras
    digest, written_psnr = FORMAT6_DECODED[name]
    pixels, decoded_digest = decode_with_latent_digest(data)
    assert decoded_digest == digest
    assert psnr(pixels, kodim23_rgb[CROP]) == pytest.approx(written_psnr, abs=0.01)


def test_matched_parameters_cost_fewer_bytes_and_the_version_says_which_were_used(crop, monkeypatch):
    """Version 7 rescales y's parameters where a z pixel mixes qualities: the same map and picture
    for fewer bytes than version 6 coded it with, and the file's version picks the decoding."""
    roi = [(150, 60, 48, 48), (30, 150, 100, 70)]
    matched = edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=roi, roi_quality=0.8)
    with monkeypatch.context() as m:  # code as version 6 did: no rescaling
        m.setattr("edgecodec.lite.entropy.matched_ratio", lambda *args: None)
        unmatched = edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=roi, roi_quality=0.8)
    as_version_6 = bytearray(unmatched)
    as_version_6[4] = 6
    as_version_6 = fix_crc(as_version_6)
    assert Container.from_bytes(as_version_6).extras == Container.from_bytes(matched).extras
    assert len(matched) < 0.95 * len(unmatched)  # 2,960 and 3,196 bytes when written
    (a, _), (b, _) = api.decode_array(matched), api.decode_array(as_version_6)
    regions = np.zeros(crop.shape[:2], bool)
    for left, top, width, height in roi:
        regions[top:top + height, left:left + width] = True
    # no worse a picture, whole and in the regions, within what one training stage moves it (whole,
    # regions: stage 45's weights +0.02, +0.05 dB; stage 46's +0.01, -0.10 dB; stage 47's -0.01,
    # +0.04 dB; stage 48's -0.01, +0.03 dB; stage 49's +0.00, +0.01 dB; the 48-pixel square alone
    # +0.26, -0.22, -0.07, -0.06 and -0.07 dB), for 6-7% fewer bytes
    assert psnr(a, crop) > psnr(b, crop) - 0.05 and psnr(a[regions], crop[regions]) > psnr(b[regions], crop[regions]) - 0.15
    try:  # version 6's streams decoded as version 7's go wrong (or fail)
        wrong, _ = api.decode_array(unmatched)
    except FormatError:
        return
    assert psnr(wrong, crop) < psnr(b, crop) - 1


def test_latent_pixel_maps_cost_fewer_bytes_than_64_pixel_cells_for_the_same_region(crop):
    """The reason for versions 6 and 7: a small region's latent pixels cover less than 64-pixel cells, and
    the margin keeps the region as sharp."""
    small = (176, 104, 40, 40)  # with the margin, latent pixels (6..9, 10..13); 64-pixel cells (1..2, 2..3)
    encoder = api.Encoder(api.load_image(crop), SHIPPED, roi=[small], roi_quality=0.9)
    fine = encoder.encode(api.quality_to_q16(0.1))
    cells = np.zeros((4, 6))
    cells[1:3, 2:4] = 1  # what version 5 coded: the cells the region touches
    encoder.roi = RegionsOfInterest(np.repeat(np.repeat(cells, 4, axis=0), 4, axis=1), encoder.roi.region_q16)
    coarse = encoder.encode(api.quality_to_q16(0.1))
    assert Container.from_bytes(fine).header.version == 7 and Container.from_bytes(coarse).header.version == 5
    (a, _), (b, _) = api.decode_array(fine), api.decode_array(coarse)
    part = (slice(104, 144), slice(176, 216))
    background, _ = api.decode_array(edgecodec.compress(crop, quality=0.1, model=SHIPPED))
    assert len(fine) < len(coarse)  # 1,450 and 2,401 bytes when written (version 6, margin at full weight: 1,841)
    # 39.9, 40.4 and 30.4 dB: on 24 Kodak images such squares measured within 0.03 dB (benchmarks/roi.py)
    assert psnr(b[part], crop[part]) - 1 < psnr(a[part], crop[part]) and \
        psnr(a[part], crop[part]) > psnr(background[part], crop[part]) + 8


def test_latent_weights_take_each_latent_pixels_own_maximum_or_the_weighted_one_within_the_margin():
    """Against the definition, pixel by pixel, for margins that divide the latent stride and ones that do not."""
    rng = np.random.default_rng(0)
    mask = np.zeros((90, 130), np.uint8)
    for _ in range(4):
        top, left = rng.integers(0, 90), rng.integers(0, 130)
        mask[top: top + rng.integers(1, 30), left: left + rng.integers(1, 30)] = rng.integers(1, 256)
    padded = np.zeros((128, 192), np.uint8)
    padded[:90, :130] = mask
    for margin, weight in ((0, 0.75), (8, 0.75), (5, 0.5), (16, 1.0), (24, 0.25)):
        expected = np.zeros((8, 12))
        for i in range(8):
            for j in range(12):
                own = padded[16 * i: 16 * i + 16, 16 * j: 16 * j + 16].max()
                near = padded[max(0, 16 * i - margin): 16 * i + 16 + margin,
                              max(0, 16 * j - margin): 16 * j + 16 + margin].max()
                expected[i, j] = max(own, weight * near) / 255
        assert np.allclose(latent_weights(mask, (128, 192), margin, weight), expected), (margin, weight)


def test_the_margin_costs_fewer_bytes_at_part_of_the_regions_quality(crop):
    """The latent pixels that only the margin reaches get 0.75 of the way to the region's quality
    (``MARGIN_WEIGHT``): fewer bytes than at its full quality, the region as sharp."""
    small = (176, 104, 40, 40)
    inner = RegionsOfInterest.of([small], 384, 256, 0.9, margin=0).weights
    full = RegionsOfInterest.of([small], 384, 256, 0.9, margin_weight=1.0).weights
    graded = RegionsOfInterest.of([small], 384, 256, 0.9).weights
    assert inner.sum() == 9 and full.sum() == 16  # latent pixels (6..8, 11..13), with the margin (6..9, 10..13)
    assert np.array_equal(graded, np.maximum(inner, 0.75 * full))
    with pytest.raises(ValueError, match="margin"):
        RegionsOfInterest.of([small], 384, 256, 0.9, margin_weight=1.5)
    encoder = api.Encoder(api.load_image(crop), SHIPPED, roi=[small], roi_quality=0.9)
    files = {}
    for name, weights in (("graded", graded), ("full", full)):
        encoder.roi = RegionsOfInterest(weights, encoder.roi.region_q16)
        files[name] = encoder.encode(api.quality_to_q16(0.1))
    assert files["graded"] == edgecodec.compress(crop, quality=0.1, model=SHIPPED, roi=[small], roi_quality=0.9)
    part = (slice(104, 144), slice(176, 216))
    a, b = (api.decode_array(files[name])[0][part] for name in ("graded", "full"))
    assert len(files["graded"]) < len(files["full"])  # 1,450 and 1,505 bytes when written
    # About as sharp: the graded margin keeps at least 90% of the region's gain over the background's
    # quality. Measured: 39.83 / 40.29 dB with fidelity stage 38 (39.98 / 40.22 with stage 37),
    # against 29.4 dB with no region at all. (An absolute tolerance had to follow each stage.)
    background = api.decode_array(edgecodec.compress(crop, quality=0.1, model=SHIPPED))[0][part]
    graded_psnr, full_psnr, background_psnr = (psnr(x, crop[part]) for x in (a, b, background))
    assert full_psnr - background_psnr > 5
    assert full_psnr - graded_psnr < 0.1 * (full_psnr - background_psnr), (graded_psnr, full_psnr, background_psnr)


def test_regions_get_their_quality_and_the_background_keeps_its_own(crop):
    low, high = (edgecodec.compress(crop, quality=q, model=SHIPPED) for q in (0.2, 0.8))
    roi = edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=[RECT], roi_quality=0.8)
    (a, _), (b, _), (c, _) = (api.decode_array(d) for d in (low, high, roi))
    assert len(low) < len(roi) < len(high)
    assert psnr(c[CELLS], crop[CELLS]) > psnr(a[CELLS], crop[CELLS]) + 3
    assert abs(psnr(c[CELLS], crop[CELLS]) - psnr(b[CELLS], crop[CELLS])) < 0.3
    assert abs(psnr(c[FAR], crop[FAR]) - psnr(a[FAR], crop[FAR])) < 0.1


def test_a_uniform_map_codes_exactly_as_one_quality(crop):
    """The gains per cell are the gains per image where every cell has the same quality; a map that
    comes out uniform is written as a plain file."""
    model, _ = load_model(SHIPPED)
    y = model.analyze(api._to_tensor(crop, model.stride))
    q = 21845 / 65535
    assert model.compress_latent(y, np.full((16, 24), q))["strings"] == model.compress_latent(y, q)["strings"]
    plain = edgecodec.compress(crop, quality=0.3, model=SHIPPED)
    everywhere = edgecodec.compress(crop, quality=0.1, model=SHIPPED, roi=[(0, 0, 384, 256)], roi_quality=0.3)
    below = edgecodec.compress(crop, quality=0.3, model=SHIPPED, roi=[RECT], roi_quality=0.1)
    assert everywhere == below == plain and Container.from_bytes(plain).header.version == 3


def test_masks_grade_the_quality_and_bool_masks_are_full_weight(crop):
    mask = np.zeros(crop.shape[:2], np.uint8)
    mask[10, 10] = 102  # 40% of the way: one pixel makes the weight of its latent pixel, and 0.75 of it
    mask[200:, 300:] = 255  # of the latent pixels within 8 pixels
    roi = RegionsOfInterest.of(mask, 384, 256, 0.7)
    assert roi.weights[0, 0] == pytest.approx(0.4) and roi.weights[1, 1] == roi.weights[0, 1] == pytest.approx(0.3)
    assert roi.weights[2, 2] == 0
    assert roi.weights[12, 18] == 1 and roi.weights[12, 17] == roi.weights[11, 18] == 0
    assert roi.weights.sum() == pytest.approx(25.3)  # 4 x 6 latent pixels, one at 40% and 3 at 30%
    q16, quality, extras = roi.at(13107)
    assert q16 == 13107 and set(extras) == {QMAP_LATENT}
    assert round(quality[0, 0] * 65535) == round(13107 + 0.4 * (roi.region_q16 - 13107))
    pil = Image.fromarray(mask > 0)  # mode "1"
    data = edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=pil, roi_quality=0.7)
    assert file_quality(Container.from_bytes(data), (16, 24))[0, 0] == roi.region_q16 / 65535
    with pytest.raises(UsageError, match="image's size"):
        RegionsOfInterest.of(mask[:-1], 384, 256, 0.7)
    with pytest.raises(UsageError, match="uint8"):
        RegionsOfInterest.of(mask.astype(np.float32), 384, 256, 0.7)
    with pytest.raises(UsageError, match="not within the 384x256 image"):
        RegionsOfInterest.of([(300, 0, 100, 10)], 384, 256, 0.7)
    with pytest.raises(UsageError, match="non-empty list"):
        RegionsOfInterest.of([], 384, 256, 0.7)
    with pytest.raises(ValueError, match="region quality"):
        RegionsOfInterest.of([RECT], 384, 256, 1.5)
    # a wrong type is a TypeError, as the README says of every argument (it was a UsageError)
    for wrong in ("1", None, True):
        with pytest.raises(TypeError, match=r"region quality \(roi_quality\) must be a number"):
            RegionsOfInterest.of([RECT], 384, 256, wrong)
    assert RegionsOfInterest.of([RECT], 384, 256, np.int64(1)).region_q16 == 65535
    # one rectangle where the list belongs says so (it was "region must be four integers ..., not 0")
    with pytest.raises(UsageError, match=r"roi=\[\(0, 0, 5, 5\)\], not roi=\(0, 0, 5, 5\)"):
        RegionsOfInterest.of((0, 0, 5, 5), 384, 256, 0.7)


def test_masks_of_any_depth_or_with_alpha_grade_as_8_bit_grays(crop, tmp_path, monkeypatch):
    """convert("L") clipped a 16-bit mask's mid-gray to white (the region at full quality, 48% more
    bytes), and a mask marking its region by transparency coded the whole image as region."""
    gray8 = np.zeros(crop.shape[:2], np.uint8)
    gray8[64:192, 128:256] = 128
    reference = edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=gray8, roi_quality=0.8)
    gray16 = Image.fromarray(gray8.astype(np.uint16) * 257)  # the same gray, 16 bits (mode I;16)
    assert edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=gray16, roi_quality=0.8) == reference
    gray16.save(tmp_path / "mask16.png")
    Image.fromarray(crop).save(tmp_path / "in.png")
    result = run_cli("--threads", "1", "compress", tmp_path / "in.png", "-o", tmp_path / "m.edc", "--model", SHIPPED,
                     "--quality", "0.2", "--roi-mask", tmp_path / "mask16.png", "--roi-quality", "0.8")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m.edc").read_bytes() == reference
    levels16 = Image.fromarray(gray8.astype(np.uint16))  # 8-bit levels in a 16-bit file: as they are
    assert edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=levels16, roi_quality=0.8) == reference
    with pytest.raises(ImageTooLargeError):  # the mask is read within the caller's pixel limit too ...
        edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=gray16, roi_quality=0.8, max_pixels=1000)
    env = {**cli_env(), "EDGECODEC_MAX_PIXELS": "5000"}  # ... and --max-pixels raises it for the mask as well
    result = run_cli("--threads", "1", "compress", tmp_path / "in.png", "-o", tmp_path / "m2.edc", "--model", SHIPPED,
                     "--quality", "0.2", "--roi-mask", tmp_path / "mask16.png", "--roi-quality", "0.8",
                     "--max-pixels", "200000", env=env)
    assert result.returncode == 0, result.stderr
    from edgecodec import cli

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's own limit refused the mask, not the image
    assert cli.main(["--threads", "1", "compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "m3.edc"), "--model",
                     SHIPPED, "--quality", "0.2", "--roi-mask", str(tmp_path / "mask16.png"), "--roi-quality", "0.8",
                     "--max-pixels", "200000", "-q"]) == 0
    monkeypatch.undo()
    assert (tmp_path / "m3.edc").read_bytes() == reference
    white_by_alpha = np.dstack([np.full(crop.shape[:2], 255, np.uint8), (gray8 > 0).astype(np.uint8) * 255])
    by_alpha = edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=Image.fromarray(white_by_alpha, "LA"),
                                  roi_quality=0.8)
    assert by_alpha == edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=(gray8 > 0).astype(np.uint8) * 255,
                                          roi_quality=0.8)


def test_tiled_files_with_a_map_decode_by_region_as_whole(crop):
    encoder = api.Encoder(api.load_image(crop), SHIPPED, tile=16, roi=[RECT], roi_quality=0.8)
    data = encoder.encode(api.quality_to_q16(0.2))
    header = Container.from_bytes(data).header
    assert header.tile == 16 and header.version == 7
    whole, _ = api.decode_array(data)
    one_piece, _ = api.decode_array(edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=[RECT], roi_quality=0.8))
    assert psnr(whole, one_piece) > 40  # tiles change the entropy coding, not the picture
    region = (100, 40, 200, 150)
    part, _ = api.decode_array(data, region=region)
    assert np.array_equal(part, whole[40:190, 100:300])


def test_a_target_size_searches_the_background_quality(crop):
    low = len(edgecodec.compress(crop, quality=0.0, model=SHIPPED, roi=[RECT], roi_quality=0.9))
    target = 2 * low
    data = edgecodec.compress(crop, model=SHIPPED, target_size=target, roi=[RECT], roi_quality=0.9)
    assert 0.97 * target <= len(data) <= target
    container = Container.from_bytes(data)
    assert 0 < container.header.quality < 0.9 and quality_map_summary(container)["max"] == round(0.9 * 65535) / 65535


def test_models_and_modes_that_cannot_take_regions_refuse_them(crop, tmp_path, monkeypatch):
    from edgecodec.models import create_model
    from edgecodec.zoo import save_model

    with pytest.raises(ValueError, match="refinement does not take regions"):
        edgecodec.compress(crop, model=SHIPPED, roi=[RECT], refine_steps=2)
    torch.manual_seed(0)
    save_model(create_model("cae", prior="factorized", **TINY).eval(), tmp_path, "flat", {"summary": "test"})
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", str(tmp_path))
    with pytest.raises(ValueError, match="need a hyperprior model"):
        edgecodec.compress(crop, model="flat", roi=[RECT])


def test_a_map_of_the_wrong_size_is_a_corrupted_file(crop):
    data = edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=[RECT], roi_quality=0.8)
    c = Container.from_bytes(data)
    damaged = Container(c.header, c.streams, {QMAP: encode_quality_map(np.zeros((4, 5), np.int64))}).to_bytes()
    with pytest.raises(FormatError, match="quality map of 4x5 values, the image needs 4x6"):
        api.decode_array(damaged)
    damaged = Container(c.header, c.streams, {QMAP_LATENT: encode_quality_map(np.zeros((4, 6), np.int64))}).to_bytes()
    with pytest.raises(FormatError, match="quality map of 4x6 values, the image needs 16x24"):
        api.decode_array(damaged)


def test_command_line_regions(kodim23, tmp_path):
    out = tmp_path / "r.edc"
    result = run_cli("--threads", "1", "compress", kodim23, "-o", out, "--model", SHIPPED, "--quality", "0.2",
                     "--roi", "300,100,200,200", "--roi", "0,0,10,10", "--roi-quality", "0.8")
    assert result.returncode == 0, result.stderr
    assert "quality 0.2000" in result.stdout and "regions of interest at quality 0.8000" in result.stdout
    info = json.loads(run_cli("info", "--json", out).stdout)
    assert info["format_version"] == 7 and info["quality_map"]["cells"] == [32, 48]
    assert "quality map: 48x32 cells of 16x16 px, quality 0.2000 to 0.8000" in run_cli("info", out).stdout
    # metrics --region measures the region alone: higher than the whole image, and what the crop gives
    whole, part = (json.loads(run_cli("metrics", kodim23, out, "--json", *extra).stdout)[0]
                   for extra in ((), ("--region", "300,100,200,200")))
    decoded = edgecodec.decompress(out.read_bytes())
    reference = np.asarray(Image.open(kodim23).convert("RGB"))
    assert part["psnr"] == pytest.approx(psnr(np.asarray(decoded)[100:300, 300:500], reference[100:300, 300:500]))
    assert part["psnr"] > whole["psnr"] + 3 and part["bpp"] == whole["bpp"] and part["region"] == [300, 100, 200, 200]
    mask = tmp_path / "mask.png"
    Image.new("L", (512, 768)).save(mask)  # kodim23 is 768 x 512
    for args, code, fragments in [
        (["--roi", "700,100,200,200"], 2, ("not within the 768x512 image",)),
        (["--roi", "1,1,5,5", "--roi-mask", mask], 2, ("not both",)),
        (["--roi-mask", mask], 2, ("the mask", "is 512x768; the image is 768x512")),
        (["--roi-mask", tmp_path / "none.png"], 3, ("cannot read the mask", "none.png: No such file or directory")),
        (["--roi", "1,1,5,5", "--refine", "3"], 2, ("--refine optimises one quality",)),
        (["--roi-quality", "0.9"], 2, ("give them with --roi or --roi-mask",)),  # was ignored in silence
    ]:
        bad = tmp_path / "bad.edc"
        result = run_cli("compress", kodim23, "-o", bad, "--model", SHIPPED, *args)
        assert result.returncode == code, (args, result.stderr)
        assert_one_error_line(result.stderr, *fragments)
        assert not bad.exists()
    result = run_cli("compress", kodim23, "-o", tmp_path / "one.edc", "--roi-mask", tmp_path)
    assert result.returncode == 2 and not (tmp_path / "one.edc").exists()
    assert_one_error_line(result.stderr, "is a folder of masks: give a folder of images")


def test_folders_take_a_mask_per_image_or_the_same_rectangles(crop, tmp_path):
    """compress IN -o OUT --roi-mask MASKS: the mask of IN/a/b.png is MASKS/a/b.png, an image
    without one is coded without regions, a bad mask fails its image alone (exit code 10)."""
    images, masks = tmp_path / "in", tmp_path / "masks"
    (images / "sub").mkdir(parents=True)
    (masks / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png", "c.png"):
        Image.fromarray(crop).save(images / name)
    mask = np.zeros(crop.shape[:2], np.uint8)
    mask[100:140, 100:160] = 255
    Image.fromarray(mask).save(masks / "sub/b.png")
    Image.fromarray(mask[:-1]).save(masks / "c.png")  # the wrong size
    result = run_cli("compress", images, "-o", tmp_path / "out", "--model", SHIPPED, "--quality", "0.1",
                     "--roi-mask", masks, "--roi-quality", "0.9")
    assert result.returncode == 10, result.stderr
    assert "2 written" in result.stdout and "c.png: the mask" in result.stderr and "is 384x255" in result.stderr
    plain = Container.from_bytes((tmp_path / "out/a.edc").read_bytes())
    mapped = Container.from_bytes((tmp_path / "out/sub/b.edc").read_bytes())
    assert plain.header.version == 3 and not plain.extras and not (tmp_path / "out/c.edc").exists()
    assert mapped.header.version == 7 and quality_map_summary(mapped)["max"] == round(0.9 * 65535) / 65535
    # the same rectangles in every image; one that does not fit an image fails that image alone
    Image.fromarray(crop[:100]).save(images / "c.png")
    result = run_cli("compress", images, "-o", tmp_path / "rects", "--model", SHIPPED, "--roi", "100,100,60,40")
    assert result.returncode == 10 and "2 written" in result.stdout and "not within the 384x100 image" in result.stderr
    assert (tmp_path / "rects/a.edc").read_bytes() == (tmp_path / "rects/sub/b.edc").read_bytes() \
        == edgecodec.compress(crop, model=SHIPPED, roi=[(100, 100, 60, 40)])
    (tmp_path / "empty").mkdir()  # no mask matches an image (a wrong folder): refused before anything is written
    result = run_cli("compress", images, "-o", tmp_path / "none", "--roi-mask", tmp_path / "empty")
    assert result.returncode == 2 and not (tmp_path / "none").exists()
    assert_one_error_line(result.stderr, "no mask in", "matches an image of")


def test_pillow_saves_with_regions(crop, tmp_path):
    Image.fromarray(crop).save(tmp_path / "p.edc", quality=0.2, model=SHIPPED, roi=[RECT], roi_quality=0.8)
    assert (tmp_path / "p.edc").read_bytes() == edgecodec.compress(crop, quality=0.2, model=SHIPPED, roi=[RECT],
                                                                   roi_quality=0.8)
