"""Tiled coding of large images (edgecodec/codec/tiling.py): no seams, deterministic, and the
container's tile field (format versions 2 and 3). Tiles are made as small as the format allows here (16 latent
pixels, 256 image pixels) so that a Kodak image has several and the tests stay fast."""

from __future__ import annotations

import dataclasses
import struct
import sys
import threading
import time

import numpy as np
import pytest
import torch
from conftest import REPO, SHIPPED, TINY, fix_crc, legacy_streams, psnr

from edgecodec.codec import tiling
from edgecodec.codec.api import Encoder, _to_tensor, decode_array
from edgecodec.codec.container import Container, Header
from edgecodec.codec.imageio import load_image
from edgecodec.errors import FormatError, ImageTooLargeError

Q = 32768  # quality 0.5
BORDER = 4
SEAM_TOLERANCE_DB = 0.02  # tiled against one-piece stream, same pixels
# At the tile borders themselves: tiles cut the checkerboard context at their edges, so the latents
# next to an edge get other Gaussian means and so other rounding offsets; their pixels then differ
# by a few hundredths of a dB (0.037 with fidelity stage 25, under 0.02 before), where a real seam
# (no synthesis halo, below) costs more than 1 dB.
BORDER_TOLERANCE_DB = 0.06


def border_mask(height: int, width: int, tile_px: int, reach: int = BORDER) -> np.ndarray:
    """Pixels within ``reach`` pixels of an interior tile border."""
    rows = np.zeros(height, bool)
    cols = np.zeros(width, bool)
    for b in range(tile_px, height, tile_px):
        rows[b - reach: b + reach] = True
    for b in range(tile_px, width, tile_px):
        cols[b - reach: b + reach] = True
    return rows[:, None] | cols[None, :]


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return psnr(a[mask], b[mask])


@pytest.fixture(scope="module")
def mosaic(kodak):
    """1024x768 of Kodak images side by side, offset so that no image edge lies on a tile border
    (benchmarks/large.py's test image, smaller): tile borders cross ordinary content."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import large

    return large.make_mosaic(kodak, 1024, 768)


@pytest.fixture(scope="module")
def shipped_tiled(mosaic):
    """The mosaic coded by the shipped model in one piece and in 16-latent-pixel (256 px) tiles:
    latent 48x64, 3 x 4 tiles, borders at x = 256, 512, 768 and y = 256, 512."""
    whole = Encoder(load_image(mosaic), SHIPPED, tile=0)
    tiled = Encoder(load_image(mosaic), SHIPPED, tile=16)
    return {"whole": whole, "tiled": tiled, "whole_data": whole.encode(Q), "tiled_data": tiled.encode(Q)}


# --- no seams ------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [SHIPPED, "tiny"])
def test_tiled_analysis_equals_whole_image_latent(model, kodim23_rgb, monkeypatch):
    """The encoder's windows overlap by g_a's receptive field: the stitched latent is the whole
    image's, so tiling cannot create a seam. Without the halo it is far off (the check can fail)."""
    rgb = kodim23_rgb[:500, :700]  # odd size: the padding is replicated inside the windows too
    enc = Encoder(load_image(rgb), model, tile=0)
    m = enc.model
    for tile in (16, 32):
        y = tiling.analyze_tiled(m, rgb, tile)
        assert y.shape == enc.y.shape
        assert torch.allclose(y, enc.y, atol=1e-5, rtol=0), (tile, (y - enc.y).abs().max().item())
    assert torch.equal(Encoder(load_image(rgb), model, tile=16).y, tiling.analyze_tiled(m, rgb, 16))
    assert tiling.analysis_halo(m) > 1
    monkeypatch.setattr(tiling, "analysis_halo", lambda _m: 1)
    assert (tiling.analyze_tiled(m, rgb, 16) - enc.y).abs().max().item() > 1e-3


