"""docs/format.md as a specification: a tiny reader built from the document's own header table (its
offsets and sizes, read from the Markdown) must read the shipped files and new ones as the reference
container does, and the facts an independent decoder needs beyond the table hold."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ADOBE_RGB
from PIL import Image

from edgecodec.codec.container import Container, Header
from edgecodec.codec.extras import source_extras
from edgecodec.codec.imageio import load_image

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "format.md").read_text()
FIXTURES = sorted((ROOT / "tests" / "data").rglob("*.edc"))


def header_table() -> list[tuple[str, str, str]]:
    """(offset, size, field) of each row of the document's first table, up to the streams."""
    rows = []
    for line in DOC.split("\n## ")[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"\d+(\+n)?", cells[0]):
            rows.append((cells[0], cells[1], cells[2]))
    return rows


def doc_read(data: bytes) -> dict:
    """The header fields and streams of a file, located by the document's table alone."""
    version, n = data[4], data[7]
    fields = {}
    for offset, size, name in header_table():
        at = eval(offset, {"n": n})  # "8+n" and the like
        length = n if size == "n" else int(size)
        if name.startswith("tile") and version < 2:
            continue  # versions 2 to 7 only
        raw = data[at:at + length]
        if size == "n" or name in ("magic", "weights hash"):  # bytes
            fields[name] = raw
        else:  # unsigned little-endian integers
            fields[name] = int.from_bytes(raw, "little")
    (header_len,) = struct.unpack_from("<H", data, 5)
    pos, streams = 7 + header_len, []
    for _ in range(fields["stream count `k`"]):
        (length,) = struct.unpack_from("<I", data, pos)
        streams.append(data[pos + 4:pos + 4 + length])
        pos += 4 + length
    extras = {}
    if version >= 4:  # a count, then each a 4-byte tag, a 4-byte length and that many bytes
        count, pos = data[pos], pos + 1
        for _ in range(count):
            tag, length = struct.unpack_from("<4sI", data, pos)
            extras[tag.decode("ascii")] = data[pos + 8:pos + 8 + length]
            pos += 8 + length
    assert pos == len(data) - 4  # nothing between the last stream (or extra) and the CRC
    fields.update(streams=streams, extras=extras, crc=struct.unpack_from("<I", data, len(data) - 4)[0])
    return fields


def check_against_reference(data: bytes) -> dict:
    f, ref = doc_read(data), Container.from_bytes(data)
    h = ref.header
    assert f["magic"] == b"\x89EDC" and f["format version"] == h.version
    assert f["header length `L`"] == 1 + f["model name length `n`"] + 8 + (14 if h.version == 1 else 16)
    assert f["model name"].decode() == h.model and f["weights hash"] == h.weights_hash
    assert (f["quality"], f["width"], f["height"]) == (h.quality_q16, h.width, h.height)
    assert (f["source channels"], f["source bit depth"], f["conversions"]) == (h.channels, h.bit_depth,
                                                                              h.conversions)
    assert f.get("tile `T`", 0) == h.tile
    assert f["streams"] == ref.streams and f["extras"] == ref.extras
    assert f["crc"] == zlib.crc32(data[:-4])
    return f


def test_the_documents_table_has_every_header_field_in_order():
    names = [name for _, _, name in header_table()]
    assert names == ["magic", "format version", "header length `L`", "model name length `n`", "model name",
                     "weights hash", "quality", "width", "height", "source channels", "source bit depth",
                     "conversions", "stream count `k`", "tile `T`"]
    # Contiguous: each row starts where the one before ends.
    end = 0
    for offset, size, _ in header_table():
        assert eval(offset, {"n": 5}) == end
        end += 5 if size == "n" else int(size)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_shipped_files_read_by_the_document(path):
    f = check_against_reference(path.read_bytes())
    if f["tile `T`"]:  # Tiled streams: stream 1 is a table of ceil(h / T) * ceil(w / T) tile streams
        h, w, t = -(-f["height"] // 64) * 4, -(-f["width"] // 64) * 4, f["tile `T`"]
        table, pos = f["streams"][0], 0
        for _ in range(-(-h // t) * -(-w // t)):
            pos += 4 + struct.unpack_from("<I", table, pos)[0]
        assert pos == len(table)


def test_every_version_and_extra_read_by_the_document():
    header = Header("fidelity", bytes(range(8)), 19660, 65, 130, 4, 16, 4 | 8)
    alpha = b"\x01" + zlib.compress(bytes(65 * 130))
    qlat = struct.pack("<HH", 12, 8) + zlib.compress(np.full((12, 8), 19660, "<u2").tobytes())
    for version in (1, 2, 3):
        check_against_reference(Container(Header(**{**header.__dict__, "version": version,
                                                    "tile": 16 if version > 1 else 0}),
                                          [b"\x01\x02", b""]).to_bytes())
    data = Container(header, [b"y", b"z"], {"alph": alpha, "iccp": ADOBE_RGB, "exif": b"MM\0*",
                                            "xmp ": b"<x/>", "qlat": qlat}).to_bytes()
    assert data[4] == 7 and check_against_reference(data)["extras"]["qlat"] == qlat


def test_crc_is_the_zlib_png_gzip_crc32():
    # The check value docs/format.md gives for its CRC-32 parameters.
    assert "`0xCBF43926`" in DOC and zlib.crc32(b"123456789") == 0xCBF43926


def test_iccp_extra_is_the_raw_profile(tmp_path):
    """The `iccp` extra holds the profile's bytes as an .icc file does: not PNG's iCCP chunk layout
    (name, compression byte, zlib), which its tag could suggest."""
    path = tmp_path / "p3.png"
    Image.new("RGB", (16, 16), (10, 200, 30)).save(path, icc_profile=ADOBE_RGB)
    icc = source_extras(load_image(path))["iccp"]
    assert icc == ADOBE_RGB and struct.unpack(">I", icc[:4])[0] == len(icc) and icc[36:40] == b"acsp"
