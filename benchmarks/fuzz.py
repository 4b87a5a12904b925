"""Fuzz the .edc decoder with mutated valid files, each decode isolated in a worker process.

    python benchmarks/fuzz.py --cases 20000 [--seed 0] [--timeout 2] [--max-rss-mb 1024]
                              [--save benchmarks/results/fuzz-failures] [--json benchmarks/results/fuzz.json]

Seeds: small real streams of two tiny random models (a mean-scale hyperprior "fuzzms", two
streams, and a factorized "fuzzfact", one stream) at several sizes and qualities, written into a
temporary model folder; the harness needs nothing of the package beyond its public API
(``edgecodec.compress``, ``edgecodec.codec.api.decompress``, ``edgecodec.zoo.save_model``, and
``edgecodec.codec.api.Encoder(..., tile=16)`` for the tiled seeds). Tiled seeds (format version 2:
the smallest tile the format allows, 16 latent pixels = 256 image pixels, so that images of a few
hundred pixels have 2 to 4 tiles) make up about a third of the seeds. Format-4 seeds carry extras
(docs/format.md): an alpha plane coded with zlib or as a constant, EXIF and XMP. Format-5, -6 and -7
seeds carry a quality map (regions of interest), one piece and tiled.

Mutations (one to three per case, chosen by a seeded RNG, so a run is reproducible from --seed):
bit flips, random / 0x00 / 0xFF byte overwrites, truncation, insertion of random / 0x00 / 0xFF
runs, deletion, every header field (version, header length, name length, name, weights hash,
quality, width, height, channels, bit depth, conversions, stream count, tile size, each stream
length) set to an edge value (0, 1, max, max - 1, original +- 1, random), a stream's content replaced by
0x00 / 0xFF / random bytes of edge lengths (0, 1, 4, original, up to the decoder's length limit
and past it), a larger declared image with a stream of 0xFF bytes up to that limit (the rANS
bypass over-read worst case; for a tiled seed every tile's stream at its limit), streams swapped,
dropped, duplicated or spliced from another seed, and for tiled seeds the tile table: a tile's
stream replaced by 0x00 / 0xFF / random bytes of edge lengths (up to and past its limit), tiles
swapped, dropped or duplicated, a tile length lying, and for format-4 seeds the extras table: an
alpha plane replaced by random bytes, cut short or lengthened, a zlib stream of the wrong size (or
a bomb) or without its checksum, or a constant of the wrong length, a tag repeated, renamed,
unknown or unprintable, an extra's length or the count lying, the table dropped or an extra added;
a quality map given another shape, too few or too many values (or a bomb), random values or bytes.
Structural mutations are re-serialised with a valid CRC; then 3 cases in 4 get their CRC32
recomputed (so the mutation reaches the parser and the entropy decoder) and 1 in 4 keep the stale
one (the checksum path).

Each case runs ``decompress(io.BytesIO(data), max_pixels=2**20)`` (read as a file, as the command
line and paths read it: ``container.read_file`` frames it first; then the picture, then the
extras) in a worker process (a 1-megapixel cap: the
pixel limit is the defence against a header declaring a huge image, and with the default limit a
fuzzed 89-megapixel header would measure decode time, not robustness). Outcomes: ``accepted``,
``rejected:<ErrorType>`` for edgecodec's own errors, ``error:<Type>`` for any other exception (a
bug), ``crash`` (the worker died, e.g. a segfault; the worker is restarted), ``hang`` (no answer
within --timeout seconds; killed and restarted), ``memory`` (the case raised the worker's peak
RSS more than --max-rss-mb above its resident size before the case; the peak is reset per case
through /proc/self/clear_refs). The worker's absolute peak (imports included, about 0.8 GB) is
reported too. The worker also runs under an address-space limit (its size after start-up + 2 GiB) so a runaway
allocation fails inside the worker instead of exhausting the machine. Failing inputs are saved to
--save. Exit status 0 only when there were no failures.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import multiprocessing as mp
import os
import random
import resource
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAILURE_KINDS = ("error", "crash", "hang", "memory")
MAX_PIXELS = 2**20

# Header layout of format version 1 (docs/format.md): offsets relative to the end of the name.
_FIELDS_AFTER_NAME = [  # (name, offset from 8 + n, struct format)
    ("quality", 8, "<H"), ("width", 10, "<I"), ("height", 14, "<I"), ("channels", 18, "<B"),
    ("bit_depth", 19, "<B"), ("conversions", 20, "<B"), ("streams", 21, "<B"),
]
# Version 2 adds a 16-bit tile field after them (offset 22); a tiled file's stream 1 is a table of
# tile streams, each a 4-byte length and its bytes.
TILE = 16  # latent pixels a side: the smallest tile the format allows
QUALITY_MAPS = {b"qmap", b"qlat"}  # the extras that hold a quality map (versions 5 to 7)


# --- seeds ---------------------------------------------------------------------------------------
def make_seeds(model_dir: Path) -> list[bytes]:
    """Tiny random models saved into model_dir; returns real streams of them."""
    import numpy as np
    import torch

    from edgecodec.models import create_model
    from edgecodec.zoo import save_model

    torch.set_num_threads(1)
    tiny = dict(channels=16, latent_channels=32, hyper_channels=16)
    for name, prior in (("fuzzms", "meanscale"), ("fuzzfact", "factorized")):
        torch.manual_seed(0)
        model = create_model("crb", prior=prior, **tiny)
        model.eval()
        save_model(model, model_dir, name, {"summary": "fuzzing seed model"})
    previous = os.environ.get("EDGECODEC_MODEL_PATH")
    os.environ["EDGECODEC_MODEL_PATH"] = str(model_dir)
    try:
        return _seed_streams(np.random.RandomState(0))
    finally:  # leave the caller's model path (e.g. pytest's session models) as it was
        if previous is None:
            os.environ.pop("EDGECODEC_MODEL_PATH", None)
        else:
            os.environ["EDGECODEC_MODEL_PATH"] = previous


def _seed_streams(rng) -> list[bytes]:
    import numpy as np

    import edgecodec

    yy, xx = np.mgrid[0:64, 0:64]
    images = [
        rng.randint(0, 256, (40, 70, 3), dtype=np.uint8),
        np.stack([yy * 4, xx * 4, (yy + xx) * 2], -1).astype(np.uint8),
        rng.randint(0, 256, (1, 1, 3), dtype=np.uint8),
        rng.randint(0, 256, (17, 130, 3), dtype=np.uint8),
    ]
    seeds = []
    for model in ("fuzzms", "fuzzfact"):
        for i, img in enumerate(images):
            for q in ((0.0, 0.5, 1.0) if i == 0 else (0.5,)):
                seeds.append(edgecodec.compress(img, quality=q, model=model))
    # Tiled: 300x450 -> 2 x 2 tiles, 200x520 -> 1 x 3 tiles (both models).
    from edgecodec.codec.api import Encoder
    from edgecodec.codec.imageio import load_image

    yy, xx = np.mgrid[0:200, 0:520]
    tiled = [rng.randint(0, 256, (300, 450, 3), dtype=np.uint8),
             np.stack([yy, xx % 256, (yy + xx) % 256], -1).astype(np.uint8)]
    for model in ("fuzzms", "fuzzfact"):
        for i, img in enumerate(tiled):
            encoder = Encoder(load_image(img), model, tile=TILE)
            for q in ((0, 32768) if i == 0 else (32768,)):
                seeds.append(encoder.encode(q))
    # Format 4: an alpha plane (zlib; a constant one with EXIF and XMP kept).
    from PIL import Image

    mask = (rng.randint(0, 4, (40, 70)) * 85).astype(np.uint8)
    with_metadata = Image.fromarray(images[1]).convert("RGBA")
    exif = Image.Exif()
    exif[0x010F] = "fuzz"
    with_metadata.info.update(exif=exif.tobytes(), xmp=b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    for model in ("fuzzms", "fuzzfact"):
        seeds.append(edgecodec.compress(np.dstack([images[0], mask]), quality=0.5, model=model))
        seeds.append(edgecodec.compress(with_metadata, quality=0.5, model=model, metadata="keep"))
    # Formats 5 and 7: quality maps (regions of interest; hyperprior models only), per 64-pixel cell
    # (a region that fills one cell with its margin) and per latent pixel, one piece and tiled.
    seeds.append(edgecodec.compress(np.hstack([images[1], images[1]]), quality=0.2, model="fuzzms",
                                    roi=[(8, 8, 48, 48)]))
    seeds.append(edgecodec.compress(images[3], quality=0.2, model="fuzzms", roi=[(0, 0, 10, 10)]))
    seeds.append(Encoder(load_image(tiled[0]), "fuzzms", tile=TILE, roi=[(200, 100, 100, 80)]).encode(0))
    # Format 6: the same layout as 7, decoded without rescaling y's parameters (its streams here
    # were coded with it: what matters is that any bytes decode or are refused cleanly).
    version_6 = bytearray(seeds[-2])
    version_6[4] = 6
    seeds.append(fix_crc(bytes(version_6)))
    return seeds


# --- parsing / serialising (independent of the package, so the harness can build invalid files) --
def parse(data: bytes) -> dict | None:
    """Split a valid file (versions 1 to 7) into fields; None if it is not one."""
    try:
        n = data[7]
        fields = {"version": data[4], "header_len": struct.unpack_from("<H", data, 5)[0],
                  "name": data[8:8 + n], "hash": data[8 + n:16 + n]}
        for name, off, fmt in _FIELDS_AFTER_NAME:
            fields[name] = struct.unpack_from(fmt, data, 8 + n + off)[0]
        pos, streams = 30 + n, []
        if fields["version"] >= 2:
            (fields["tile"],) = struct.unpack_from("<H", data, pos)
            pos += 2
        for _ in range(fields["streams"]):
            (length,) = struct.unpack_from("<I", data, pos)
            streams.append(data[pos + 4:pos + 4 + length])
            pos += 4 + length
        fields["stream_list"] = streams
        if fields["version"] >= 4:  # the extras table: a count, then (tag, length, bytes) each
            extras = []
            for _ in range(data[pos]):
                tag, (length,) = data[pos + 1:pos + 5], struct.unpack_from("<I", data, pos + 5)
                extras.append((tag, data[pos + 9:pos + 9 + length]))
                pos += 8 + length
            fields["extras"] = extras
        return fields
    except (IndexError, struct.error):
        return None


def serialise(f: dict, lengths: list[int] | None = None, name_len: int | None = None,
              header_len: int | None = None, count: int | None = None,
              extra_lengths: list[int | None] | None = None, extra_count: int | None = None) -> bytes:
    """Build a file from fields; the optional arguments override derived values (to lie). The
    tile field is written when ``f`` has one (the version-2 layout), and the extras table when
    ``f["extras"]`` is not None, whatever ``f["version"]`` says."""
    name = f["name"]
    body = (bytes([len(name) if name_len is None else name_len]) + name + f["hash"]
            + struct.pack("<HIIBBBB", f["quality"], f["width"], f["height"], f["channels"],
                          f["bit_depth"], f["conversions"],
                          len(f["stream_list"]) if count is None else count))
    if "tile" in f:
        body += struct.pack("<H", f["tile"])
    out = bytearray(b"\x89EDC" + bytes([f["version"]])
                    + struct.pack("<H", len(body) if header_len is None else header_len) + body)
    for i, s in enumerate(f["stream_list"]):
        out += struct.pack("<I", len(s) if lengths is None or lengths[i] is None else lengths[i]) + s
    if f.get("extras") is not None:
        out.append(len(f["extras"]) if extra_count is None else extra_count)
        for i, (tag, value) in enumerate(f["extras"]):
            length = len(value) if extra_lengths is None or extra_lengths[i] is None else extra_lengths[i]
            out += tag + struct.pack("<I", length) + value
    return bytes(out) + struct.pack("<I", zlib.crc32(out))


def tile_shapes(f: dict, streams: int) -> list[tuple[int, int]]:
    """Latent (height, width) of each tile of a tiled file, in raster order (docs/format.md)."""
    stride = 64 if streams == 2 else 16
    lh = -(-f["height"] // stride) * stride // 16
    lw = -(-f["width"] // stride) * stride // 16
    t = f["tile"]
    return [(min(t, lh - r), min(t, lw - c)) for r in range(0, lh, t) for c in range(0, lw, t)]


def split_tiles(table: bytes) -> list[bytes] | None:
    """A tiled file's stream 1 as its tile streams; None if it is not a valid table."""
    tiles, pos = [], 0
    while pos < len(table):
        if pos + 4 > len(table):
            return None
        (length,) = struct.unpack_from("<I", table, pos)
        if pos + 4 + length > len(table):
            return None
        tiles.append(table[pos + 4: pos + 4 + length])
        pos += 4 + length
    return tiles


