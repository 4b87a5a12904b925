"""The .edc container: layout (docs/format.md), round trip, and rejection of every kind of bad input."""

from __future__ import annotations

import dataclasses
import io
import struct
import tracemalloc
import zlib

import pytest
from conftest import fix_crc

from edgecodec.codec.api import decode_array, read_header
from edgecodec.codec.container import FORMAT_VERSION, MAGIC, STREAM_VERSION, Container, Header, read_file
from edgecodec.errors import FormatError, ImageTooLargeError, UnknownModelError, VersionError

HASH = bytes(range(1, 9))


def sample_header(**changes) -> Header:
    header = Header("fidelity", HASH, quality_q16=12345, width=640, height=480, channels=4, bit_depth=16,
                    conversions=8 | 16)
    return dataclasses.replace(header, **changes)


def test_round_trip_preserves_every_field():
    streams = [b"abc", b"", bytes(range(256)) * 3]
    container = Container(sample_header(), streams)
    data = container.to_bytes()
    back = Container.from_bytes(data)
    assert back.header == container.header
    assert back.streams == streams
    assert back.to_bytes() == data
    assert back.header.version == STREAM_VERSION == 3  # what the encoder writes for a file without extras
    assert FORMAT_VERSION == 7
    for version, tile in ((1, 0), (2, 0), (2, 64), (3, 64)):  # older versions still parse
        c = Container(sample_header(version=version, tile=tile), streams)
        assert Container.from_bytes(c.to_bytes()).header == c.header
    assert back.header.quality == pytest.approx(12345 / 65535)
    assert back.header.conversion_names() == ["alpha dropped", "EXIF orientation applied"]
    assert read_header(data) == container.header


def test_layout_matches_format_doc():
    name = "fidelity"
    data = Container(sample_header(version=1), [b"\x01\x02", b"\x03"]).to_bytes()
    n = len(name)
    assert data[:4] == MAGIC == b"\x89EDC"
    assert data[4] == 1  # version 1; versions 2 and 3 add the tile field (below, and test_tiling)
    (header_len,) = struct.unpack_from("<H", data, 5)
    # The per-field table of docs/format.md: the header ends after the stream count at 29 + n.
    assert 7 + header_len == 30 + n
    v3 = Container(sample_header(), [b"\x01\x02", b"\x03"]).to_bytes()
    assert v3[4] == 3 and 7 + struct.unpack_from("<H", v3, 5)[0] == 32 + n and v3[30 + n:32 + n] == b"\x00\x00"
    assert data[7] == n and data[8:8 + n] == name.encode()
    assert data[8 + n:16 + n] == HASH
    assert struct.unpack_from("<HIIBBBB", data, 16 + n) == (12345, 640, 480, 4, 16, 24, 2)
    pos = 7 + header_len
    assert struct.unpack_from("<I", data, pos) == (2,) and data[pos + 4:pos + 6] == b"\x01\x02"
    assert struct.unpack_from("<I", data, pos + 6) == (1,) and data[pos + 10:pos + 11] == b"\x03"
    assert len(data) == pos + 11 + 4
    assert struct.unpack_from("<I", data, len(data) - 4) == (zlib.crc32(data[:-4]),)


def test_extras_make_version_4_and_round_trip_in_order():
    extras = {"xmp ": b"<x/>", "alph": b"\x00\xff", "zzzz": b""}
    container = Container(sample_header(), [b"\x01\x02", b"\x03"], extras)
    data = container.to_bytes()
    back = Container.from_bytes(data)
    assert data[4] == 4 and back.header.version == 4
    assert back.extras == extras and list(back.extras) == list(extras) and back.streams == container.streams
    # Layout (docs/format.md): after the last stream, a count byte, then each tag, length and bytes.
    plain = Container(sample_header(), [b"\x01\x02", b"\x03"]).to_bytes()
    assert data[5:-4 - (1 + 3 * 8 + 4 + 2)] == plain[5:-4]
    table = data[len(plain) - 4:-4]
    assert table[0] == 3 and table[1:9] == b"xmp " + struct.pack("<I", 4) and table[9:13] == b"<x/>"
    assert table[13:21] == b"alph" + struct.pack("<I", 2) and table[23:31] == b"zzzz" + bytes(4)
    # A version-4 header without extras writes an empty table, and reads back the same.
    empty = Container(dataclasses.replace(back.header, version=4), [b"x"])
    assert Container.from_bytes(empty.to_bytes()) == empty and empty.to_bytes()[-5] == 0