def test_tile_borders_do_not_show(shipped_tiled, mosaic, monkeypatch):
    """The issue's criterion: PSNR over the pixels within 4 px of tile borders is within 1 dB of
    the whole image's. Content alone moves that figure (on kodim23 alone, tiled or not, its 3
    borders cross feathers and read 1.8 dB low), so the seam test proper is against the one-piece
    stream at the same pixels: equal. With too small a synthesis halo the borders do show."""
    data = shipped_tiled["tiled_data"]
    header = Container.from_bytes(data).header
    assert (header.version, header.tile) == (3, 16)
    assert tiling.num_tiles(48, 64, 16) == 12
    out, _ = decode_array(data)
    ref, _ = decode_array(shipped_tiled["whole_data"])
    mask = border_mask(768, 1024, 16 * 16)
    whole, border = psnr(mosaic, out), masked_psnr(mosaic, out, mask)
    assert abs(border - whole) <= 1.0, (border, whole)
    # Against the one-piece stream: the same quality everywhere, the tile borders included.
    one_piece_border = masked_psnr(mosaic, ref, mask)
    assert abs(whole - psnr(mosaic, ref)) < SEAM_TOLERANCE_DB
    assert abs(border - one_piece_border) < BORDER_TOLERANCE_DB
    assert psnr(out, ref) > 45
    # Tiles cut the checkerboard context at their edges, so the stream grows a little, and more as
    # the context model learns to exploit neighbours (1.1% with fidelity stage 21, under 1% before).
    assert abs(len(data) - len(shipped_tiled["whole_data"])) < 0.02 * len(shipped_tiled["whole_data"])
    # The checks can fail: without a synthesis halo the borders lose more than 1 dB (the issue's
    # criterion; 6.3 dB with the ninth session's perceptual weights). The halo's exactness, which
    # does not depend on the weights, is test_tiled_synthesis_equals_one_piece_synthesis.
    monkeypatch.setattr(tiling, "synthesis_halo", lambda _m: 0)
    seamed, _ = decode_array(data)
    seamed_border = masked_psnr(mosaic, seamed, mask)
    assert border - seamed_border > 1.0, seamed_border
    assert whole - seamed_border > 1.0


def test_tiled_synthesis_equals_one_piece_synthesis(shipped_tiled, monkeypatch):
    """The synthesis windows overlap by g_s's reach, so the tiled decode is the one-piece synthesis
    of the same latent, within one level (float summation order): no seam, whatever the weights.
    With a 1-latent-pixel halo (g_s reaches 1.875) pixels near the borders are off by more (up to
    10 levels here; 128-145 on random latents, tenth session's weights): the check can fail."""
    data = shipped_tiled["tiled_data"]
    container = Container.from_bytes(data)
    h = container.header
    model = shipped_tiled["tiled"].model
    latent_shape = tuple(shipped_tiled["tiled"].y.shape[-2:])
    y_hat = torch.from_numpy(model.exact_entropy().decode(container.streams, latent_shape, h.quality, h.tile))[None]
    # one window covering the whole latent: the one-piece synthesis, through the decoder's own code
    one_piece = tiling.synthesize_tiled(model, y_hat, h.height, h.width, max(latent_shape)).astype(int)
    tiled, _ = decode_array(data)
    assert np.abs(tiled.astype(int) - one_piece).max() <= 1
    assert tiling.synthesis_halo(model) == 3
    monkeypatch.setattr(tiling, "synthesis_halo", lambda _m: 1)
    seamed, _ = decode_array(data)
    off = np.abs(seamed.astype(int) - one_piece) > 1
    assert off.any()  # the first check fails with too small a halo
    # and only near the tile borders: within g_s's reach (2 latent pixels = 32 px) of one
    near = border_mask(h.height, h.width, h.tile * 16, reach=32)
    assert off.any(axis=-1)[~near].sum() == 0


def test_tiled_decoding_is_deterministic(shipped_tiled, mosaic):
    data = shipped_tiled["tiled_data"]
    first, _ = decode_array(data)
    second, _ = decode_array(data)
    assert np.array_equal(first, second)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two, _ = decode_array(data)
        encoded_with_two = Encoder(load_image(mosaic), SHIPPED, tile=16).encode(Q)
    finally:
        torch.set_num_threads(previous)
    assert np.array_equal(first, two)
    assert np.array_equal(decode_array(encoded_with_two)[0], decode_array(encoded_with_two)[0])
    assert shipped_tiled["tiled"].encode(Q) == data  # encoding is deterministic too
    assert Encoder(load_image(mosaic), SHIPPED, tile=16).encode(Q) == data


def test_tile_windows_run_in_parallel_with_the_same_result(shipped_tiled, mosaic, monkeypatch):
    """Analysis and synthesis windows run ``workers`` at once, each on one torch thread, so a large
    image uses every core and the latent and pixels do not depend on the worker count."""
    model = shipped_tiled["tiled"].model
    data = shipped_tiled["tiled_data"]
    container = Container.from_bytes(data)
    h = container.header
    latent_shape = tuple(shipped_tiled["tiled"].y.shape[-2:])
    y_hat = torch.from_numpy(model.exact_entropy().decode(container.streams, latent_shape, h.quality, h.tile))[None]
    rgb = load_image(mosaic).rgb
    threads = torch.get_num_threads()
    sequential = (tiling.analyze_tiled(model, rgb, 16, workers=1),
                  tiling.synthesize_tiled(model, y_hat, h.height, h.width, 16, workers=1))

    seen = []  # (transform, thread, torch's thread count there) of every window
    for name in ("analyze", "_image"):
        original = getattr(model, name)

        def window(x, _original=original, _name=name):
            seen.append((_name, threading.get_ident(), torch.get_num_threads()))
            time.sleep(0.05)  # keep the window busy so that the pool's other threads take the next ones
            return _original(x)

        monkeypatch.setattr(model, name, window)
    parallel = (tiling.analyze_tiled(model, rgb, 16, workers=3),
                tiling.synthesize_tiled(model, y_hat, h.height, h.width, 16, workers=3))
    assert torch.equal(sequential[0], parallel[0])
    assert np.array_equal(sequential[1], parallel[1])
    assert len(seen) == 2 * 12  # 3 x 4 tiles, analysed and synthesised
    for name in ("analyze", "_image"):
        assert len({thread for transform, thread, _ in seen if transform == name}) == 3
    assert {count for _, _, count in seen} == {1}
    assert torch.get_num_threads() == threads  # restored after the pool


