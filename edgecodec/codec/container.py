"""The .edc container: a versioned header, the entropy-coded streams, and a CRC32.

The byte layout is documented in docs/format.md; keep the two in step. Parsing validates every
field against the bytes actually present before anything is allocated from it.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from ..errors import FormatError, UsageError, VersionError
from .limits import max_input_bytes, pixel_limit, read_limited

MAGIC = b"\x89EDC"
# Newest version this code reads and writes:
#   1: one-piece images; 2: version 1 plus the tile field (tiled images);
#   3: version 2's layout, with y's Gaussian parameters from the integer hyper-synthesis
#      (edgecodec/lite/hyper.py), so that every backend (PyTorch, onnxruntime) decodes the same
#      latents. Versions 1 and 2 (float hyper-synthesis) still decode with the PyTorch backend.
#   4: version 3 plus a table of tagged extras after the streams (alpha plane, ICC profile, EXIF,
#      XMP: codec/extras.py, lite/alpha.py). Written only for files that carry extras, so that
#      every other file stays version 3 and decodes with edgecodec versions that predate 4.
#   5: version 4 with a quality map extra ("qmap": a quality per 64 x 64 pixels, lite/qmap.py),
#      which changes how the streams decode, so a decoder that would skip it must refuse the file.
#      Written only for files with a quality map.
#   6: version 5 with a finer quality map ("qlat": a quality per 16 x 16 pixels, one latent pixel),
#      written only for maps that version 5's cells cannot hold.
#   7: version 6 whose y parameters are rescaled to each latent pixel's quality where a z pixel's
#      latent pixels mix qualities (lite/qmap.py, matched_ratio): the same layout, fewer bytes.
#      What the encoder writes for "qlat" maps; version 6 files still decode as they did.
FORMAT_VERSION = 7
GAIN_MATCHED_VERSION = 7  # the first version whose streams were coded with matched_ratio
STREAM_VERSION = 3  # the stream semantics the encoder writes; the version of a file without extras
EXTRAS_VERSION = 4
WEIGHTS_HASH_BYTES = 8
QUALITY_SCALE = 65535  # quality is stored as a 16-bit fixed-point fraction
DEFAULT_QUALITY = 0.5  # compress's quality when given neither a quality nor a target (both coders)


def check_quality(quality: float, alternatives: str = "", name: str = "quality") -> float:
    """One quality as a float, TypeError unless a number, ValueError outside [0, 1] or NaN
    (``alternatives``: what else the caller takes, ``name``: the argument's, for the message). Here,
    beside QUALITY_SCALE and without torch, so that both coders (the model's and the lite one) check
    a quality alike."""
    if isinstance(quality, bool) or not isinstance(quality, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number in [0, 1]{alternatives}, not {type(quality).__name__}")
    if not 0.0 <= quality <= 1.0:
        raise UsageError(f"{name} must be in [0, 1], got {quality}")
    return float(quality)


# Conversions applied to the source image before coding (bit flags, shown by `edgecodec info`).
GRAYSCALE_SOURCE = 1  # coded as RGB, decoded back to gray (mode L)
CONVERSIONS = {
    1: "grayscale to RGB",
    2: "palette to RGB",
    4: "16-bit to 8-bit",
    8: "alpha dropped",
    16: "EXIF orientation applied",
    32: "colour space converted to RGB",
    64: "1-bit to 8-bit",
    128: "ICC profile converted to sRGB",
}


def conversion_names(conversions: int, bit_depth: int) -> list[str]:
    """The ``CONVERSIONS`` a source went through, flag 4 named by the source's own bit depth."""
    return [f"{bit_depth}-bit to 8-bit" if bit == 4 and bit_depth > 16 else name
            for bit, name in CONVERSIONS.items() if conversions & bit]


_PREFIX = struct.Struct("<4sBH")  # magic, version, header length
_FIXED = struct.Struct("<HIIBBBB")  # quality, width, height, channels, bit depth, conversions, streams
_TILE = struct.Struct("<H")  # version 2: latent tile side (0: not tiled)
_LENGTH = struct.Struct("<I")
_CRC = struct.Struct("<I")
_EXTRA = struct.Struct("<4sI")  # version 4: an extra's tag and length
# The extras this version knows (docs/format.md, Extras); a decoder skips tags it does not know.
ALPHA = "alph"  # the alpha plane, lossless (edgecodec/lite/alpha.py)
EXIF = "exif"  # the TIFF-structured EXIF block, without the "Exif\0\0" prefix of a JPEG APP1 segment
XMP = "xmp "  # the XMP packet, UTF-8
ICC = "iccp"  # the ICC profile the picture's numbers are in (an RGB source's, kept), as PNG's iCCP
QMAP = "qmap"  # a quality per hyper-latent pixel (lite/qmap.py); only in version 5 and later
QMAP_LATENT = "qlat"  # a quality per latent pixel (lite/qmap.py); only in version 6 and later
# As `info` shows them (here, not in codec/extras.py: info runs without Pillow on a lite install).
EXTRA_NAMES = {ALPHA: "alpha (lossless)", ICC: "ICC profile", EXIF: "EXIF", XMP: "XMP",
               QMAP: "quality map", QMAP_LATENT: "quality map"}
# Extras that change how the streams decode: (the first version that may hold each, the version this
# code writes it in). A decoder of an older version would skip the tag and decode wrongly, so the
# file must refuse it.
STREAM_EXTRAS = {QMAP: (5, 5), QMAP_LATENT: (6, 7)}
# An extra's tag: four printable ASCII characters, as PNG's chunk types (e.g. "alph", "xmp ").
_TAG_RULE = re.compile(r"[\x20-\x7e]{4}")


# A tile side (latent pixels) is a multiple of this: a multiple of 4 lines each tile's hyper-latent
# window up with z's grid (1/4 of the latent resolution), and at least 16 latent pixels (256 image
# pixels) keeps the work that the tiles' halos add under about 3x even for a hostile file
# (edgecodec/codec/tiling.py).
TILE_MULTIPLE = 16


def valid_tile(tile: int) -> bool:
    """0 (one piece) or a multiple of TILE_MULTIPLE that fits the 16-bit field."""
    return 0 <= tile < 65536 and tile % TILE_MULTIPLE == 0


@dataclass(frozen=True)
class Header:
    model: str
    weights_hash: bytes
    quality_q16: int  # quality * 65535, exact on both sides of the channel
    width: int
    height: int
    channels: int = 3  # of the source image
    bit_depth: int = 8  # of the source image
    conversions: int = 0
    version: int = STREAM_VERSION  # of the file it was read from; a tiled header is version 2 or newer
    tile: int = 0  # side of a latent tile in latent pixels (16 image pixels each); 0: not tiled

    def __post_init__(self) -> None:
        if self.tile and self.version < 2:
            object.__setattr__(self, "version", 2)

    @property
    def quality(self) -> float:
        return self.quality_q16 / QUALITY_SCALE

    def conversion_names(self) -> list[str]:
        return conversion_names(self.conversions, self.bit_depth)


@dataclass(frozen=True)
class Container:
    """A header, its entropy-coded streams and (versions 4 to 7) its extras: tag -> bytes, in file order.
    Writing extras makes the file version 4 or the header's version, whichever is newer; a quality
    map makes it version 5 or 7 (``STREAM_EXTRAS``) unless the header's already holds it."""

    header: Header
    streams: list[bytes] = field(default_factory=list)
    extras: dict[str, bytes] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        h = self.header
        version = max(h.version, EXTRAS_VERSION) if self.extras else h.version
        for tag in self.extras.keys() & STREAM_EXTRAS.keys():
            first, written = STREAM_EXTRAS[tag]
            if version < first:  # a header read from a file that may hold the tag keeps its version
                version = written
        name = h.model.encode("utf-8")
        if not 0 < len(name) < 256:
            raise ValueError("model name must be 1 to 255 bytes of UTF-8")
        if len(h.weights_hash) != WEIGHTS_HASH_BYTES:
            raise ValueError(f"weights hash must be {WEIGHTS_HASH_BYTES} bytes")
        if not 0 < len(self.streams) < 256:
            raise ValueError("a container holds 1 to 255 streams")
        if not 1 <= version <= FORMAT_VERSION:
            raise ValueError(f"cannot write format version {version}")
        if len(self.extras) > 255 or not all(_TAG_RULE.fullmatch(tag) for tag in self.extras):
            raise ValueError("a container holds up to 255 extras, each tagged by 4 printable ASCII characters")
        if not valid_tile(h.tile):
            raise ValueError(f"tile must be 0 or a multiple of {TILE_MULTIPLE} below 65536, not {h.tile}")
        body = (bytes([len(name)]) + name + h.weights_hash
                + _FIXED.pack(h.quality_q16, h.width, h.height, h.channels, h.bit_depth, h.conversions,
                              len(self.streams)))
        if version >= 2:
            body += _TILE.pack(h.tile)
        out = bytearray(_PREFIX.pack(MAGIC, version, len(body)) + body)
        for stream in self.streams:
            out += _LENGTH.pack(len(stream)) + stream
        if version >= EXTRAS_VERSION:
            out.append(len(self.extras))
            for tag, value in self.extras.items():
                out += _EXTRA.pack(tag.encode("ascii"), len(value)) + value
        out += _CRC.pack(zlib.crc32(out))
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Container":
        data = bytes(data)
        if not data or data[: len(MAGIC)] != MAGIC[: len(data)]:
            raise FormatError("not an .edc file: wrong magic bytes" if data else "not an .edc file: empty")
        if len(data) > len(MAGIC):  # a newer version is refused as soon as its byte is read
            _check_version(data[len(MAGIC)])
        if len(data) < _PREFIX.size:
            raise FormatError("truncated .edc file: header incomplete")
        _, version, header_len = _PREFIX.unpack_from(data)
        if version < 1:
            raise FormatError(f"invalid .edc format version {version}")
        if len(data) < _PREFIX.size + header_len + _CRC.size:
            raise FormatError("truncated .edc file: header incomplete")
        (stored_crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
        if zlib.crc32(data[: -_CRC.size]) != stored_crc:
            raise FormatError("corrupted .edc file: checksum mismatch (truncated or damaged)")
        header, streams, extras = _parse_body(data, header_len, version)
        return cls(header, streams, extras)


def _check_version(version: int) -> None:
    if version > FORMAT_VERSION:
        raise VersionError(f"file uses .edc format version {version}; this edgecodec reads up to "
                           f"version {FORMAT_VERSION}: upgrade edgecodec")


def read_file(f: BinaryIO, name: str, max_pixels: int | None = None) -> bytes:
    """The bytes of one .edc file from a binary stream, for ``Container.from_bytes``, which validates
    them. Reading stops early for input that is no .edc file (its first bytes) or larger than an .edc
    file of the image its header declares can be (``limits.max_input_bytes``), so that an endless
    input is refused instead of filling the memory. ``name`` names the input in errors."""
    head = f.read(_PREFIX.size)
    if head[: len(MAGIC)] != MAGIC[: len(head)]:
        raise FormatError(f"{name} is not an .edc file: wrong magic bytes")
    if len(head) > len(MAGIC):  # before the size bound, which a newer version's header may not give
        _check_version(head[len(MAGIC)])
    if len(head) < _PREFIX.size:
        return head  # from_bytes says how it is short
    header = f.read(_PREFIX.unpack(head)[2])
    pixels = 0
    try:  # the fields before the image size are the name (with its length byte), the hash and the quality
        width, height = struct.unpack_from("<II", header, 1 + header[0] + WEIGHTS_HASH_BYTES + 2)
        pixels = width * height
    except (IndexError, struct.error):
        pass  # a header too short for its fields: the rest may still be read, as from_bytes reports it
    limit = max_input_bytes(pixels, max_pixels)
    rest = read_limited(f, limit - len(head) - len(header))
    if rest is None:
        allowed = pixel_limit(max_pixels)
        why = (f"the pixel limit of {allowed} pixels allows (--max-pixels, max_pixels= or EDGECODEC_MAX_PIXELS "
               "raise it)"
               if pixels > allowed else f"an .edc file of its {width}x{height} image can be" if pixels
               else "an .edc file with a damaged header can be")
        raise FormatError(f"{name} is larger than {why}: over {limit} bytes")
    return head + header + rest


def _parse_body(data: bytes, header_len: int, version: int) -> tuple[Header, list[bytes], dict[str, bytes]]:
    pos = _PREFIX.size
    end_of_header = pos + header_len
    name_len = data[pos]
    pos += 1
    fixed_end = pos + name_len + WEIGHTS_HASH_BYTES + _FIXED.size + (_TILE.size if version >= 2 else 0)
    if name_len == 0 or fixed_end != end_of_header:
        raise FormatError("corrupted .edc file: header length does not match its fields")
    try:
        model = data[pos: pos + name_len].decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("corrupted .edc file: model name is not UTF-8") from None
    pos += name_len
    weights_hash = data[pos: pos + WEIGHTS_HASH_BYTES]
    pos += WEIGHTS_HASH_BYTES
    quality, width, height, channels, bit_depth, conversions, n_streams = _FIXED.unpack_from(data, pos)
    pos += _FIXED.size
    tile = 0
    if version >= 2:
        (tile,) = _TILE.unpack_from(data, pos)
        pos += _TILE.size
        if not valid_tile(tile):
            raise FormatError(f"corrupted .edc file: invalid tile size {tile}")
    if width == 0 or height == 0:
        raise FormatError("corrupted .edc file: zero image size")
    if channels not in (1, 2, 3, 4) or bit_depth not in (1, 8, 16, 32):
        raise FormatError("corrupted .edc file: invalid source channels or bit depth")
    if n_streams == 0:
        raise FormatError("corrupted .edc file: no streams")
    streams = []
    payload_end = len(data) - _CRC.size
    for _ in range(n_streams):
        if pos + _LENGTH.size > payload_end:
            raise FormatError("truncated .edc file: stream table incomplete")
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        if pos + length > payload_end:
            raise FormatError("truncated .edc file: stream shorter than declared")
        streams.append(data[pos: pos + length])
        pos += length
    extras = _parse_extras(data, pos, payload_end) if version >= EXTRAS_VERSION else {}
    for tag, (first, _) in STREAM_EXTRAS.items():
        if tag in extras and version < first:  # its decoders skip the tag and decode wrongly
            raise FormatError(f"corrupted .edc file: a {tag!r} quality map in a version-{version} file")
    if QMAP in extras and QMAP_LATENT in extras:
        raise FormatError("corrupted .edc file: two quality maps")
    if version < EXTRAS_VERSION and pos != payload_end:
        raise FormatError("corrupted .edc file: trailing bytes after the last stream")
    header = Header(model, weights_hash, quality, width, height, channels, bit_depth, conversions, version, tile)
    return header, streams, extras


def _parse_extras(data: bytes, pos: int, payload_end: int) -> dict[str, bytes]:
    """Version 4's extras table, which must end exactly at the CRC. Only its layout is checked
    here; what an extra holds is checked by whoever reads it (lite/alpha.py for the alpha plane)."""
    if pos >= payload_end:
        raise FormatError("truncated .edc file: extras table missing")
    count = data[pos]
    pos += 1
    extras: dict[str, bytes] = {}
    for _ in range(count):
        if pos + _EXTRA.size > payload_end:
            raise FormatError("truncated .edc file: extras table incomplete")
        raw_tag, length = _EXTRA.unpack_from(data, pos)
        pos += _EXTRA.size
        tag = raw_tag.decode("latin-1")
        if not _TAG_RULE.fullmatch(tag) or tag in extras:
            raise FormatError(f"corrupted .edc file: invalid or repeated extra tag {tag!r}")
        if pos + length > payload_end:
            raise FormatError("truncated .edc file: extra shorter than declared")
        extras[tag] = data[pos: pos + length]
        pos += length
    if pos != payload_end:
        raise FormatError("corrupted .edc file: trailing bytes after the last extra")
    return extras