def test_quality_maps_set_the_version_a_new_file_is_written_in_and_a_read_one_keeps():
    """A new file with a per-latent-pixel map is version 7 (its streams rescaled, lite/qmap.py), one
    with 64-pixel cells version 5; a version-6 file written again stays version 6, whose streams
    decode without rescaling."""
    streams = [b"\x01", b"\x02"]
    for tag, version in (("qlat", 7), ("qmap", 5)):
        data = Container(sample_header(), streams, {tag: b"map"}).to_bytes()
        assert data[4] == version and Container.from_bytes(data).header.version == version
    read = Container(sample_header(version=6), streams, {"qlat": b"map"})
    assert Container.from_bytes(read.to_bytes()) == read
    assert Container(sample_header(version=6), streams, {"qmap": b"map"}).to_bytes()[4] == 6


@pytest.mark.parametrize("tag", ["alp", "alpha", "al\x00h", "\u00e9t\u00e9"])
def test_to_bytes_rejects_invalid_extra_tags(tag):
    with pytest.raises(ValueError):
        Container(sample_header(), [b"x"], {tag: b""}).to_bytes()


def test_malformed_extras_tables_are_format_errors():
    good = Container(sample_header(), [b"abc"], {"alph": b"\x00\xff", "exif": b"II*\x00"}).to_bytes()
    body = good[:-4]
    table_start = len(Container(sample_header(), [b"abc"]).to_bytes()) - 4
    cases = {
        "missing table": body[:table_start],
        "count past the table": body[:table_start] + b"\x03" + body[table_start + 1:],
        "extra shorter than declared": body[:-1],
        "trailing bytes": body + b"\x00",
        "repeated tag": body[:table_start] + b"\x02" + (b"alph" + struct.pack("<I", 1) + b"\x00") * 2,
        "unprintable tag": body[:table_start] + b"\x01" + b"al\x00h" + struct.pack("<I", 0),
    }
    for name, damaged in cases.items():
        with pytest.raises(FormatError) as info:
            Container.from_bytes(fix_crc(damaged + bytes(4)))
        assert type(info.value) is FormatError, name
    # A version-3 file has no table: bytes after its streams are still trailing garbage.
    v3 = Container(sample_header(), [b"abc"]).to_bytes()
    with pytest.raises(FormatError, match="trailing"):
        Container.from_bytes(fix_crc(v3[:-4] + b"\x00" + bytes(4)))


@pytest.mark.parametrize("bad", [
    dict(model=""), dict(model="x" * 256), dict(weights_hash=b"1234567"), dict(weights_hash=HASH + b"9"),
])
def test_to_bytes_rejects_invalid_header(bad):
    with pytest.raises(ValueError):
        Container(sample_header(**bad), [b"x"]).to_bytes()


@pytest.mark.parametrize("count", [0, 256])
def test_to_bytes_rejects_stream_count(count):
    with pytest.raises(ValueError):
        Container(sample_header(), [b"x"] * count).to_bytes()


@pytest.mark.parametrize("data", [b"", b"\x89ED", b"abc", b"\x89EDC\x01", b"PK\x03\x04\x14\x00\x00"])
def test_too_short_inputs(data):
    with pytest.raises(FormatError) as info:
        Container.from_bytes(data)
    assert type(info.value) is FormatError


def test_wrong_magic():
    data = bytearray(Container(sample_header(), [b"x"]).to_bytes())
    data[0:4] = b"\x89PNG"
    with pytest.raises(FormatError, match="magic"):
        Container.from_bytes(bytes(data))
    with pytest.raises(FormatError, match="magic"):
        decode_array(b"\x89PNG\r\n\x1a\n" + bytes(100))