@pytest.mark.parametrize("prior", ["meanscale", "scale", "factorized"])
def test_tiled_round_trip_every_prior(prior, tmp_path, monkeypatch):
    """Tiny crb models (residual blocks: a wider receptive field than gdn) of every prior, on an
    odd-sized image: tiled and one-piece streams decode to nearly the same pixels."""
    from edgecodec.models import create_model
    from edgecodec.zoo import save_model

    torch.manual_seed(3)
    model = create_model("crb", prior=prior, **TINY).eval()
    save_model(model, tmp_path, "tiler", {"summary": "tiling test"})
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", str(tmp_path))
    yy, xx = np.mgrid[0:300, 0:410]
    rgb = np.stack([yy, xx, (yy * xx) % 256], -1).astype(np.uint8)
    whole, tiled = Encoder(load_image(rgb), "tiler", tile=0), Encoder(load_image(rgb), "tiler", tile=16)
    a, _ = decode_array(whole.encode(Q))
    data = tiled.encode(Q)
    b, header = decode_array(data)
    assert header.tile == 16 and b.shape == (300, 410, 3)
    n = tiling.num_tiles(*tiled.y.shape[-2:], 16)
    assert n == 4 and len(tiling.unpack_tiles(Container.from_bytes(data).streams[0], n)) == n
    assert psnr(a, b) > 40


# --- when to tile --------------------------------------------------------------------------------
def test_tiling_threshold(monkeypatch, kodim23_rgb):
    from edgecodec import zoo

    model, _ = zoo.load_model(SHIPPED)
    assert tiling.choose_tile(model, 512, 768) == 0  # Kodak
    assert tiling.choose_tile(model, 1080, 1920) == 0  # Full HD stays in one piece
    assert tiling.choose_tile(model, 1200, 1920) == tiling.TILE_LATENT
    assert tiling.choose_tile(model, 4320, 7680) == tiling.TILE_LATENT
    assert Container.from_bytes(Encoder(load_image(kodim23_rgb[:64, :64]), SHIPPED).encode(Q)).header.version == 3
    monkeypatch.setattr(tiling, "TILE_PIXELS", 64 * 64)
    monkeypatch.setattr(tiling, "TILE_LATENT", 16)
    enc = Encoder(load_image(kodim23_rgb[:64, :300]), SHIPPED)
    assert enc.tile == 16
    header = Container.from_bytes(enc.encode(Q)).header
    assert (header.version, header.tile) == (3, 16)
    for bad in (4, 8, 24):
        with pytest.raises(ValueError, match="tile"):
            Encoder(load_image(kodim23_rgb[:64, :64]), SHIPPED, tile=bad)


def test_halos_of_the_registered_transforms():
    from edgecodec.models import create_model

    gdn = create_model("gdn-hp", **TINY)
    crb = create_model("crb", **TINY)
    # gdn: four 5x5 stride-2 convolutions reach 30 image pixels -> 2 latent pixels; crb's residual
    # blocks add 28 -> 58 -> 4.
    assert (tiling.analysis_halo(gdn), tiling.analysis_halo(crb)) == (2, 4)
    assert (tiling.synthesis_halo(gdn), tiling.synthesis_halo(crb)) == (3, 5)
    # encoder_res_blocks=2: eight 3x3 convolutions, four at 1/4 and four at 1/8 resolution, add
    # 4 * 4 + 4 * 8 = 48 -> 78 -> 5; the synthesis is untouched.
    deeper = create_model("gdn-hp", encoder_res_blocks=2, **TINY)
    assert (tiling.analysis_halo(deeper), tiling.synthesis_halo(deeper)) == (5, 3)
    assert tiling.tiling_supported(gdn) and not tiling.tiling_supported(object())


