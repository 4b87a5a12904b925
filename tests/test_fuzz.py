"""A bounded run of the decoder fuzzer (benchmarks/fuzz.py; the long campaign runs there).

Every case decodes in a worker process, so a segfault in the C++ rANS decoder shows up as a
counted crash instead of killing pytest."""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import fuzz  # noqa: E402


def test_fuzz_decoder_bounded(tmp_path):
    result = fuzz.run_campaign(cases=2000, seed=1, timeout=2.0, max_rss_mb=1024, save=tmp_path / "failures",
                               model_dir=tmp_path / "models")
    assert result["failures"] == 0, result["failure_list"]
    counts = result["counts"]
    # Every outcome is acceptance or one of edgecodec's own errors, and the mutations reach all
    # layers: the container parser, the model lookup and the entropy decoder.
    assert set(counts) <= {"accepted"} | {f"rejected:{e}" for e in (
        "FormatError", "VersionError", "ImageTooLargeError", "UnknownModelError", "WeightsMismatchError")}
    assert counts.get("rejected:FormatError", 0) > 500
    assert counts.get("accepted", 0) > 200
    assert result["by_first_mutation"]["ff_at_limit"]["accepted"] > 10
    # Tiled (format version 2) seeds are mutated too, and reach the tile decoder.
    assert result["tiled_seeds"] >= 4 and result["tiled_seed_cases"].get("accepted", 0) > 20
    assert result["by_first_mutation"]["tiles"]["accepted"] > 5
    # Format-4 seeds (an alpha plane, metadata) get their extras table mutated, decoded by decompress.
    extras = result["by_first_mutation"]["extras"]
    assert result["extras_seeds"] >= 4 and extras.get("accepted", 0) > 2 and extras.get("rejected", 0) > 20
    # Format-5, -6 and -7 seeds (a quality map) decode when mutated validly and are refused otherwise.
    assert result["qmap_seeds"] == 4 and set(result["qmap_seed_cases"]) >= {"accepted", "rejected"}
    assert result["max_case_rss_growth_mb"] < 1024 and result["slowest_case_s"] < 2.0


def test_fuzz_reproducible():
    import random

    seeds = [b"\x89EDC" + bytes(range(60))]
    a = [fuzz.mutate_bytes(random.Random(5), seeds[0], seeds) for _ in range(3)]
    b = [fuzz.mutate_bytes(random.Random(5), seeds[0], seeds) for _ in range(3)]
    assert a == b


# --- regressions for what the fuzzer found -------------------------------------------------------
def _with(stream: bytes, *, width: int | None = None, height: int | None = None, y: bytes | None = None,
          z: bytes | None = None) -> bytes:
    import dataclasses

    from edgecodec.codec.container import Container

    c = Container.from_bytes(stream)
    header = dataclasses.replace(c.header, width=width or c.header.width, height=height or c.header.height)
    streams = [y if y is not None else c.streams[0], z if z is not None else c.streams[1]]
    return Container(header, streams).to_bytes()


def test_stream_of_0xff_at_the_length_limit_decodes_without_overread(tiny_stream, tmp_path):
    """0xFF bytes make every rANS bypass chain run on; this used to read megabytes past the
    buffer and segfault. Run in a child process so a regression fails instead of killing pytest."""
    import subprocess

    # 640x640 -> y 40x40x32 = 51200 symbols; the limit is 8 bytes a symbol + 64.
    path = tmp_path / "ff.edc"
    path.write_bytes(_with(tiny_stream, width=640, height=640, y=b"\xff" * (8 * 51200 + 64)))
    code = ("import sys; from edgecodec.codec.api import decode_array; "
            f"decode_array(open({str(path)!r}, 'rb').read()); print('ok')")
    from conftest import cli_env

    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "ok" in proc.stdout, (proc.returncode, proc.stderr[-2000:])


def test_overlong_stream_is_format_error(tiny_stream):
    import pytest

    from edgecodec.codec.api import decode_array
    from edgecodec.errors import FormatError

    # 40x70 -> padded 64x128 -> y 4x8x32 = 1024 symbols: more than 8 bytes each is not ours.
    with pytest.raises(FormatError, match="bytes a symbol"):
        decode_array(_with(tiny_stream, y=b"\xff" * (8 * 1024 + 65)))
    with pytest.raises(FormatError, match="bytes a symbol"):
        decode_array(_with(tiny_stream, z=bytes(8 * 32 + 65)))  # z: 1x2x16 symbols


def test_pixel_limit_counts_the_padded_size(tiny_stream):
    """A 1-pixel-wide header decodes 64 columns: the padded size may exceed the limit at most 4 times."""
    import pytest

    from edgecodec.codec.api import decode_array
    from edgecodec.errors import ImageTooLargeError

    with pytest.raises(ImageTooLargeError, match="64x642880"):
        decode_array(_with(tiny_stream, width=1, height=642817), max_pixels=2**20)
    # Up to 4 x the limit in padded pixels is fine: 1 x 65536 pads to 64 x 65536 = 4 MP.
    rgb, _ = decode_array(_with(tiny_stream, width=1, height=65536), max_pixels=2**20)
    assert rgb.shape == (65536, 1, 3)


def test_tile_streams_of_0xff_at_the_length_limit_decode_without_overread(tmp_path):
    """Tiled streams: every tile's stream 0xFF up to its own length limit (the padding rule applies
    per tile). In a child process, so a regression fails instead of killing pytest."""
    import subprocess

    from conftest import cli_env

    code = f"""
import dataclasses, numpy as np
from edgecodec.codec import tiling
from edgecodec.codec.api import Encoder, decode_array
from edgecodec.codec.container import Container
from edgecodec.codec.imageio import load_image
from edgecodec.errors import FormatError
x = np.random.RandomState(0).randint(0, 256, (300, 450, 3), dtype=np.uint8)
c = Container.from_bytes(Encoder(load_image(x), "tiny", tile=16).encode(32768))
header = dataclasses.replace(c.header, width=1000, height=640)  # latent 40x64: 3 x 4 tiles
tiles = [b"\\xff" * (8 * 32 * (r.stop - r.start) * (k.stop - k.start) + 64)
         for r, k in tiling.tile_grid(40, 64, 16)]
for z in (c.streams[1], b"\\xff" * (8 * 16 * 10 * 16 + 64)):
    data = Container(header, [tiling.pack_tiles(tiles), z]).to_bytes()
    try:
        rgb, _ = decode_array(data, max_pixels=2**20)
        assert rgb.shape == (640, 1000, 3)
    except FormatError:
        pass
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, (proc.returncode, proc.stderr[-2000:])


def test_tile_shape_of_a_header_declaring_billions_of_tiles():
    """The fuzz harness's own generator stalled on such a header (case 76,7xx of seed 1) when it
    listed every tile; one tile's shape is computed directly."""
    from fuzz import tile_shape, tile_shapes

    small = {"width": 300, "height": 450, "tile": 16}
    assert [tile_shape(small, 3, i) for i in range(len(tile_shapes(small, 3)))] == tile_shapes(small, 3)
    assert tile_shape(small, 3, len(tile_shapes(small, 3))) is None
    huge = {"width": 2**32 - 1, "height": 2**32 - 1, "tile": 16}
    assert tile_shape(huge, 3, 5) == (16, 16)
    assert tile_shape({**small, "tile": 0}, 3, 0) is None