def test_every_truncation_is_a_format_error(tiny_stream):
    data = tiny_stream
    assert Container.from_bytes(data).header.model == "tiny"
    for length in range(len(data)):
        for parse in (Container.from_bytes, decode_array):
            try:
                parse(data[:length])
            except FormatError as exc:
                assert type(exc) is FormatError, (length, exc)
            except Exception as exc:  # noqa: BLE001 - the point of the test
                pytest.fail(f"truncation to {length} bytes raised {type(exc).__name__}: {exc}")
            else:
                pytest.fail(f"truncation to {length} of {len(data)} bytes was accepted")


def test_newer_version_is_refused_before_the_crc(tiny_stream):
    data = bytearray(tiny_stream)
    data[4] = FORMAT_VERSION + 1  # CRC not fixed: the version must be checked first
    for parse in (Container.from_bytes, decode_array):
        with pytest.raises(VersionError) as info:
            parse(bytes(data))
        assert "upgrade" in str(info.value).lower()
        assert str(FORMAT_VERSION + 1) in str(info.value)
    data[4] = 255
    with pytest.raises(VersionError):
        Container.from_bytes(fix_crc(data))
    # As soon as the version byte is read (a third-party reader found exit 4 for these): a newer
    # file cut after its version byte, and one whose header, read with this version's layout,
    # declares an image whose size bound its bytes pass (a newer layout may not mean that).
    newer = bytes(data[:5])
    for parse in (Container.from_bytes, lambda b: read_file(io.BytesIO(b), "x")):
        with pytest.raises(VersionError):
            parse(newer)
    big = bytearray(Container(sample_header(width=1, height=1), [b"abc"]).to_bytes())
    big[4] = FORMAT_VERSION + 1
    with pytest.raises(VersionError):
        read_file(io.BytesIO(bytes(big) + bytes(70 * 2**20)), "x")
    with pytest.raises(FormatError, match="truncated .edc file: header incomplete"):
        Container.from_bytes(MAGIC + bytes([FORMAT_VERSION]))  # the magic is right: short, not foreign


def test_version_zero_is_invalid_not_newer(tiny_stream):
    data = bytearray(tiny_stream)
    data[4] = 0
    with pytest.raises(FormatError) as info:
        Container.from_bytes(fix_crc(data))
    assert not isinstance(info.value, VersionError)


def test_any_flipped_byte_is_detected(tiny_stream):
    data = tiny_stream
    for i in range(len(data)):
        for mask in (0x01, 0xFF):
            corrupted = bytearray(data)
            corrupted[i] ^= mask
            with pytest.raises(FormatError) as info:
                decode_array(bytes(corrupted))
            if i >= 7:  # past magic, version and header length: only the CRC can tell
                assert "checksum" in str(info.value), (i, mask, info.value)


def _replace_body(data: bytes, start: int, new: bytes) -> bytes:
    return fix_crc(data[:start] + new + data[start + len(new):])


@pytest.mark.parametrize("field,offset,value", [
    ("width", 18, struct.pack("<I", 0)),
    ("height", 22, struct.pack("<I", 0)),
    ("channels", 26, bytes([5])),
    ("bit depth", 27, bytes([12])),
    ("stream count", 29, bytes([0])),
    ("name length", -8, bytes([0])),
])
def test_invalid_header_fields(field, offset, value):
    data = Container(sample_header(), [b"abc", b"de"]).to_bytes()
    n = len("fidelity")
    start = 7 if offset == -8 else offset + n
    with pytest.raises(FormatError):
        Container.from_bytes(_replace_body(data, start, value))


def test_header_length_mismatch():
    data = bytearray(Container(sample_header(), [b"abc"]).to_bytes())
    data[5] += 1
    with pytest.raises(FormatError):
        Container.from_bytes(fix_crc(data))


def test_trailing_bytes_and_overlong_streams():
    good = Container(sample_header(version=1), [b"abc", b"de"]).to_bytes()  # stream count ends the header
    with pytest.raises(FormatError, match="trailing"):
        Container.from_bytes(fix_crc(good[:-4] + b"\x00" + good[-4:]))
    header_end = 7 + struct.unpack_from("<H", good, 5)[0]
    too_long = _replace_body(good, header_end, struct.pack("<I", 1 << 31))
    with pytest.raises(FormatError, match="stream"):
        Container.from_bytes(too_long)
    too_many = bytearray(good)
    too_many[header_end - 1] = 3  # 3 streams declared, 2 present
    with pytest.raises(FormatError):
        Container.from_bytes(fix_crc(too_many))