# --- container and hostile tiled streams ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_tiled() -> bytes:
    """A tiny-model stream of a 300x450 image in 16-latent-pixel tiles (latent 20x32: 2 x 2 tiles)."""
    x = np.random.RandomState(1).randint(0, 256, (300, 450, 3), dtype=np.uint8)
    return Encoder(load_image(x), "tiny", tile=16).encode(Q)


def test_tiled_layout(tiny_tiled):
    data = tiny_tiled
    n = data[7]
    assert data[4] == 3
    (header_len,) = struct.unpack_from("<H", data, 5)
    assert 7 + header_len == 32 + n  # version 1's fields, then the 2-byte tile field
    assert struct.unpack_from("<H", data, 30 + n) == (16,)
    c = Container.from_bytes(data)
    assert c.header.tile == 16 and len(c.streams) == 2
    tiles = tiling.unpack_tiles(c.streams[0], 4)
    assert tiling.pack_tiles(tiles) == c.streams[0]
    assert Container(c.header, c.streams).to_bytes() == data
    # A version-2 header with tile 0 is a one-piece stream, like version 1 (both: the float hyper path).
    from edgecodec import zoo

    rgb = np.random.RandomState(0).randint(0, 256, (300, 450, 3), dtype=np.uint8)
    model, weights_hash = zoo.load_model("tiny")
    v1 = Container(Header("tiny", weights_hash, Q, 450, 300, version=1), legacy_streams(model, rgb, Q / 65535))
    v2 = Container(dataclasses.replace(v1.header, version=2), v1.streams).to_bytes()
    assert v2[4] == 2 and len(v2) == len(v1.to_bytes()) + 2
    assert np.array_equal(decode_array(v2)[0], decode_array(v1.to_bytes())[0])


@pytest.mark.parametrize("tile", [1, 4, 8, 24, 65535])
def test_invalid_tile_field(tiny_tiled, tile):
    n = tiny_tiled[7]
    bad = fix_crc(tiny_tiled[:30 + n] + struct.pack("<H", tile) + tiny_tiled[32 + n:])
    with pytest.raises(FormatError, match="tile"):
        Container.from_bytes(bad)
    with pytest.raises(ValueError):
        Container(dataclasses.replace(Container.from_bytes(tiny_tiled).header, tile=tile), [b"x"]).to_bytes()


def _with_tiles(data: bytes, tiles: list[bytes] | None = None, raw: bytes | None = None, **header) -> bytes:
    c = Container.from_bytes(data)
    stream = raw if raw is not None else tiling.pack_tiles(tiles)
    return Container(dataclasses.replace(c.header, **header), [stream, *c.streams[1:]]).to_bytes()


def test_hostile_tile_tables_are_format_errors(tiny_tiled):
    c = Container.from_bytes(tiny_tiled)
    tiles = tiling.unpack_tiles(c.streams[0], 4)
    table = c.streams[0]
    cases = {
        "too few tiles": _with_tiles(tiny_tiled, tiles[:3]),
        "too many tiles": _with_tiles(tiny_tiled, tiles + [b""]),
        "trailing": _with_tiles(tiny_tiled, raw=table + b"\x00"),
        "truncated": _with_tiles(tiny_tiled, raw=table[:-1]),
        "length past the end": _with_tiles(tiny_tiled, raw=struct.pack("<I", 1 << 31) + table[4:]),
        "overlong tile": _with_tiles(tiny_tiled, [b"\xff" * (8 * 32 * 16 * 16 + 65)] + tiles[1:]),
        "empty table": _with_tiles(tiny_tiled, raw=b""),
        "other tile size": _with_tiles(tiny_tiled, tiles, tile=32),
    }
    for name, data in cases.items():
        with pytest.raises(FormatError):
            decode_array(data)
            pytest.fail(name)


def test_tiled_pixel_limit_before_allocation(tiny_tiled):
    huge = _with_tiles(tiny_tiled, raw=b"", width=100_000, height=100_000)
    with pytest.raises(ImageTooLargeError, match="100000x100000"):
        decode_array(huge)
    # Many tiles declared, few bytes: refused before the table is read.
    many = _with_tiles(tiny_tiled, raw=b"\x00" * 12, width=4096, height=4096)
    with pytest.raises(FormatError, match="tile"):
        decode_array(many, max_pixels=1 << 24)


def test_one_piece_path_is_unchanged(kodim23_rgb):
    """Below the threshold: one piece (tile 0), the bytes of model.compress."""
    from edgecodec import zoo

    rgb = kodim23_rgb[:128, :192]
    model, _ = zoo.load_model("tiny")
    data = Encoder(load_image(rgb), "tiny").encode(Q)
    c = Container.from_bytes(data)
    assert c.header.version == 3 and c.header.tile == 0
    assert c.streams == model.compress(_to_tensor(rgb, model.stride), Q / 65535)["strings"]