def join_tiles(tiles: list[bytes], lengths: list[int | None] | None = None) -> bytes:
    return b"".join(struct.pack("<I", len(t) if lengths is None or lengths[i] is None else lengths[i]) + t
                    for i, t in enumerate(tiles))


def fix_crc(data: bytes) -> bytes:
    if len(data) < 4:
        return data
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


# --- mutations -----------------------------------------------------------------------------------
def _edge(rng: random.Random, bits: int, original: int) -> int:
    top = (1 << bits) - 1
    return rng.choice([0, 1, 2, top, top - 1, top // 2 + 1, (original + 1) & top,
                       (original - 1) & top, rng.randint(0, top)])


def _blob(rng: random.Random, n: int) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(n)
    if kind == 1:
        return b"\xff" * n
    if kind == 2:
        return rng.randbytes(n)
    return bytes(rng.choice([0x0F, 0xF0, 0xFF, 0x00]) for _ in range(n))


def mutate_bytes(rng: random.Random, data: bytes, seeds: list[bytes]) -> tuple[str, bytes]:
    d = bytearray(data)
    op = rng.choice(["bitflip", "overwrite", "truncate", "insert", "delete", "splice"])
    if op == "bitflip":
        for _ in range(rng.choice([1, 1, 2, 4, 8])):
            i = rng.randrange(len(d) * 8)
            d[i // 8] ^= 1 << (i % 8)
    elif op == "overwrite":
        i = rng.randrange(len(d))
        blob = _blob(rng, rng.choice([1, 2, 4, 8, 32]))
        d[i:i + len(blob)] = blob
    elif op == "truncate":
        d = d[:rng.randrange(len(d))]
    elif op == "insert":
        i = rng.randrange(len(d) + 1)
        d[i:i] = _blob(rng, rng.choice([1, 4, 16, 256, 4096]))
    elif op == "delete":
        i = rng.randrange(len(d))
        del d[i:i + rng.choice([1, 4, 16, 256])]
    else:
        other = rng.choice(seeds)
        i, j = rng.randrange(len(d)), rng.randrange(len(other))
        d = d[:i] + other[j:]
    return op, bytes(d)


def mutate_fields(rng: random.Random, data: bytes, seeds: list[bytes]) -> tuple[str, bytes]:
    f = parse(data)
    if f is None or not f["stream_list"]:
        return mutate_bytes(rng, data, seeds)
    streams = list(f["stream_list"])
    tiled = f.get("tile", 0) > 0 and bool(split_tiles(streams[0]))
    op = rng.choice(["field", "field", "name", "hash", "stream_len", "stream_content", "stream_content",
                     "streams", "ff_at_limit"] + ["tiles"] * (3 if tiled else 0)
                    + ["extras"] * (4 if f.get("extras") else 0))
    if op == "extras":
        return "extras", _mutate_extras(rng, f)
    if op == "ff_at_limit":
        # A larger declared image and a stream of 0xFF bytes (every nibble 15: the rANS bypass
        # chain) as long as the decoder's length limit allows: the over-read worst case.
        f["width"], f["height"] = rng.choice([64, 256, 640, 1000]), rng.choice([64, 256, 640, 1000])
        i = rng.randrange(len(streams))
        stride = 64 if len(streams) == 2 else 16
        ph, pw = -(-f["height"] // stride) * stride, -(-f["width"] // stride) * stride
        n = (32 * (ph // 16) * (pw // 16)) if i == 0 else (16 * (ph // 64) * (pw // 64))
        k = rng.choice([8, 8, 4, 1])
        if tiled and i == 0:  # every tile's stream at its own limit
            pad = 64 if k == 8 and rng.random() < 0.5 else 0
            streams[0] = join_tiles([b"\xff" * (k * 32 * th * tw + pad) for th, tw in tile_shapes(f, len(streams))])
        else:
            streams[i] = b"\xff" * (k * n + (64 if k == 8 and rng.random() < 0.5 else 0))
        f["stream_list"] = streams
        return "ff_at_limit", serialise(f)
    if op == "tiles":
        return "tiles", serialise(_mutate_tiles(rng, f, streams))
    if op == "field":
        keys = [("version", 8), ("quality", 16), ("width", 32), ("height", 32), ("channels", 8),
                ("bit_depth", 8), ("conversions", 8)] + ([("tile", 16)] * 2 if "tile" in f else [])
        key, bits = rng.choice(keys)
        f[key] = _edge(rng, bits, f[key])
        if key in ("width", "height") and rng.random() < 0.5:  # stay under the pixel cap
            f[key] = rng.choice([1, 2, 15, 16, 17, 63, 64, 65, 255, 1000])
        if key == "tile" and rng.random() < 0.5:  # valid sizes: other layouts of the same streams
            f[key] = rng.choice([0, 16, 32, 48, 64, 65520])
        return f"field:{key}", serialise(f)
    if op == "name":
        f["name"] = rng.choice([b"", b"x", b"fuzzms", b"fuzzfact", b"../../etc/passwd", b"/etc/passwd",
                                b".hidden", b"\xff\xfe", b"a" * 255, b"fidelity", b"tiny\x00"])
        lie = rng.choice([None, None, 0, 1, 255])
        return "name", serialise(f, name_len=lie if lie is None or lie < 256 else None)
    if op == "hash":
        f["hash"] = rng.choice([bytes(8), b"\xff" * 8, rng.randbytes(8)])
        return "hash", serialise(f)
    if op == "stream_len":
        lengths = [None] * len(streams)
        i = rng.randrange(len(streams))
        lengths[i] = _edge(rng, 32, len(streams[i]))
        if rng.random() < 0.3:
            return "header_len", serialise(f, header_len=_edge(rng, 16, f["header_len"]))
        if rng.random() < 0.3:
            return "stream_count", serialise(f, count=_edge(rng, 8, len(streams)))
        return "stream_len", serialise(f, lengths=lengths)
    if op == "stream_content":
        i = rng.randrange(len(streams))
        # The decoder's length limit is 8 bytes a symbol + 64; aim at it, inside and past.
        n = rng.choice([0, 1, 4, 7, 8, len(streams[i]), 2 * len(streams[i]) + 3, 300, 4096, 8256, 8257,
                        70_000, 1 << 20])
        keep = streams[i][:rng.randrange(len(streams[i]) + 1)] if rng.random() < 0.5 else b""
        streams[i] = (keep + _blob(rng, n))[:max(n, len(keep))]
        f["stream_list"] = streams
        return "stream_content", serialise(f)
    # swap / drop / duplicate / splice streams
    kind = rng.randrange(4)
    if kind == 0 and len(streams) > 1:
        streams.reverse()
    elif kind == 1:
        streams.pop(rng.randrange(len(streams)))
    elif kind == 2:
        streams.append(rng.choice(streams))
    else:
        other = parse(rng.choice(seeds))
        if other:
            i = rng.randrange(len(streams))
            streams[i] = rng.choice(other["stream_list"])
    f["stream_list"] = streams
    return "streams", serialise(f) if streams else serialise({**f, "stream_list": [b""]}, count=0)


def tile_shape(f: dict, streams: int, i: int) -> tuple[int, int] | None:
    """Latent (height, width) of tile ``i`` alone, None if the header has no such tile. Computed
    directly: a mutated header can declare billions of tiles, too many to list (tile_shapes)."""
    stride = 64 if streams == 2 else 16
    lh = -(-f["height"] // stride) * stride // 16
    lw = -(-f["width"] // stride) * stride // 16
    t = f["tile"]
    if t <= 0 or lw <= 0:
        return None
    r, c = divmod(i, -(-lw // t))
    if r * t >= lh:
        return None
    return min(t, lh - r * t), min(t, lw - c * t)


def _mutate_tiles(rng: random.Random, f: dict, streams: list[bytes]) -> dict:
    """A tiled file's tile table: one tile's content, order, count, or a lying length."""
    tiles = split_tiles(streams[0])
    kind = rng.choice(["content", "content", "swap", "drop", "duplicate", "length"])
    i = rng.randrange(len(tiles))
    lengths = None
    if kind == "content":
        th, tw = tile_shape(f, len(streams), i) or (16, 16)
        n = 32 * th * tw  # symbols of the tile: 8 n + 64 bytes is the limit
        size = rng.choice([0, 1, 4, len(tiles[i]), 2 * len(tiles[i]) + 3, 4 * n, 8 * n + 64, 8 * n + 65])
        keep = tiles[i][:rng.randrange(len(tiles[i]) + 1)] if rng.random() < 0.5 else b""
        tiles[i] = (keep + _blob(rng, size))[:max(size, len(keep))]
    elif kind == "swap" and len(tiles) > 1:
        j = rng.randrange(len(tiles))
        tiles[i], tiles[j] = tiles[j], tiles[i]
    elif kind == "drop":
        tiles.pop(i)
    elif kind == "duplicate":
        tiles.insert(i, tiles[i])
    else:
        lengths = [None] * len(tiles)
        lengths[i] = _edge(rng, 32, len(tiles[i]))
    streams[0] = join_tiles(tiles, lengths)
    f["stream_list"] = streams
    return f


def _mutate_extras(rng: random.Random, f: dict) -> bytes:
    """A format-4 file's extras table: an alpha plane's content, a tag, a length, the count."""
    extras = list(f["extras"])
    i = rng.randrange(len(extras))
    tag, value = extras[i]
    kind = rng.choice(["alpha", "alpha", "alpha", "tag", "length", "count", "drop_table", "add"]
                      + ["qmap"] * (3 if tag in QUALITY_MAPS else 0))
    if kind == "qmap":  # the quality map: its shape, its length, its values (any 16-bit value is valid)
        rows, cols = struct.unpack_from("<HH", value) if len(value) >= 4 else (1, 1)
        shape = rng.choice([(rows, cols), (rows, cols), (cols, rows), (min(rows + 1, 65535), cols), (0, 0),
                            (65535, 65535)])
        size = 2 * max(1, min(rows * cols, 1 << 16))  # a map mutated earlier may claim no cells
        value = struct.pack("<HH", *shape) + rng.choice([  # built lazily: only the chosen one
            lambda: zlib.compress(_blob(rng, size)), lambda: zlib.compress(bytes(size - 2)),
            lambda: zlib.compress(bytes(size + 2)), lambda: zlib.compress(bytes(64 * size)),
            lambda: _blob(rng, 16), lambda: b"", lambda: zlib.compress(_blob(rng, size))[:-4]])()
        extras[i] = (tag, value)
    elif kind == "alpha":
        n = f["width"] * f["height"]
        if not 0 < n <= MAX_PIXELS:  # a header mutated earlier: build no empty or huge planes
            n = 256
        value = rng.choice([  # built lazily: only the chosen one
            lambda: b"", lambda: b"\x00", lambda: b"\x00\x00\x00", lambda: b"\x01", lambda: b"\x02\x00",
            lambda: _blob(rng, rng.choice([2, 16, 300])), lambda: b"\x01" + _blob(rng, 64),
            lambda: value[:rng.randrange(len(value) + 1)], lambda: value + _blob(rng, rng.choice([1, 8])),
            lambda: b"\x01" + zlib.compress(_blob(rng, n)), lambda: b"\x01" + zlib.compress(bytes(n - 1)),
            lambda: b"\x01" + zlib.compress(bytes(n + 1)),
            lambda: b"\x01" + zlib.compress(bytes(64 * n)),  # a zlib bomb for this size
            lambda: b"\x01" + zlib.compress(_blob(rng, n))[:-4]])()  # no Adler-32
        extras[i] = (b"alph", value)
    elif kind == "tag":
        extras[i] = (rng.choice([b"alph", b"exif", b"xmp ", *QUALITY_MAPS, b"zzzz", b"al\x00h", b"\xff\xff\xff\xff"]),
                     value)
    elif kind == "length":
        lengths: list[int | None] = [None] * len(extras)
        lengths[i] = _edge(rng, 32, len(value))
        f["extras"] = extras
        return serialise(f, extra_lengths=lengths)
    elif kind == "count":
        f["extras"] = extras
        return serialise(f, extra_count=_edge(rng, 8, len(extras)))
    elif kind == "drop_table":
        f["extras"] = None
        return serialise(f)
    else:
        extras.insert(rng.randrange(len(extras) + 1), (rng.choice([b"alph", b"futr"]), _blob(rng, 8)))
    f["extras"] = extras
    return serialise(f)


def make_case(rng: random.Random, seeds: list[bytes]) -> tuple[str, bytes, int]:
    """A mutated seed: (the mutations, the bytes, the seed's index)."""
    index = rng.randrange(len(seeds))  # what rng.choice(seeds) draws
    data = seeds[index]
    ops = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op, data = (mutate_fields if rng.random() < 0.6 else mutate_bytes)(rng, data, seeds)
        ops.append(op)
        if not data:
            break
    if rng.random() < 0.75:
        data = fix_crc(data)
        ops.append("crc-fixed")
    return "+".join(ops), data, index


# --- worker --------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM), Linux >= 4.0; False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def worker_main(conn, model_dir: str) -> None:
    os.environ["EDGECODEC_MODEL_PATH"] = model_dir
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from edgecodec.codec.api import decompress
    from edgecodec.errors import EdgecodecError

    try:  # a runaway allocation then fails here instead of taking the machine down
        limit = _status_kb("VmSize") * 1024 + (2 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass
    conn.send(("ready", "", 0, 0.0))
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        rss_before = _status_kb("VmRSS") * 1024
        per_case = _reset_peak_rss()
        start = time.perf_counter()
        try:
            decompress(io.BytesIO(data), max_pixels=MAX_PIXELS)  # as a file: through container.read_file
            outcome, detail = "accepted", ""
        except EdgecodecError as exc:
            outcome, detail = f"rejected:{type(exc).__name__}", str(exc)[:200]
        except BaseException as exc:  # noqa: BLE001 - the point is to see everything
            outcome, detail = f"error:{type(exc).__name__}", str(exc)[:200]
        elapsed = time.perf_counter() - start
        peak = _status_kb("VmHWM") * 1024 if per_case else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        conn.send((outcome, detail, (peak, max(0, peak - rss_before)), elapsed))


class Worker:
    def __init__(self, model_dir: str) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, model_dir), daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(120):
            raise RuntimeError("fuzz worker did not start")
        self.conn.recv()

    def run(self, data: bytes, timeout: float) -> tuple[str, str, int, float]:
        start = time.perf_counter()
        try:
            self.conn.send_bytes(data)
            if not self.conn.poll(timeout):
                self.kill()
                return "hang", f"no answer in {timeout} s", (0, 0), time.perf_counter() - start
            return self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.proc.join(5)
            return "crash", f"worker died, exit code {self.proc.exitcode}", (0, 0), time.perf_counter() - start

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()


# --- campaign ------------------------------------------------------------------------------------
def run_campaign(cases: int, seed: int = 0, timeout: float = 2.0, max_rss_mb: int = 1024,
                 save: Path | None = None, model_dir: Path | None = None,
                 progress: bool = False) -> dict:
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(model_dir or tmp)
        seeds = make_seeds(model_dir)
        rng = random.Random(seed)
        counts: collections.Counter = collections.Counter()
        by_op: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        tiled_seeds = {i for i, s in enumerate(seeds) if (parse(s) or {}).get("tile")}
        extras_seeds = {i for i, s in enumerate(seeds) if (parse(s) or {}).get("extras")}
        qmap_seeds = {i for i, s in enumerate(seeds) if set(dict((parse(s) or {}).get("extras") or [])) & QUALITY_MAPS}
        tiled_counts: collections.Counter = collections.Counter()
        qmap_counts: collections.Counter = collections.Counter()
        failures: list[dict] = []
        max_rss, max_abs_rss, slowest, restarts = 0, 0, 0.0, 0
        max_rss_case = slowest_case = ""
        started = time.perf_counter()
        worker = Worker(str(model_dir))
        try:
            for i in range(cases):
                ops, data, index = make_case(rng, seeds)
                outcome, detail, (rss, growth), elapsed = worker.run(data, timeout)
                if growth > max_rss_mb * 2**20:
                    outcome, detail = "memory", f"case grew the worker's RSS by {growth / 2**20:.0f} MiB"
                max_abs_rss = max(max_abs_rss, rss)
                if growth > max_rss:
                    max_rss_case = f"case {i} ({ops}, {len(data)} bytes): {outcome}"
                if elapsed > slowest:
                    slowest_case = f"case {i} ({ops}, {len(data)} bytes): {outcome}"
                max_rss, slowest = max(max_rss, growth), max(slowest, elapsed)
                counts[outcome] += 1
                by_op[ops.split("+")[0]][outcome.split(":")[0]] += 1
                if index in tiled_seeds:
                    tiled_counts[outcome.split(":")[0]] += 1
                if index in qmap_seeds:
                    qmap_counts[outcome.split(":")[0]] += 1
                if outcome.split(":")[0] in FAILURE_KINDS:
                    failures.append({"case": i, "ops": ops, "outcome": outcome, "detail": detail,
                                     "size": len(data)})
                    if save is not None:
                        save.mkdir(parents=True, exist_ok=True)
                        (save / f"case-{seed}-{i}-{outcome.replace(':', '-')}.edc").write_bytes(data)
                if not worker.alive or outcome == "memory":
                    worker.kill()
                    worker = Worker(str(model_dir))
                    restarts += 1
                if progress and (i + 1) % 500 == 0:
                    print(f"{i + 1} cases, {dict(counts)}", file=sys.stderr)
        finally:
            worker.kill()
    return {"cases": cases, "seed": seed, "seeds": len(seeds), "tiled_seeds": len(tiled_seeds),
            "extras_seeds": len(extras_seeds), "qmap_seeds": len(qmap_seeds), "qmap_seed_cases": dict(qmap_counts),
            "tiled_seed_cases": dict(sorted(tiled_counts.items())), "timeout_s": timeout,
            "max_pixels": MAX_PIXELS, "seconds": round(time.perf_counter() - started, 1),
            "counts": dict(sorted(counts.items())),
            "accepted": counts["accepted"],
            "rejected": sum(v for k, v in counts.items() if k.startswith("rejected:")),
            "failures": len(failures), "failure_list": failures[:50],
            "max_case_rss_growth_mb": round(max_rss / 2**20, 1),
            "max_worker_rss_mb": round(max_abs_rss / 2**20, 1), "slowest_case_s": round(slowest, 3),
            "max_rss_case": max_rss_case, "slowest_case": slowest_case,
            "worker_restarts": restarts,
            "by_first_mutation": {k: dict(v) for k, v in sorted(by_op.items())}}


def main() -> int:
    # here, not at the top: the spawned workers import this file again, and need none of it
    from edgecodec.argtypes import int_at_least, positive_number

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int_at_least(1), default=10000,
                        help="mutated files to decode (default %(default)s)")
    parser.add_argument("--seed", type=int_at_least(0), default=0,
                        help="seed of the mutations' RNG: a run is reproducible from it (default %(default)s)")
    parser.add_argument("--timeout", type=positive_number, default=2.0,
                        help="seconds a case may take before it counts as a hang (default %(default)s)")
    parser.add_argument("--max-rss-mb", type=int_at_least(1), default=1024,
                        help="MiB a case may raise the worker's peak RSS by before it counts as a memory failure "
                             "(default %(default)s)")
    parser.add_argument("--save", type=Path, default=REPO / "benchmarks/results/fuzz-failures",
                        help="folder the failing inputs are saved to (default benchmarks/results/fuzz-failures)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/fuzz.json",
                        help="results file (default benchmarks/results/fuzz.json)")
    args = parser.parse_args()
    result = run_campaign(args.cases, args.seed, args.timeout, args.max_rss_mb, args.save, progress=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "failure_list"}, indent=2))
    for f in result["failure_list"]:
        print(f"FAIL case {f['case']} ({f['ops']}): {f['outcome']} {f['detail']}")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    from common import run_main

    run_main(main)