def test_invalid_utf8_model_name():
    data = Container(sample_header(model="abcd"), [b"x"]).to_bytes()
    with pytest.raises(FormatError, match="UTF-8"):
        Container.from_bytes(_replace_body(data, 8, b"\xff\xfe"))


def test_stream_count_must_match_model(tiny_stream):
    c = Container.from_bytes(tiny_stream)
    with pytest.raises(FormatError, match="streams"):
        decode_array(Container(c.header, c.streams[:1]).to_bytes())


def test_unknown_model_in_header(tiny_stream):
    c = Container.from_bytes(tiny_stream)
    with pytest.raises(UnknownModelError):
        decode_array(Container(dataclasses.replace(c.header, model="no-such-model"), c.streams).to_bytes())


def test_huge_header_is_refused_before_decoding(tiny_stream):
    c = Container.from_bytes(tiny_stream)
    huge = dataclasses.replace(c.header, width=100_000, height=100_000)
    data = Container(huge, c.streams).to_bytes()
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match="100000x100000"):
            decode_array(data)  # default limit: Pillow's MAX_IMAGE_PIXELS
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000
    # The limit is checked before the model is even looked up.
    unknown = Container(dataclasses.replace(huge, model="no-such-model"), c.streams).to_bytes()
    with pytest.raises(ImageTooLargeError):
        decode_array(unknown)


def test_pixel_limit_on_decode_is_exact(tiny_stream, monkeypatch):
    header = Container.from_bytes(tiny_stream).header
    pixels = header.width * header.height
    with pytest.raises(ImageTooLargeError):
        decode_array(tiny_stream, max_pixels=pixels - 1)
    rgb, _ = decode_array(tiny_stream, max_pixels=pixels)
    assert rgb.shape == (header.height, header.width, 3)
    monkeypatch.setenv("EDGECODEC_MAX_PIXELS", str(pixels - 1))
    with pytest.raises(ImageTooLargeError):
        decode_array(tiny_stream)


def test_read_file_stops_where_the_header_bounds_the_file(monkeypatch):
    """read_file reads an .edc file from a stream no further than an .edc file of the image its
    header declares can be (limits.max_input_bytes, its base lowered here to keep the test small)."""
    import edgecodec.codec.limits as limits

    monkeypatch.setattr(limits, "INPUT_BYTES_BASE", 1000)
    data = Container(sample_header(width=10, height=10), [b"abc"]).to_bytes()
    bound = 1000 + 32 * 100
    assert read_file(io.BytesIO(data), "x") == data
    assert read_file(io.BytesIO(data + bytes(bound - len(data))), "x") == data + bytes(bound - len(data))
    endless = io.BytesIO(data + bytes(10 * bound))
    with pytest.raises(FormatError, match=r"x is larger than an \.edc file of its 10x10 image can be"):
        read_file(endless, "x")
    assert endless.tell() <= bound + 1  # stopped at the bound, not at the end
    with pytest.raises(FormatError, match="checksum"):  # within the bound: the parser names the damage
        Container.from_bytes(read_file(io.BytesIO(data + bytes(100)), "x"))
    # A header over the pixel limit is bounded by the limit, and the message says how to raise it.
    big = Container(sample_header(width=100_000, height=100_000), [b"abc"]).to_bytes()
    with pytest.raises(FormatError, match="pixel limit of 50 pixels"):
        read_file(io.BytesIO(big + bytes(10_000)), "x", max_pixels=50)
    assert read_file(io.BytesIO(big), "x", max_pixels=50) == big


def test_read_file_refuses_a_wrong_start_at_once_and_leaves_short_files_to_the_parser():
    f = io.BytesIO(b"GIF89a" + bytes(10_000))
    with pytest.raises(FormatError, match="wrong magic"):
        read_file(f, "x")
    assert f.tell() <= 7
    data = Container(sample_header(), [b"abc"]).to_bytes()
    for cut in (0, 2, 6, 9, 20, len(data) - 1):
        short = read_file(io.BytesIO(data[:cut]), "x")
        assert short == data[:cut]
        with pytest.raises(FormatError, match="truncated|empty|checksum"):
            Container.from_bytes(short)
