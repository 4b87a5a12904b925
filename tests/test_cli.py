"""The `edgecodec` command line: a few real processes, most paths in-process through cli.main."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, SHIPPED, assert_one_error_line, cli_env, make_tiny, make_tiny_run, run_cli
from PIL import Image, PngImagePlugin

import edgecodec
from edgecodec import cli
from edgecodec.codec.container import FORMAT_VERSION, MAGIC, Container
from edgecodec.train.config import load_config
from edgecodec.zoo import DEFAULT_MODEL, PACKAGE_WEIGHTS as SHIPPED_WEIGHTS, shipped_models

LINE = re.compile(r"^(?P<src>.+) -> (?P<dst>.+): (?P<w>\d+)x(?P<h>\d+), (?P<bytes>\d+) bytes, "
                  r"(?P<bpp>[0-9.]+) bpp, quality (?P<q>[0-9.]+), model (?P<model>\S+)")


def main(*args) -> int:
    return cli.main([str(a) for a in args])


@pytest.fixture
def small_png(kodim23_rgb, tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(kodim23_rgb[100:164, 200:296]).save(path)
    return path


@pytest.fixture
def small_edc(small_png, tmp_path):
    path = tmp_path / "small.edc"
    path.write_bytes(edgecodec.compress(small_png, model="tiny", quality=0.25))
    return path


# --- real processes --------------------------------------------------------------------------------
def test_process_compress_kodim23_with_default_model(kodim23, tmp_path):
    out = tmp_path / "k23.edc"
    result = run_cli("compress", kodim23, "-o", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "error" not in result.stderr.lower()
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    match = LINE.match(lines[0])
    assert match, lines[0]
    size = out.stat().st_size
    assert (int(match["w"]), int(match["h"])) == (768, 512)
    assert int(match["bytes"]) == size
    assert match["bpp"] == f"{8 * size / (768 * 512):.4f}"
    assert float(match["q"]) == pytest.approx(0.5, abs=1e-4)
    assert match["model"] == DEFAULT_MODEL
    header = edgecodec.read_header(out.read_bytes())
    assert (header.model, header.width, header.height, header.quality_q16) == (DEFAULT_MODEL, 768, 512, 32768)
    image = edgecodec.decompress(out.read_bytes())
    assert image.size == (768, 512) and image.mode == "RGB"


def test_process_flipped_byte_exits_4(small_edc, tmp_path):
    data = bytearray(small_edc.read_bytes())
    data[len(data) // 2] ^= 0x10
    bad = tmp_path / "bad.edc"
    bad.write_bytes(bytes(data))
    result = run_cli("decompress", bad, "-o", tmp_path / "bad.png", cwd=tmp_path)
    assert result.returncode == 4, (result.returncode, result.stderr)
    assert_one_error_line(result.stderr, "corrupted")
    assert not (tmp_path / "bad.png").exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_process_existing_output_exits_8(small_png, tmp_path):
    out = tmp_path / "exists.edc"
    out.write_bytes(b"precious")
    os.utime(out, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    result = run_cli("compress", small_png, "-o", out, "--model", "tiny", cwd=tmp_path)
    assert result.returncode == 8, (result.returncode, result.stderr)
    assert_one_error_line(result.stderr, "exists", "--force")
    assert out.read_bytes() == b"precious"
    assert out.stat().st_mtime_ns == 1_000_000_000_000_000_000
    assert result.stdout == ""


def test_process_pipes_through_standard_input_and_output(small_png, tmp_path):
    """"-" is standard input or output, so the CLI works in a pipe; the summary line then goes to
    stderr, and nothing is written to a file named "-"."""
    edgecodec_cli = [sys.executable, "-m", "edgecodec.cli"]

    def piped(*args, data: bytes) -> subprocess.CompletedProcess:
        return subprocess.run([*edgecodec_cli, *args], input=data, capture_output=True, cwd=tmp_path,
                              env=cli_env(), timeout=120)

    before = sorted(tmp_path.iterdir())
    coded = piped("compress", "-", "-o", "-", "--model", "tiny", "--quality", "0.25", data=small_png.read_bytes())
    assert coded.returncode == 0, coded.stderr
    header = edgecodec.read_header(coded.stdout)
    assert (header.model, header.width, header.height, header.quality_q16) == ("tiny", 96, 64, 16384)
    assert coded.stderr.decode().startswith("stdin -> stdout: 96x64, ")
    decoded = piped("decompress", "-", data=coded.stdout)  # standard input: standard output by default
    assert decoded.returncode == 0, decoded.stderr
    with Image.open(io.BytesIO(decoded.stdout)) as image:
        assert image.format == "PNG"
        assert np.array_equal(np.asarray(image), np.asarray(edgecodec.decompress(coded.stdout)))
    info = piped("info", "-", data=coded.stdout)
    assert info.returncode == 0 and f"file size: {len(coded.stdout)} bytes" in info.stdout.decode()
    assert sorted(tmp_path.iterdir()) == before
    bad = piped("decompress", "-", "-o", "bad.png", data=b"garbage")
    assert bad.returncode == 4
    assert_one_error_line(bad.stderr.decode(), "not an .edc")
    empty = piped("compress", "-", "-o", "empty.edc", "--model", "tiny", data=b"")
    assert empty.returncode == 3
    assert_one_error_line(empty.stderr.decode(), "empty")
    assert sorted(tmp_path.iterdir()) == before


def test_terminals_are_refused_for_binary_data(small_png, small_edc, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main("compress", small_png, "-o", "-", "--model", "tiny") == 2
    assert_one_error_line(capsys.readouterr().err, "terminal")
    assert main("decompress", small_edc, "-o", "-") == 2
    assert_one_error_line(capsys.readouterr().err, "terminal")
    assert main("compress", tmp_path, "-o", "-", "--model", "tiny") == 2  # a folder needs an output folder
    assert_one_error_line(capsys.readouterr().err, "OUTPUT_FOLDER")
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)  # nobody is piping anything in: do not wait
    assert main("decompress", "-", "-o", tmp_path / "out.png") == 2
    assert_one_error_line(capsys.readouterr().err, "terminal")


def test_process_crafted_header_does_not_crash(tiny_stream, tmp_path):
    """A CRC-valid file whose header declares a larger image than its streams hold (a crafted or
    buggy file: the CRC is no protection there) must end in an error or a garbage image, never in
    a crash of the process (the rANS decoder reading past its buffer)."""
    c = Container.from_bytes(tiny_stream)
    crafted = Container(dataclasses.replace(c.header, width=3000, height=2000), c.streams).to_bytes()
    (tmp_path / "crafted.edc").write_bytes(crafted)
    result = run_cli("decompress", "crafted.edc", "-o", "crafted.png", cwd=tmp_path)
    assert result.returncode >= 0, f"decoder killed by signal {-result.returncode}"
    assert result.returncode in (0, 4), (result.returncode, result.stderr)
    if result.returncode:
        assert_one_error_line(result.stderr)


# --- in-process ------------------------------------------------------------------------------------
def test_info_prints_every_header_field(tmp_path, kodim23_rgb, capsys):
    path = tmp_path / "gray.png"
    Image.fromarray(kodim23_rgb[:64, :96]).convert("L").save(path)
    edc = tmp_path / "gray.edc"
    edc.write_bytes(edgecodec.compress(path, model="tiny", quality=0.75))
    c = Container.from_bytes(edc.read_bytes())
    capsys.readouterr()
    assert main("info", edc) == 0
    out = capsys.readouterr().out
    fields = dict(line.strip().split(": ", 1) for line in out.strip().splitlines())
    size = edc.stat().st_size
    assert fields["model"] == "tiny"
    assert fields["weights hash"] == c.header.weights_hash.hex()
    assert fields["quality"].startswith(f"{49151 / 65535:.6f}") and "49151/65535" in fields["quality"]
    assert fields["width"] == "96" and fields["height"] == "64"
    assert fields["source channels"] == "1" and fields["source bit depth"] == "8"
    assert fields["conversions"] == "grayscale to RGB"
    assert fields["streams"] == ", ".join(f"{len(s)} bytes" for s in c.streams)
    assert fields["format version"] == "3"  # every new file without extras: version 3 (exact hyper-synthesis)
    assert fields["tiles"] == "none"
    assert fields["extras"] == "none"
    assert fields["file size"] == f"{size} bytes"
    assert fields["bpp"] == f"{8 * size / (96 * 64):.4f}"


def test_alpha_and_metadata_through_the_command_line(tmp_path, kodim23_rgb, capsys):
    alpha = np.zeros((64, 96), np.uint8)
    alpha[8:56, 16:80] = 200
    src = tmp_path / "logo.png"
    exif = Image.Exif()
    exif[0x010F] = "TestMaker"
    Image.fromarray(np.dstack([kodim23_rgb[:64, :96], alpha]), "RGBA").save(src, exif=exif.tobytes())
    edc = tmp_path / "logo.edc"
    assert main("compress", src, "-o", edc, "--model", "tiny", "--metadata", "keep") == 0
    capsys.readouterr()
    assert main("info", edc) == 0
    fields = dict(line.strip().split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    extras = Container.from_bytes(edc.read_bytes()).extras
    assert fields["format version"] == "4"
    assert fields["extras"] == f"alpha (lossless) {len(extras['alph'])} bytes, EXIF {len(extras['exif'])} bytes"
    assert main("info", edc, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format_version"] == 4 and info["extras"] == {"alph": len(extras["alph"]), "exif": len(extras["exif"])}
    assert info["file_bytes"] == edc.stat().st_size and info["bpp"] == 8 * info["file_bytes"] / (96 * 64)
    assert (info["width"], info["height"], info["model"], info["conversions"]) == (96, 64, "tiny", [])
    for suffix in ("png", "tif", "webp"):
        out = tmp_path / f"decoded.{suffix}"
        assert main("decompress", edc, "-o", out) == 0
        with Image.open(out) as img:
            assert img.mode == "RGBA" and np.array_equal(np.array(img)[..., 3], alpha), suffix
            assert img.getexif().get(0x010F) == "TestMaker", suffix
            assert np.array_equal(np.array(img), np.array(Image.open(tmp_path / "decoded.png"))), suffix  # lossless
    for suffix in ("bmp", "ppm"):  # formats that do not keep alpha are refused, not written without it
        assert main("decompress", edc, "-o", tmp_path / f"decoded.{suffix}") == 2
        assert_one_error_line(capsys.readouterr().err, "alpha", suffix.upper(), "--alpha drop")
        assert not (tmp_path / f"decoded.{suffix}").exists()
        assert main("decompress", edc, "-o", tmp_path / f"decoded.{suffix}", "--alpha", "drop") == 0
        with Image.open(tmp_path / f"decoded.{suffix}") as img:
            assert img.mode == "RGB"
    # A grayscale source with alpha comes back LA.
    gray = tmp_path / "gray.png"
    Image.fromarray(np.dstack([kodim23_rgb[:64, :96, 0], alpha]), "LA").save(gray)
    assert main("compress", gray, "-o", tmp_path / "gray.edc", "--model", "tiny") == 0
    assert main("decompress", tmp_path / "gray.edc", "-o", tmp_path / "gray_decoded.png") == 0
    with Image.open(tmp_path / "gray_decoded.png") as img:
        assert img.mode == "LA" and np.array_equal(np.array(img)[..., -1], alpha)


def test_kept_exif_and_xmp_both_reach_every_tagged_output(tmp_path, kodim23_rgb):
    """A TIFF of a file that kept EXIF and XMP had the XMP alone (Pillow's TIFF writer takes
    tiffinfo over exif when given both); PNG and WebP had both."""
    exif = Image.Exif()
    exif[0x010F] = "TestMaker"
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 30.0)  # a GPS latitude: a sub-IFD, kept as well
    src = tmp_path / "photo.png"
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta>'
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    Image.fromarray(kodim23_rgb[:64, :96]).save(src, exif=exif.tobytes(), pnginfo=info)
    edc = tmp_path / "photo.edc"
    assert main("compress", src, "-o", edc, "--model", "tiny", "--metadata", "keep") == 0
    assert set(Container.from_bytes(edc.read_bytes()).extras) == {"exif", "xmp "}  # 4-byte tags
    for suffix in ("png", "tif", "webp"):
        out = tmp_path / f"decoded.{suffix}"
        assert main("decompress", edc, "-o", out) == 0
        with Image.open(out) as img:
            kept = img.getexif()
            assert kept.get(0x010F) == "TestMaker", suffix
            assert kept.get_ifd(0x8825).get(2) == (48.0, 51.0, 30.0), suffix
            written = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp") or kept.get(700)
            assert written and xmp.decode() in (written if isinstance(written, str) else written.decode()), suffix


def test_process_standard_streams_closed_cut_short_or_strict(small_png, small_edc, tmp_path):
    """Standard output filling a disk (here a file size limit) wrote part of the data and exited 0;
    closed standard streams gave an internal error; a file name not valid in a strict UTF-8
    stream exited 2 after its file was written."""
    import resource

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (400, 400))  # the PNG is about 900 bytes

    with open(tmp_path / "cut.png", "wb") as stdout:
        cut = subprocess.run([sys.executable, "-m", "edgecodec.cli", "decompress", str(small_edc), "-o", "-"],
                             stdout=stdout, stderr=subprocess.PIPE, text=True, env=cli_env(), timeout=120,
                             preexec_fn=limited)
    assert cut.returncode == 11
    assert_one_error_line(cut.stderr, "cannot write standard output")
    for args, redirect, message in (
            (["compress", "-", "-o", tmp_path / "x.edc", "--model", "tiny"], "<&-", "standard input is closed"),
            (["decompress", small_edc, "-o", "-"], ">&-", "standard output: it is closed")):
        closed = subprocess.run(["sh", "-c", f'exec "$0" -m edgecodec.cli "$@" {redirect}', sys.executable,
                                 *map(str, args)], capture_output=True, text=True, env=cli_env(), timeout=120)
        assert closed.returncode in (2, 11), closed.stderr
        assert_one_error_line(closed.stderr, message)
    assert not (tmp_path / "x.edc").exists()
    name = os.fsdecode(b"bad\xff.png")  # bytes from another system's encoding
    (tmp_path / name).write_bytes(small_png.read_bytes())
    strict = subprocess.run([sys.executable, "-m", "edgecodec.cli", "compress", name, "--model", "tiny"],
                            cwd=tmp_path, capture_output=True, env={**cli_env(), "PYTHONIOENCODING": "utf-8:strict"},
                            timeout=120)
    assert strict.returncode == 0, strict.stderr
    assert strict.stdout.startswith(b"bad\\udcff.png -> bad\\udcff.edc: 96x64")
    assert (tmp_path / os.fsdecode(b"bad\xff.edc")).exists()


def test_the_input_is_never_overwritten(small_png, small_edc, tmp_path, capsys):
    original = small_png.read_bytes()
    link = tmp_path / "link.png"
    link.symlink_to(small_png)
    for output in (small_png, link, tmp_path / "." / "small.png"):
        assert main("compress", small_png, "-o", output, "--model", "tiny", "--force") == 2
        assert_one_error_line(capsys.readouterr().err, "is the input file")
        assert small_png.read_bytes() == original
    misnamed = tmp_path / "misnamed.png"  # an .edc file under an image's name
    misnamed.write_bytes(small_edc.read_bytes())
    assert main("decompress", misnamed, "-o", misnamed, "--force") == 2
    assert_one_error_line(capsys.readouterr().err, "is the input file")
    assert misnamed.read_bytes() == small_edc.read_bytes()
    # nor any other input: the --roi-mask, or the file standard input reads
    mask = tmp_path / "mask.png"
    Image.new("L", (96, 64), 255).save(mask)
    mask_bytes = mask.read_bytes()
    assert main("compress", small_png, "-o", mask, "--roi-mask", mask, "--model", "tiny", "--force") == 2
    assert_one_error_line(capsys.readouterr().err, "is the mask")
    assert mask.read_bytes() == mask_bytes
    copy = tmp_path / "copy.png"
    copy.write_bytes(original)
    with open(copy, "rb") as stdin:
        piped = subprocess.run([sys.executable, "-m", "edgecodec.cli", "compress", "-", "-o", str(copy), "--model",
                                "tiny", "--force"], stdin=stdin, capture_output=True, text=True, env=cli_env(),
                               timeout=120)
    assert piped.returncode == 2
    assert_one_error_line(piped.stderr, "is the file standard input reads")
    assert copy.read_bytes() == original


def test_an_edc_with_alpha_is_a_valid_input(tmp_path, kodim23_rgb):
    """Pillow reads .edc files through the plugin, so compress can take one: it is decoded, alpha
    included, inside the Pillow pixel-limit context (when alpha planes were PNGs, decoding one
    re-entered that context's lock and deadlocked)."""
    alpha = np.zeros((64, 96), np.uint8)
    alpha[10:40, 20:70] = 255
    edc = tmp_path / "in.edc"
    edc.write_bytes(edgecodec.compress(np.dstack([kodim23_rgb[:64, :96], alpha]), model="tiny"))
    result = run_cli("compress", edc, "-o", tmp_path / "again.edc", "--model", "tiny", timeout=60)
    assert result.returncode == 0, result.stderr
    again = edgecodec.decompress((tmp_path / "again.edc").read_bytes())
    assert again.mode == "RGBA" and np.array_equal(np.array(again)[..., 3], alpha)


def test_bad_pixel_limit_and_folder_output_are_usage_errors(small_png, tree, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGECODEC_MAX_PIXELS", "lots")
    assert main("compress", small_png, "-o", tmp_path / "x.edc", "--model", "tiny") == 2
    assert_one_error_line(capsys.readouterr().err, "EDGECODEC_MAX_PIXELS", "'lots'")
    assert main("compress", tree, "-o", tmp_path / "never", "--model", "tiny", "-q") == 2  # once, not every file
    assert_one_error_line(capsys.readouterr().err, "EDGECODEC_MAX_PIXELS", "'lots'")
    assert not (tmp_path / "never").exists()
    monkeypatch.delenv("EDGECODEC_MAX_PIXELS")
    (tmp_path / "file.edc").write_bytes(b"x")
    assert main("compress", tree, "-o", tmp_path / "file.edc", "--model", "tiny", "-q") == 2
    assert_one_error_line(capsys.readouterr().err, "is a file")
    assert (tmp_path / "file.edc").read_bytes() == b"x"
    with pytest.raises(ValueError, match="positive"):
        edgecodec.compress(small_png, model="tiny", target_bpp=float("inf"))


def test_outputs_into_pipes_and_devices(small_png, small_edc, tmp_path, capsys):
    """A FIFO or character device output (-o /dev/null) is written into, without --force: the
    atomic rename used to replace the node itself with a regular file (as root, /dev/null). A
    socket (like a block device) is refused before any work, even with --force."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for command, source, model in (("compress", small_png, ["--model", "tiny"]), ("decompress", small_edc, [])):
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
        reader.start()
        assert main(command, source, "-o", fifo, *model) == 0
        reader.join(timeout=60)
        assert fifo.is_fifo() and received and received[0][:4] == (b"\x89PNG" if command == "decompress"
                                                                   else MAGIC)
        assert main(command, source, "-o", os.devnull, *model) == 0
        assert Path(os.devnull).is_char_device()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock.edc"))
        for force in ([], ["--force"]):
            assert main("compress", small_png, "-o", tmp_path / "sock.edc", "--model", "tiny", *force) == 11
            assert_one_error_line(capsys.readouterr().err, "not a regular file")
        assert (tmp_path / "sock.edc").is_socket()
    assert not list(tmp_path.rglob("*.tmp"))


def test_long_file_names(small_png, small_edc, tmp_path, capsys):
    """An output named with 241 to 255 bytes could not be written (its temporary file's name passed
    the 255-byte limit); a name over 255 bytes was an internal error as an output and as an input."""
    fits = tmp_path / ("写" * 83 + ".edc")  # 253 bytes
    assert main("compress", small_png, "-o", fits, "--model", "tiny") == 0
    assert edgecodec.read_header(fits.read_bytes()).width == 96 and not list(tmp_path.glob(".*.tmp"))
    capsys.readouterr()
    assert main("decompress", small_edc, "-o", tmp_path / ("a" * 256 + ".png")) == 11
    assert_one_error_line(capsys.readouterr().err, "cannot write", "file name too long")
    for args in (["compress", tmp_path / ("a" * 256 + ".png"), "-o", tmp_path / "x.edc", "--model", "tiny"],
                 ["decompress", tmp_path / ("a" * 256 + ".edc"), "-o", tmp_path / "x.png"]):
        assert main(*args) == 2
        assert_one_error_line(capsys.readouterr().err, "file name too long")


def test_extreme_target_bpp(small_png, tmp_path, capsys):
    """A bpp near the float maximum overflowed to an internal error; one under a byte named a size."""
    out = tmp_path / "t.edc"
    for backend in ("torch", "onnx"):
        assert main("compress", small_png, "-o", out, "--force", "--model", SHIPPED, "--target-bpp", "1e308",
                    "--backend", backend) == 0
        assert "not reachable" in capsys.readouterr().out
        assert edgecodec.read_header(out.read_bytes()).quality_q16 == 65535
        assert main("compress", small_png, "-o", out, "--force", "--model", SHIPPED, "--target-bpp", "1e-9",
                    "--backend", backend) == 2
        assert_one_error_line(capsys.readouterr().err, "1e-09 bpp is under one byte")
    assert edgecodec.read_header(edgecodec.compress(small_png, model="tiny", target_bpp=1e308)).quality_q16 == 65535
    with pytest.raises(ValueError, match="finite"):
        edgecodec.compress(small_png, model="tiny", target_size=float("inf"))
    with pytest.raises(TypeError, match="bpp must be a number"):
        edgecodec.compress(small_png, model="tiny", target_bpp="0.3")


def test_endless_inputs_stop_at_the_magic_bytes(tmp_path):
    """`info` / `decompress` of a device or pipe that never ends used to read until memory ran out;
    a wrong start is refused at once (a child process, with a timeout, so a regression fails)."""
    for args in (["info", "/dev/zero"], ["decompress", "/dev/zero", "-o", tmp_path / "never-written.png"]):
        result = run_cli(*args, timeout=60)
        assert result.returncode == 4, result.stderr
        assert_one_error_line(result.stderr, "/dev/zero", "not an .edc file")
    assert not (tmp_path / "never-written.png").exists()


def test_endless_inputs_that_start_like_an_edc_file_or_image_stop_at_a_bound(small_png, small_edc, tmp_path):
    """Endless standard input that starts with a real .edc file or image used to be read until
    memory ran out; it is refused once it passes limits.max_input_bytes (64 MiB here: the base plus
    32 bytes a pixel under a 1,000-pixel limit), with nothing written."""
    env = cli_env()
    env["EDGECODEC_MAX_PIXELS"] = "1000"
    out = tmp_path / "never-written"
    for first, command, code, fragment in (
            (small_edc, "info -", 4, "standard input is larger than the pixel limit of 1000 pixels allows"),
            (small_edc, f"decompress - -o {out}.png", 4, "standard input is larger than the pixel limit"),
            (small_png, f"compress - -o {out}.edc --model tiny", 3, "standard input holds more than"),
            (small_png, f"compress /dev/stdin -o {out}.edc --model tiny", 3, "/dev/stdin holds more than")):  # a pipe
        result = subprocess.run(f"cat {first} /dev/zero | {sys.executable} -m edgecodec.cli {command}", shell=True,
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == code, result.stderr
        assert_one_error_line(result.stderr, fragment)
    assert not list(tmp_path.glob("never-written*"))


def test_info_on_several_files(small_edc, tmp_path, capsys):
    """`edgecodec info *.edc`: each readable file's fields (a JSON list with --json); the others
    are listed on stderr and the exit code is 10, as in folder mode."""
    other = tmp_path / "other.edc"
    other.write_bytes(edgecodec.compress(np.zeros((40, 50, 3), np.uint8), model="tiny", quality=1.0))
    bad = tmp_path / "bad.edc"
    bad.write_bytes(b"not an edc")
    assert main("info", small_edc, other, "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(f["file"], f["width"], f["quality_q16"]) for f in listed] == [(str(small_edc), 96, 16384),
                                                                          (str(other), 50, 65535)]
    assert main("info", small_edc, bad, other) == 10
    captured = capsys.readouterr()
    assert captured.out.count("format version: 3") == 2 and str(other) in captured.out
    assert captured.err.strip() == f"failed: {bad}: {bad} is not an .edc file: wrong magic bytes"
    assert main("info", small_edc, bad, "--json") == 10  # the JSON list has an entry a file (the bad one was left out)
    listed = json.loads(capsys.readouterr().out)
    assert listed[1] == {"file": str(bad), "error": f"{bad} is not an .edc file: wrong magic bytes"}
    assert main("info", "-", small_edc, "-") == 2  # was exit 10: the second read of standard input found it empty
    assert_one_error_line(capsys.readouterr().err, "standard input (-) can be read once")


def test_info_on_bad_files(tmp_path, capsys):
    bad = tmp_path / "bad.edc"
    bad.write_bytes(b"hello world, not an edc")
    assert main("info", bad) == 4
    assert_one_error_line(capsys.readouterr().err, "not an .edc")
    assert main("info", tmp_path / "missing.edc") == 3
    assert_one_error_line(capsys.readouterr().err, "cannot read")


def test_models_lists_shipped_and_path_models(capsys):
    assert main("models") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split(":")[0] for line in lines]
    assert f"{DEFAULT_MODEL} (default)" in names
    assert set(shipped_models()) <= {n.removesuffix(" (default)") for n in names}
    assert "tiny" in names
    assert main("models", "--json") == 0  # the same models, for scripts
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == [n.removesuffix(" (default)") for n in names]
    assert [m["name"] for m in listed if m["default"]] == [DEFAULT_MODEL]
    card = json.loads((SHIPPED_WEIGHTS / f"{SHIPPED}.json").read_text())
    shipped = next(m for m in listed if m["name"] == SHIPPED)
    assert (shipped["parameters"], shipped["bpp_range"]) == (card["parameters"], card["bpp_range"])
    assert shipped["weights"] == str(SHIPPED_WEIGHTS / f"{SHIPPED}.safetensors") and shipped["problem"] is None


def test_compress_default_output_name_and_force(small_png, tmp_path, capsys):
    assert main("compress", small_png, "--model", "tiny") == 0
    out = tmp_path / "small.edc"
    assert out.exists()
    first = out.read_bytes()
    assert edgecodec.read_header(first).quality_q16 == 32768
    assert main("compress", small_png, "--model", "tiny") == 8
    assert out.read_bytes() == first
    capsys.readouterr()
    assert main("compress", small_png, "--model", "tiny", "--quality", "1", "--force") == 0
    assert edgecodec.read_header(out.read_bytes()).quality_q16 == 65535
    assert "small.edc" in capsys.readouterr().out
    source = small_png.read_bytes()
    assert main("decompress", out) == 8  # the default output small.png is the source image
    assert small_png.read_bytes() == source
    assert main("decompress", out, "--force") == 0
    assert small_png.read_bytes() != source
    with Image.open(small_png) as img:
        assert img.size == (96, 64)


def test_compress_metrics(kodim23_rgb, tmp_path, capsys):
    src = tmp_path / "big.png"
    Image.fromarray(kodim23_rgb[:192, :192]).save(src)
    assert main("compress", src, "-o", tmp_path / "big.edc", "--model", "tiny", "--metrics") == 0
    out = capsys.readouterr().out
    assert re.search(r"PSNR [0-9.]+ dB, MS-SSIM [0-9.]+$", out.strip()), out
    assert main("compress", tmp_path / "big.png", "-o", tmp_path / "b2.edc", "--model", SHIPPED,
                "--quality", "1", "--metrics") == 0
    psnr = float(re.search(r"PSNR ([0-9.]+) dB", capsys.readouterr().out)[1])
    assert psnr > 10


def test_target_size_and_bpp_flags(small_png, tmp_path, capsys):
    out = tmp_path / "t.edc"
    assert main("compress", small_png, "-o", out, "--model", SHIPPED, "--target-size", "1.5KB") == 0
    line = capsys.readouterr().out
    size = out.stat().st_size
    assert abs(size - 1500) <= 45 or "not reachable" in line
    assert main("compress", small_png, "-o", out, "--force", "--model", SHIPPED, "--target-size", "1TB") == 2
    assert_one_error_line(capsys.readouterr().err, "size")
    # above every file: the top quality, said so; 400 digits were an OverflowError (exit 1)
    for size in ("10MB", "1GB", "9" * 400):
        assert main("compress", small_png, "-o", out, "--force", "--model", SHIPPED, "--target-size", size) == 0
        assert "not reachable" in capsys.readouterr().out
        assert edgecodec.read_header(out.read_bytes()).quality_q16 == 65535
    assert main("compress", small_png, "-o", out, "--force", "--model", SHIPPED, "--target-bpp", "1.0") == 0
    bpp = 8 * out.stat().st_size / (96 * 64)
    line = capsys.readouterr().out
    assert abs(bpp - 1.0) <= 0.03 or "not reachable" in line
    with pytest.raises(SystemExit) as info:  # argparse refuses it (test_usage_errors_exit_2)
        main("compress", small_png, "-o", out, "--force", "--target-bpp", "-1")
    assert info.value.code == 2


def test_target_psnr_and_ms_ssim_flags(small_png, tmp_path, capsys):
    from edgecodec.codec.api import decode_array
    from edgecodec.metrics import psnr

    out = tmp_path / "t.edc"
    assert main("compress", small_png, "-o", out, "--model", SHIPPED, "--target-psnr", "30") == 0
    line = capsys.readouterr().out
    reached = re.search(r"\(PSNR ([0-9.]+) dB, target 30.00 dB\)", line)
    assert reached, line
    decoded = decode_array(out.read_bytes())[0]
    assert psnr(np.array(Image.open(small_png)), decoded) == pytest.approx(float(reached[1]), abs=0.005)
    assert float(reached[1]) >= 30
    assert main("compress", small_png, "-o", out, "--force", "--model", SHIPPED, "--target-psnr", "80") == 0
    assert re.search(r"\(target PSNR 80.00 dB not reachable: [0-9.]+ dB at the best quality\)", capsys.readouterr().out)
    assert main("compress", small_png, "-o", out, "--force", "--target-ms-ssim", "0.9") == 3  # 96 x 64: too small
    assert_one_error_line(capsys.readouterr().err, "MS-SSIM needs both sides of at least 161 pixels")


@pytest.mark.parametrize("args", [
    ["--quality", "2"], ["--quality", "-0.5"], ["--quality", "0.5", "--target-bpp", "1"],
    ["--alpha", "blend"], ["--metadata", "all"], ["--icc", "ignore"], ["--quality", "high"], ["--target-bpp", "inf"],
    ["--target-bpp", "nan"], ["--target-bpp", "0"], ["--max-pixels", "0"], ["--target-psnr", "0"],
    ["--target-psnr", "30", "--target-size", "1KB"], ["--target-ms-ssim", "1.2"], ["--target-ms-ssim", "0"],
    ["--roi", "1,2,3"], ["--roi", "0,0,0,5"], ["--roi", "1,1,5,5", "--roi-quality", "1.5"],
])
def test_usage_errors_exit_2(small_png, tmp_path, capsys, args):
    with pytest.raises(SystemExit) as info:
        main("compress", small_png, "-o", tmp_path / "u.edc", "--model", "tiny", *args)
    assert info.value.code == 2
    # one line, as every other error (argparse printed its usage block first, and "edgecodec compress:
    # error:" for the errors it caught, which a script matching "edgecodec: error:" missed)
    line = assert_one_error_line(capsys.readouterr().err)
    assert line.endswith("(edgecodec compress --help)") and "compress: " in line
    assert not (tmp_path / "u.edc").exists()


def test_options_that_mean_nothing_for_the_input_are_refused(small_png, tmp_path, capsys):
    """--jobs and --skip-existing with one file, and --skip-existing with --force, were ignored in
    silence; compress -o x.png wrote .edc bytes under an image's name; decompress -o FOLDER said the
    folder must be a lossless format."""
    out = tmp_path / "a.edc"
    for args in (["--jobs", "2"], ["--skip-existing"], ["--jobs", "2", "--skip-existing"]):
        assert main("compress", small_png, "-o", out, "--model", "tiny", *args) == 2
        assert_one_error_line(capsys.readouterr().err, "with a folder input", f"{small_png} is one file")
    assert not out.exists()
    assert main("compress", small_png, "-o", tmp_path / "a.png", "--model", "tiny") == 2
    assert_one_error_line(capsys.readouterr().err, "compress writes an .edc file, not .png")
    assert main("compress", small_png, "-o", out, "--model", "tiny", "-q") == 0
    assert main("decompress", out, "-o", tmp_path / "b.png", "--jobs", "2") == 2
    assert_one_error_line(capsys.readouterr().err, "--jobs goes with a folder input")
    (tmp_path / "folder").mkdir()
    assert main("decompress", out, "-o", tmp_path / "folder") == 11
    assert_one_error_line(capsys.readouterr().err, "it is a folder")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(small_png).save(photos / "p.png")
    assert main("compress", photos, "-o", tmp_path / "coded", "--skip-existing", "--force") == 2
    assert_one_error_line(capsys.readouterr().err, "--skip-existing keeps existing outputs and --force replaces them")
    assert not (tmp_path / "coded").exists()


@pytest.mark.parametrize("threads", ["0", "-1", "two"])
def test_threads_must_be_a_positive_count(small_png, tmp_path, capsys, threads):
    with pytest.raises(SystemExit) as info:
        main("--threads", threads, "compress", small_png, "-o", tmp_path / "t.edc", "--model", "tiny")
    assert info.value.code == 2
    assert "--threads" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "t.edc").exists()


def test_unwritable_output_exits_11(small_png, small_edc, tmp_path, capsys):
    """An output that cannot be created (here its parent is a file; elsewhere no permission or a
    full disk): one error line naming it, exit code 11, nothing left behind."""
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"a file, not a folder")
    assert main("compress", small_png, "-o", blocker / "x.edc", "--model", "tiny") == 11
    assert_one_error_line(capsys.readouterr().err, "cannot write", "x.edc")
    assert main("decompress", small_edc, "-o", blocker / "x.png") == 11
    assert_one_error_line(capsys.readouterr().err, "cannot write", "x.png")
    assert blocker.read_bytes() == b"a file, not a folder"
    # A folder where the file should go: refused before any work, with or without --force (it used
    # to suggest --force, which then failed at the rename).
    (tmp_path / "folder.edc").mkdir()
    (tmp_path / "folder.png").mkdir()
    for force in ([], ["--force"]):
        assert main("compress", small_png, "-o", tmp_path / "folder.edc", "--model", "tiny", *force) == 11
        assert_one_error_line(capsys.readouterr().err, "cannot write", "folder.edc: it is a folder")
        assert main("decompress", small_edc, "-o", tmp_path / "folder.png", *force) == 11
        assert_one_error_line(capsys.readouterr().err, "cannot write", "folder.png: it is a folder")
    assert not list(tmp_path.rglob("*.tmp"))


def test_usage_without_command(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert edgecodec.__version__ in capsys.readouterr().out


def test_unknown_model_exits_9(small_png, tmp_path, capsys):
    assert main("compress", small_png, "-o", tmp_path / "x.edc", "--model", "no-such-model") == 9
    assert_one_error_line(capsys.readouterr().err, "unknown model", "no-such-model", SHIPPED)
    assert not (tmp_path / "x.edc").exists()


def test_bad_input_image_exits_3(tmp_path, capsys, kodim23_rgb):
    text = tmp_path / "x.png"
    text.write_text("not a png\n")
    assert main("compress", text, "-o", tmp_path / "x.edc") == 3
    assert_one_error_line(capsys.readouterr().err, "x.png")
    assert main("compress", tmp_path / "missing.png") == 3
    assert_one_error_line(capsys.readouterr().err, "no such file")
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.zeros((16, 16, 4), np.uint8), "RGBA").save(rgba)
    assert main("compress", rgba, "--model", "tiny", "--alpha", "refuse") == 3
    assert_one_error_line(capsys.readouterr().err, "--alpha drop")
    assert not (tmp_path / "rgba.edc").exists()
    assert main("compress", rgba, "--model", "tiny", "--alpha", "drop") == 0
    assert edgecodec.read_header((tmp_path / "rgba.edc").read_bytes()).conversions == 8


def test_truncated_and_garbage_edc_exit_4(small_edc, tmp_path, capsys):
    data = small_edc.read_bytes()
    for i, cut in enumerate((0, 3, 10, len(data) // 2, len(data) - 1)):
        path = tmp_path / f"cut{i}.edc"
        path.write_bytes(data[:cut])
        assert main("decompress", path, "-o", tmp_path / f"cut{i}.png") == 4
        assert_one_error_line(capsys.readouterr().err)
        assert not (tmp_path / f"cut{i}.png").exists()


def test_newer_version_exits_5(small_edc, tmp_path, capsys):
    data = bytearray(small_edc.read_bytes())
    data[4] = FORMAT_VERSION + 1  # the version is checked before the CRC: no fix-up needed
    newer = tmp_path / "newer.edc"
    newer.write_bytes(bytes(data))
    assert main("decompress", newer, "-o", tmp_path / "newer.png") == 5
    assert_one_error_line(capsys.readouterr().err, "version", "upgrade")
    assert main("info", newer) == 5
    assert_one_error_line(capsys.readouterr().err, "upgrade")


def test_weights_mismatch_exits_6(small_edc, tiny_models, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", str(tiny_models["b"]))
    assert main("decompress", small_edc, "-o", tmp_path / "w.png") == 6
    assert_one_error_line(capsys.readouterr().err, "weights")
    assert not (tmp_path / "w.png").exists()


def test_pixel_limit_exits_7(small_png, small_edc, tmp_path, capsys, monkeypatch):
    assert main("compress", small_png, "-o", tmp_path / "p.edc", "--model", "tiny", "--max-pixels", "1000") == 7
    assert_one_error_line(capsys.readouterr().err, "pixels")
    assert main("decompress", small_edc, "-o", tmp_path / "p.png", "--max-pixels", "1000") == 7
    assert_one_error_line(capsys.readouterr().err, "pixels")
    monkeypatch.setenv("EDGECODEC_MAX_PIXELS", "1000")
    assert main("decompress", small_edc, "-o", tmp_path / "p.png") == 7
    assert main("decompress", small_edc, "-o", tmp_path / "p.png", "--max-pixels", str(96 * 64)) == 0


def test_decompress_refuses_lossy_output_format(small_edc, tmp_path, capsys):
    code = main("decompress", small_edc, "-o", tmp_path / "out.jpg")
    assert code != 0
    assert_one_error_line(capsys.readouterr().err, "lossless")
    assert not (tmp_path / "out.jpg").exists()
    for ext in ("png", "bmp", "tif", "ppm", "webp"):
        assert main("decompress", small_edc, "-o", tmp_path / f"out.{ext}") == 0
        with Image.open(tmp_path / f"out.{ext}") as img:
            assert img.size == (96, 64)
            assert np.array_equal(np.array(img.convert("RGB")), np.array(Image.open(tmp_path / "out.png"))), ext


def test_decompress_region_writes_the_crop_of_the_whole_image(small_edc, tmp_path, capsys):
    assert main("decompress", small_edc, "-o", tmp_path / "whole.png") == 0
    assert main("decompress", small_edc, "-o", tmp_path / "part.png", "--region", "10,5,40,30") == 0
    assert "40x30" in capsys.readouterr().out
    whole = np.array(Image.open(tmp_path / "whole.png"))
    assert np.array_equal(np.array(Image.open(tmp_path / "part.png")), whole[5:35, 10:50])
    # Outside the 96 x 64 image: one error line, exit 2, nothing written.
    assert main("decompress", small_edc, "-o", tmp_path / "out.png", "--region", "90,0,7,1") == 2
    assert_one_error_line(capsys.readouterr().err, "region 90,0,7,1", "96x64")
    assert not (tmp_path / "out.png").exists()
    for text in ("1,2,3", "0,0,0,5", "-1,0,5,5", "a,b,c,d"):
        with pytest.raises(SystemExit) as info:
            main("decompress", small_edc, "-o", tmp_path / "out.png", "--region", text)
        assert info.value.code == 2
        assert "--region" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


# --- folder mode -----------------------------------------------------------------------------------
def all_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def tree(kodim23_rgb, tmp_path):
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(kodim23_rgb[:64, :96]).save(src / "a.png")
    Image.fromarray(kodim23_rgb[64:128, 96:160]).save(src / "sub" / "deeper" / "b.png")
    (src / "sub" / "corrupt.png").write_bytes(np.random.RandomState(0).bytes(3000))
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue")]
    frames[0].save(src / "sub" / "anim.png", save_all=True, append_images=frames[1:])  # refused: 2 frames
    (src / "notes.txt").write_text("not an image, ignored\n")
    return src


def test_folder_compress_partial_failure(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert main("compress", tree, "-o", out, "--model", "tiny", "-q") == 10
    captured = capsys.readouterr()
    assert all_files(out) == ["a.edc", "sub/deeper/b.edc"]  # no temporary or partial files
    assert not list(out.rglob("*.tmp"))
    assert "2 written, 0 skipped (existing), 2 failed" in captured.out
    failed = [line for line in captured.err.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 2, captured.err
    assert any("corrupt.png" in line and "image" in line for line in failed), failed
    assert any("anim.png" in line and "frames" in line for line in failed), failed
    assert "Traceback" not in captured.err
    for name, size in (("a.edc", (96, 64)), ("sub/deeper/b.edc", (64, 64))):
        assert edgecodec.decompress((out / name).read_bytes()).size == size

    # --skip-existing leaves finished outputs alone.
    stamp = 1_000_000_000_000_000_000
    for path in out.rglob("*.edc"):
        os.utime(path, ns=(stamp, stamp))
    before = {p: p.read_bytes() for p in out.rglob("*.edc")}
    assert main("compress", tree, "-o", out, "--model", "tiny", "-q", "--skip-existing") == 10
    captured = capsys.readouterr()
    assert "0 written, 2 skipped (existing), 2 failed" in captured.out
    for path, data in before.items():
        assert path.stat().st_mtime_ns == stamp and path.read_bytes() == data

    # Without --skip-existing or --force, existing outputs are failures and stay untouched.
    assert main("compress", tree, "-o", out, "--model", "tiny", "-q") == 10
    captured = capsys.readouterr()
    assert "0 written, 0 skipped (existing), 4 failed" in captured.out
    assert sum("exists" in line for line in captured.err.splitlines()) == 2
    for path in before:
        assert path.stat().st_mtime_ns == stamp

    # With --force they are rewritten; with only good files the exit code is 0.
    (tree / "sub" / "corrupt.png").unlink()
    (tree / "sub" / "anim.png").unlink()
    assert main("compress", tree, "-o", out, "--model", "tiny", "-q", "--force", "--quality", "1") == 0
    assert "2 written, 0 skipped (existing), 0 failed" in capsys.readouterr().out
    for path in before:
        assert edgecodec.read_header(path.read_bytes()).quality_q16 == 65535
    assert all_files(out) == ["a.edc", "sub/deeper/b.edc"]


def test_folder_decompress(tree, tmp_path, capsys):
    (tree / "sub" / "corrupt.png").unlink()
    (tree / "sub" / "anim.png").unlink()
    edc = tmp_path / "edc"
    assert main("compress", tree, "-o", edc, "--model", "tiny", "-q") == 0
    dec = tmp_path / "dec"
    assert main("decompress", edc, "-o", dec, "-q") == 0
    assert all_files(dec) == ["a.png", "sub/deeper/b.png"]
    with Image.open(dec / "a.png") as img:
        assert img.size == (96, 64)
        assert np.array_equal(np.array(img), np.asarray(edgecodec.decompress((edc / "a.edc").read_bytes())))
    # A broken .edc among good ones: exit 10, the good ones written.
    (edc / "sub" / "broken.edc").write_bytes(b"\x89EDC\x01garbage")
    dec2 = tmp_path / "dec2"
    assert main("decompress", edc, "-o", dec2, "-q") == 10
    captured = capsys.readouterr()
    assert all_files(dec2) == ["a.png", "sub/deeper/b.png"]
    assert "broken.edc" in captured.err


def test_decompress_format_for_folders_standard_output_and_default_names(tree, tmp_path, capsys):
    """A folder decoded to PNG only (-o dec.tif made a folder of PNGs); --format names the format
    where no file name does: a folder, standard output, no -o."""
    (tree / "sub" / "corrupt.png").unlink()
    (tree / "sub" / "anim.png").unlink()
    edc = tmp_path / "edc"
    assert main("compress", tree, "-o", edc, "--model", "tiny", "-q") == 0
    assert main("decompress", edc, "-o", tmp_path / "tif", "--format", "tif", "-q") == 0
    assert all_files(tmp_path / "tif") == ["a.tif", "sub/deeper/b.tif"]
    with Image.open(tmp_path / "tif" / "a.tif") as img:
        assert img.format == "TIFF"
        assert np.array_equal(np.array(img), np.asarray(edgecodec.decompress((edc / "a.edc").read_bytes())))
    assert main("decompress", edc / "a.edc", "--format", "webp", "-q") == 0
    with Image.open(edc / "a.webp") as img:
        assert img.format == "WEBP"
    result = subprocess.run([sys.executable, "-m", "edgecodec.cli", "decompress", "-", "--format", "bmp", "-q"],
                            input=(edc / "a.edc").read_bytes(), capture_output=True, env=cli_env(), timeout=120)
    assert result.returncode == 0 and result.stdout[:2] == b"BM", result.stderr
    assert main("decompress", edc / "a.edc", "-o", tmp_path / "x.png", "--format", "tif") == 2
    assert_one_error_line(capsys.readouterr().err, "another format than --format tif")
    assert not (tmp_path / "x.png").exists()
    assert main("decompress", edc / "a.edc", "-o", tmp_path / "x.tiff", "--format", "tif", "-q") == 0
    assert main("decompress", edc / "a.edc", "-o", tmp_path / "noext", "--format", "webp", "-q") == 0  # no suffix
    with Image.open(tmp_path / "noext") as img:
        assert img.format == "WEBP"
    assert main("decompress", edc / "a.edc", "-o", tmp_path / "one.png", "--jobs", "1", "-q") == 0  # the default
    # a size that cannot be parsed: one usage error, not a failure of every file of the folder
    assert main("compress", tree, "-o", tmp_path / "sized", "--target-size", "abc") == 2
    assert_one_error_line(capsys.readouterr().err, "cannot parse size 'abc'")
    assert not (tmp_path / "sized").exists()


def test_folder_jobs_code_files_in_parallel_as_one_thread_would(tree, tmp_path, capsys, monkeypatch):
    """--jobs N: N files at once, each on one torch thread, so the outputs are --threads 1's, byte
    for byte; failures are collected and listed as without --jobs."""
    for i in range(4):  # six good images, two bad ones
        Image.fromarray(np.roll(np.asarray(Image.open(tree / "a.png")), 7 * i, axis=1)).save(tree / f"c{i}.png")
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert main("--threads", "1", "compress", tree, "-o", serial, "--model", "tiny", "-q") == 10
    serial_out = capsys.readouterr()
    threads = []
    one = cli._compress_one
    monkeypatch.setattr(cli, "_compress_one", lambda *a: threads.append(threading.get_ident())
                        or time.sleep(0.05) or one(*a))
    assert main("compress", tree, "-o", parallel, "--model", "tiny", "-q", "--jobs", "3", "-v") == 10
    captured = capsys.readouterr()
    assert len(threads) == 8 and len(set(threads)) == 3
    assert all_files(parallel) == all_files(serial) == ["a.edc", *(f"c{i}.edc" for i in range(4)),
                                                        "sub/deeper/b.edc"]
    for name in all_files(serial):
        assert (parallel / name).read_bytes() == (serial / name).read_bytes(), name
    assert "6 written, 0 skipped (existing), 2 failed" in captured.out
    assert sum(" -> " in line for line in captured.out.splitlines()) == 6  # -v: a line per file
    failed = [line for line in captured.err.splitlines() if line.startswith("failed: ")]
    assert failed == [line for line in serial_out.err.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 2 and "Traceback" not in captured.err

    # Decoding: the same pixels with --jobs (the synthesis is single-threaded either way).
    assert main("decompress", serial, "-o", tmp_path / "png1", "-q") == 0
    assert main("decompress", serial, "-o", tmp_path / "png2", "-q", "--jobs", "2") == 0
    for name in all_files(tmp_path / "png1"):
        assert (tmp_path / "png1" / name).read_bytes() == (tmp_path / "png2" / name).read_bytes()
    # torch's thread count is process-wide: more than one thread per job is refused.
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # main's --threads: not for later tests
    assert main("--threads", "2", "compress", tree, "-o", tmp_path / "x", "--jobs", "2", "-q") == 2
    assert_one_error_line(capsys.readouterr().err, "--jobs", "--threads")
    assert not (tmp_path / "x").exists()


def test_folder_compress_reads_phone_and_modern_formats(kodim23_rgb, tmp_path, capsys):
    """HEIC (phones' photos), JPEG XL, AVIF and GIF files of a folder are coded, not skipped."""
    import pillow_heif
    import pillow_jxl  # noqa: F401  (for Pillow to write JPEG XL here)

    pillow_heif.register_heif_opener()
    src = tmp_path / "photos"
    src.mkdir()
    for suffix in ("heic", "jxl", "avif", "gif"):
        Image.fromarray(kodim23_rgb[:64, :96]).save(src / f"a.{suffix}")
    assert main("compress", src, "-o", tmp_path / "out", "--model", "tiny", "-q") == 0
    assert "4 written, 0 skipped (existing), 0 failed" in capsys.readouterr().out
    assert all_files(tmp_path / "out") == ["a.avif.edc", "a.gif.edc", "a.heic.edc", "a.jxl.edc"]


def test_folder_errors(tree, tmp_path, capsys):
    assert main("compress", tree, "--model", "tiny", "-q") != 0  # a folder needs -o
    assert_one_error_line(capsys.readouterr().err, "-o")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main("compress", empty, "-o", tmp_path / "o", "-q") != 0
    assert_one_error_line(capsys.readouterr().err, "no input files")
    (tmp_path / "notes.txt").write_text("x")  # an output folder that cannot be made: refused before any work
    assert main("compress", tree, "-o", tmp_path / "notes.txt" / "out", "--model", "tiny", "-q") == 11
    assert_one_error_line(capsys.readouterr().err, "a file is on its path")


def test_folder_mode_reports_folders_it_cannot_read(tree, tmp_path, capsys, monkeypatch):
    """An unreadable subfolder was skipped in silence (exit 0); the input folder itself said
    "no input files"."""
    scandir, locked = os.scandir, [tree / "sub"]

    def refusing(path="."):
        if Path(path) in locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    out = tmp_path / "out"
    assert main("compress", tree, "-o", out, "--model", "tiny", "-q") == 10
    captured = capsys.readouterr()
    assert "1 written, 0 skipped (existing), 1 failed" in captured.out
    assert f"failed: {tree / 'sub'}: cannot read the folder: Permission denied" in captured.err
    assert all_files(out) == ["a.edc"]
    locked.append(tree)
    assert main("compress", tree, "-o", tmp_path / "out2", "--model", "tiny", "-q") == 3
    assert_one_error_line(capsys.readouterr().err, f"cannot read the folder {tree}: Permission denied")


def _refuse_stat_under(monkeypatch, folder: Path) -> None:
    """os.stat of anything inside ``folder`` fails as a folder without search permission makes it
    (EACCES; tests run as root, whom chmod does not stop)."""
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and folder in Path(os.fspath(path)).parents:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)
    monkeypatch.setattr(os, "stat", stat)


def test_folder_mode_follows_links_and_names_every_file_it_leaves(tree, kodim23_rgb, tmp_path, capsys, monkeypatch):
    """A linked folder was skipped in silence, as were broken links and files not named as images
    (.jfif among them); a file in a folder without search permission stopped the whole run with an
    internal error; an output folder inside the input was walked as input by the next run."""
    (tree / "sub" / "corrupt.png").unlink()
    (tree / "sub" / "anim.png").unlink()
    elsewhere = tmp_path / "day2"
    elsewhere.mkdir()
    Image.fromarray(kodim23_rgb[:48, :48]).save(elsewhere / "c.png")
    (tree / "day2").symlink_to(elsewhere)  # followed
    (tree / "sub" / "up").symlink_to(tree)  # a loop: listed, not walked for ever
    (elsewhere / "back").symlink_to(tree)  # a loop through a folder outside: listed too
    (tree / "parent").symlink_to(tmp_path)  # above the input: its siblings are no input
    for name in ("a-latest", "zz-latest"):  # second names of sub/deeper, before and after it: its files once
        (tree / name).symlink_to(tree / "sub" / "deeper")
    (tree / "gone.png").symlink_to(tmp_path / "missing.png")
    Image.fromarray(kodim23_rgb[:40, :56]).save(tree / "d.jfif", format="JPEG")
    (tree / "raw.dng").write_bytes(b"a raw file")
    (tree / "locked").mkdir()
    Image.fromarray(kodim23_rgb[:32, :32]).save(tree / "locked" / "e.png")
    _refuse_stat_under(monkeypatch, tree / "locked")
    out = tree / "coded"
    assert main("compress", tree, "-o", out, "--model", "tiny", "-q") == 10
    captured = capsys.readouterr()
    assert all_files(out) == ["a.edc", "d.edc", "day2/c.edc", "sub/deeper/b.edc"]
    assert "4 written, 0 skipped (existing), 5 failed" in captured.out
    assert "left alone: 2 file(s) that are not images by their names (.dng 1, .txt 1)" in captured.out
    assert "left alone: 2 link(s) to a folder walked already under another name" in captured.out
    failed = sorted(line for line in captured.err.splitlines() if line.startswith("failed: "))
    assert failed == [f"failed: {tree / 'day2' / 'back'}: a link back up the tree ({tree}): not walked",
                      f"failed: {tree / 'gone.png'}: a broken symbolic link",
                      f"failed: {tree / 'locked' / 'e.png'}: cannot read: Permission denied",
                      f"failed: {tree / 'parent'}: a link back up the tree ({tmp_path}): not walked",
                      f"failed: {tree / 'sub' / 'up'}: a link back up the tree ({tree}): not walked"]
    assert main("compress", tree, "-o", out, "--model", "tiny", "-q", "--skip-existing") == 10
    assert "0 written, 4 skipped (existing), 5 failed" in capsys.readouterr().out
    assert all_files(out) == ["a.edc", "d.edc", "day2/c.edc", "sub/deeper/b.edc"]  # no coded/coded/


def test_a_folder_of_masks_inside_the_input_is_no_input(tree, kodim23_rgb, tmp_path, capsys, monkeypatch):
    """Masks kept beside the photos were coded as photos; a mask folder that cannot be searched
    stopped the run at its image (internal error) instead of failing that image alone."""
    (tree / "sub" / "corrupt.png").unlink()
    (tree / "sub" / "anim.png").unlink()
    masks = tree / "masks"
    (masks / "sub" / "deeper").mkdir(parents=True)
    Image.new("L", (96, 64), 255).save(masks / "a.png")
    Image.new("L", (64, 64), 255).save(masks / "sub" / "deeper" / "b.png")
    Image.fromarray(kodim23_rgb[:64, :64]).save(tree / "z.png")  # after b.png: still coded
    _refuse_stat_under(monkeypatch, masks / "sub")
    out = tmp_path / "out"
    assert main("compress", tree, "-o", out, "--model", "tiny", "-q", "--roi-mask", masks) == 10
    captured = capsys.readouterr()
    assert all_files(out) == ["a.edc", "z.edc"]
    assert "2 written, 0 skipped (existing), 1 failed" in captured.out
    assert f"failed: {tree / 'sub' / 'deeper' / 'b.png'}: cannot read its mask" in captured.err
    assert "qlat" in Container.from_bytes((out / "a.edc").read_bytes()).extras  # its mask was read
    assert "Traceback" not in captured.err


def test_folder_name_collision_is_not_silent(kodim23_rgb, tmp_path, capsys):
    """photo.png and photo.jpg both map to photo.edc: a run must not report both as written while
    one output silently replaced the other (with --force)."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(kodim23_rgb[:64, :64]).save(src / "photo.png")
    Image.fromarray(kodim23_rgb[64:128, :64]).save(src / "photo.jpg")
    out = tmp_path / "out"
    code = main("compress", src, "-o", out, "--model", "tiny", "-q", "--force")
    captured = capsys.readouterr()
    outputs = all_files(out)
    written = int(re.search(r"(\d+) written", captured.out)[1])
    assert written == len(outputs) or code != 0, (code, captured.out, outputs)
    # photo.png's full name photo.png.edc is photo.png.jpg's plain one: that one keeps its full name too
    Image.fromarray(kodim23_rgb[:32, :48]).save(src / "photo.png.jpg")
    assert main("compress", src, "-o", out, "--model", "tiny", "-q", "--force") == 0
    assert "3 written" in capsys.readouterr().out
    assert all_files(out) == ["photo.jpg.edc", "photo.png.edc", "photo.png.jpg.edc"]
    sizes = {name: edgecodec.read_header((out / name).read_bytes()).width for name in all_files(out)}
    assert sizes == {"photo.jpg.edc": 64, "photo.png.edc": 64, "photo.png.jpg.edc": 48}


def test_outputs_follow_the_umask(small_png, tmp_path):
    mask = os.umask(0o022)
    try:
        assert main("compress", small_png, "-o", tmp_path / "m.edc", "--model", "tiny") == 0
        assert main("decompress", tmp_path / "m.edc", "-o", tmp_path / "m.png") == 0
    finally:
        os.umask(mask)
    for name in ("m.edc", "m.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.edc", "m.png", "small.png"]


def test_grayscale_round_trip_writes_grayscale_png(kodim23_rgb, tmp_path, capsys):
    src = tmp_path / "g.png"
    Image.fromarray(kodim23_rgb[:64, :64]).convert("L").save(src)
    assert main("compress", src, "-o", tmp_path / "g.edc", "--model", "tiny") == 0
    assert main("decompress", tmp_path / "g.edc", "-o", tmp_path / "g_out.png") == 0
    assert "64x64 L" in capsys.readouterr().out
    with Image.open(tmp_path / "g_out.png") as img:
        assert img.mode == "L" and img.size == (64, 64)
    # WebP has no grayscale mode: the line names what the file holds (it said L for an RGB file)
    assert main("decompress", tmp_path / "g.edc", "-o", tmp_path / "g_out.webp") == 0
    assert "64x64 RGB" in capsys.readouterr().out
    with Image.open(tmp_path / "g_out.webp") as img:
        assert img.mode == "RGB"


def test_stream_of_unknown_model_exits_9(small_edc, tmp_path, capsys):
    c = Container.from_bytes(small_edc.read_bytes())
    other = tmp_path / "other.edc"
    other.write_bytes(Container(dataclasses.replace(c.header, model="not-installed"), c.streams).to_bytes())
    assert main("decompress", other, "-o", tmp_path / "other.png") == 9
    assert_one_error_line(capsys.readouterr().err, "not-installed")


def test_internal_errors_are_one_line(small_edc, capsys, monkeypatch):
    def boom(args):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(cli, "cmd_info", boom)
    monkeypatch.delenv("EDGECODEC_DEBUG", raising=False)
    assert main("info", small_edc) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("edgecodec: internal error: RuntimeError: simulated failure")
    monkeypatch.setenv("EDGECODEC_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main("info", small_edc)


def test_models_ignores_missing_model_folders(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", os.pathsep.join([str(tmp_path / "nope"), os.environ["EDGECODEC_MODEL_PATH"]]))
    assert main("models") == 0
    out = capsys.readouterr().out
    assert SHIPPED in out and "tiny" in out


def test_train_finds_the_shipped_configs_by_name_anywhere(tmp_path, capsys, monkeypatch):
    """An installed edgecodec (a wheel) has no configs/ folder: the README's `--config
    configs/crb.yaml` was "not found" outside a checkout, and the edge/ configs' warm start
    (train.init_from=edgecodec/weights/...) as well. Names and the README's paths find the shipped
    configs from any folder; a file of that path, where there is one, comes first; a folder is
    refused in one line (it was an internal error)."""
    from edgecodec.train.config import CONFIG_DIR, in_package, load_config, resolve_config, shipped_training_configs
    from edgecodec.zoo import PACKAGE_WEIGHTS

    monkeypatch.chdir(tmp_path)
    assert {"cae", "crb", "gcrb", "edge/fidelity-context", "original/gcrb"} <= set(shipped_training_configs())
    for given in ("crb", "configs/crb.yaml", "./configs/crb.yaml", "crb.yaml"):
        assert resolve_config(given) == CONFIG_DIR / "crb.yaml", given
    assert load_config("edge/fidelity-context")["model"] == load_config(CONFIG_DIR / "edge" / "fidelity-context.yaml")["model"]
    weights = load_config("edge/fidelity-context")["train"]["init_from"]
    assert in_package(weights) == PACKAGE_WEIGHTS / "fidelity.safetensors" and not Path(weights).exists()
    (tmp_path / "configs").mkdir()
    own = _text(tmp_path / "configs" / "crb.yaml", "name: mine\n")
    assert resolve_config("configs/crb.yaml") == Path("configs/crb.yaml") and own.is_file()
    assert load_config("configs/crb.yaml")["name"] == "mine"
    with pytest.raises(FileNotFoundError, match="nor a shipped config: cae, crb"):
        resolve_config("configs/nosuch.yaml")
    assert main("train", "--config", "nosuch", "--out", tmp_path / "run") == 2
    assert_one_error_line(capsys.readouterr().err, "not found: nosuch (no such file, nor a shipped config")
    (tmp_path / "runs" / "mine").mkdir(parents=True)  # a folder, not a config
    assert main("train", "--config", "runs/mine", "--out", tmp_path / "run") == 2
    assert_one_error_line(capsys.readouterr().err, "--config runs/mine is a folder")
    assert not (tmp_path / "run").exists()
    # a shipped name reaches the trainer: this one stops at the data folder, which is missing here
    assert main("train", "--config", "gcrb", "--data", tmp_path / "none", "--out", tmp_path / "run") == 2
    assert_one_error_line(capsys.readouterr().err, "data folder")


def test_the_package_data_holds_every_shipped_config():
    """The configs reach a wheel only through pyproject's package-data patterns: a config in a
    folder they miss would be in the checkout and absent where edgecodec is installed."""
    import tomllib

    from edgecodec.train.config import CONFIG_DIR

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["edgecodec"]
    package = CONFIG_DIR.parent
    packaged = {path for pattern in patterns for path in package.glob(pattern)}
    configs = set(CONFIG_DIR.rglob("*.yaml"))
    assert configs and configs <= packaged, sorted(map(str, configs - packaged))


def test_train_refuses_bad_configs_before_writing(tmp_path, capsys):
    """A training that cannot start says why in one line, exits 2 and leaves no run folder: a
    missing config, data folder or warm-start file, an unknown model, a zero batch, a config or an
    override that is not YAML or not shaped like one, an --out that is a file."""
    data = tmp_path / "photos"
    data.mkdir()
    rng = np.random.RandomState(0)
    for i in range(2):
        Image.fromarray(rng.randint(0, 256, (96, 96, 3), dtype=np.uint8)).save(data / f"{i}.png")
    config = "configs/cae.yaml"
    cases = {
        "no-config": (["--config", tmp_path / "none.yaml"], "none.yaml"),
        "no-data": (["--config", config, "--data", tmp_path / "none"], "none"),
        "model": (["--config", config, "--data", data, "model.config=no-such"], "no-such"),
        "batch": (["--config", config, "--data", data, "train.batch_size=0"], "batch_size"),
        "init": (["--config", config, "--data", data, f"train.init_from={tmp_path / 'none.pt'}"], "none.pt"),
        "yaml": (["--config", _text(tmp_path / "bad.yaml", "model: [\n")], "not valid YAML"),
        "list": (["--config", _text(tmp_path / "list.yaml", "- a\n- b\n")], "mapping of sections"),
        "section": (["--config", _text(tmp_path / "section.yaml", "model: 5\n")], "model=5"),
        "override-yaml": (["--config", config, "--data", data, "train.lr=["], "train.lr=["),
        "override-section": (["--config", config, "--data", data, "train.lr.x=1"], "lr is a value"),
        "steps": (["--config", config, "--data", data, "train.steps=-5"], "train.steps"),
        "log_every": (["--config", config, "--data", data, "train.log_every=0"], "train.log_every"),
        "threads": (["--config", config, "--data", data, "train.threads=0"], "train.threads"),
        "max_seconds": (["--config", config, "--data", data, "train.max_seconds=-1"], "max_seconds"),
        "val_fraction": (["--config", config, "--data", data, "data.val_fraction=2"], "val_fraction"),
        # 0 trained the whole run at lr/10 from its first step
        "lr_drop_at": (["--config", config, "--data", data, "train.lr_drop_at=0"], "train.lr_drop_at=0"),
        "scale": (["--config", config, "--data", data, "data.scale=[2,1]"], "data.scale"),
        "crop": (["--config", config, "--data", data, "data.crop=0"], "data.crop"),
        "empty-steps": (["--config", config, "--data", data, "train.steps="], "train.steps is empty"),
        "empty-lr": (["--config", config, "--data", data, "train.lr="], "train.lr is empty"),
        "empty-crop": (["--config", config, "--data", data, "data.crop="], "data.crop is empty"),
        "whole": (["--config", config, "--data", data, "train.batch_size=2.5"], "expected a whole number"),
        "lambdas": (["--config", config, "--data", data, "train.lambdas=[a, 0.1]"], "train.lambdas[0]='a'"),
        "betas": (["--config", config, "--data", data, "train.betas=0.9"], "expected a list of numbers"),
        "flag": (["--config", config, "--data", data, "train.tensorboard=maybe"], "expected true or false"),
        # YAML 1.1's yes / no / on / off were read as booleans: only true / false are
        "flag-yes": (["--config", config, "--data", data, "train.tensorboard=yes"], "expected true or false"),
        "flag-off": (["--config", config, "--data", data, "train.tensorboard=off"], "expected true or false"),
        # a model flag given no: the text 'no', which is true (it turned the feature on)
        "model-flag": (["--config", "configs/gcrb.yaml", "--data", data, "model.overrides.disc_conditional=no"],
                       "disc_conditional='no': expected true or false"),
        # Adam takes two: one was a bare IndexError from inside torch after the checks
        "betas-one": (["--config", config, "--data", data, "train.betas=[0.9]"], "must be two numbers"),
        "disc_betas-three": (["--config", "configs/gcrb.yaml", "--data", data, "gan.disc_betas=[0.5,0.9,0.99]"],
                             "must be two numbers"),
        "text": (["--config", config, "--data", data, "train.distortion="], "train.distortion is empty"),
        "val_images": (["--config", config, "--data", data, "data.val_images=0"], "data.val_images=0"),
        "max_seconds-text": (["--config", config, "--data", data, "train.max_seconds='3600'"], "train.max_seconds='3600'"),
        "null-section": (["--config", _text(tmp_path / "null.yaml", "train:\n")], "train=None: expected a section"),
        # a negative clip norm reversed the gradients (trained uphill), a negative perceptual weight
        # dropped the LPIPS term in silence, a negative lpips_crop failed inside LPIPS at the first step
        "grad_clip": (["--config", config, "--data", data, "train.grad_clip=-1"],
                      "train.grad_clip=-1 must be at least 0"),
        "disc_grad_clip": (["--config", "configs/gcrb.yaml", "--data", data, "gan.disc_grad_clip=-1"],
                           "gan.disc_grad_clip=-1"),
        "perceptual_weight": (["--config", "configs/gcrb.yaml", "--data", data, "gan.perceptual_weight=-0.5"],
                              "gan.perceptual_weight=-0.5"),
        "lpips_crop": (["--config", "configs/gcrb.yaml", "--data", data, "gan.lpips_crop=-8"], "gan.lpips_crop=-8"),
    }
    for name, (args, fragment) in cases.items():
        out = tmp_path / "runs" / name
        assert main("--threads", 1, "train", *args, "--out", out, "--steps", 1) == 2, name
        assert_one_error_line(capsys.readouterr().err, fragment)
        assert not out.exists(), name
    (tmp_path / "a-file").write_text("x")
    assert main("--threads", 1, "train", "--config", config, "--data", data, "--out", tmp_path / "a-file") == 2
    assert_one_error_line(capsys.readouterr().err, "is a file")


def _text(path, text: str):
    path.write_text(text)
    return path


def test_train_keeps_a_config_written_where_the_run_writes_its_own(tmp_path, capsys):
    """`--config RUN/config.yaml --out RUN`: the run wrote its resolved config.yaml over the user's
    file (comments and all) before training; refused, the file left as it was."""
    run = tmp_path / "run"
    run.mkdir()
    mine = _text(run / "config.yaml", "# my experiment\n" + (REPO / "edgecodec" / "configs" / "cae.yaml").read_text())
    before = mine.read_bytes()
    assert main("train", "--config", mine, "--out", run, "train.steps=1") == 2
    assert_one_error_line(capsys.readouterr().err, "is the config.yaml the run writes", "keep your config elsewhere")
    assert mine.read_bytes() == before and sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_train_refuses_warm_start_files_that_are_not_weights(tmp_path, capsys):
    """train.init_from (or gan.disc_init_from) naming a folder, a number, a damaged .safetensors,
    a file that is no checkpoint or a torch file of something else was an internal error (a
    TypeError, IsADirectoryError, SafetensorError, KeyError, or torch's ten-line unpickling
    message); a typo'd train.metrics_perceptual turned the metric off mid-run with a warning. Each
    is one usage line before any run folder is made."""
    data = tmp_path / "photos"
    data.mkdir()
    rng = np.random.RandomState(0)
    for i in range(2):
        Image.fromarray(rng.randint(0, 256, (96, 96, 3), dtype=np.uint8)).save(data / f"{i}.png")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    torch.save([1, 2], tmp_path / "list.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "weights.pt")  # tensors, but no training checkpoint
    config, gcrb = "configs/cae.yaml", "configs/gcrb.yaml"
    cases = {
        "number": (config, "train.init_from=5", "train.init_from=5"),
        "list": (config, "train.init_from=[a.pt]", "expected the path of a file"),
        "folder": (config, f"train.init_from={tmp_path}", "train.init_from="),
        "safetensors": (config, f"train.init_from={tmp_path / 'bad.safetensors'}", "not a .safetensors model"),
        "garbage": (config, f"train.init_from={tmp_path / 'bad.pt'}", "cannot load checkpoint"),
        "torch-list": (config, f"train.init_from={tmp_path / 'list.pt'}", "not a training checkpoint"),
        "torch-dict": (config, f"train.init_from={tmp_path / 'weights.pt'}", "not a training checkpoint"),
        "disc-folder": (gcrb, f"gan.disc_init_from={tmp_path}", "gan.disc_init_from="),
        "disc-number": (gcrb, "gan.disc_init_from={a: 1}", "expected the path of a file"),
        "disc-dict": (gcrb, f"gan.disc_init_from={tmp_path / 'weights.pt'}", "not a training checkpoint"),
        "metric": (config, "train.metrics_perceptual=stlpips-alx", "train.metrics_perceptual='stlpips-alx'"),
    }
    for name, (cfg, override, fragment) in cases.items():
        out = tmp_path / "runs" / name
        assert main("--threads", 1, "train", "--config", cfg, "--data", data, override, "--out", out,
                    "--steps", 1) == 2, name
        assert_one_error_line(capsys.readouterr().err, fragment)
        assert not out.exists(), name


def test_export_model_refuses_a_missing_previous_card_before_writing(tmp_path, capsys):
    out = tmp_path / "models"
    assert main("export-model", tmp_path / "run", "--name", "m", "--out", out,
                "--previous", tmp_path / "none.json") == 2
    assert_one_error_line(capsys.readouterr().err, "none.json")
    assert not out.exists()


def test_export_model_refuses_to_replace_a_model_without_force(tmp_path, capsys):
    out = tmp_path / "models"
    out.mkdir()
    (out / "m.safetensors").write_bytes(b"weights that .edc files were written with")
    assert main("export-model", tmp_path / "run", "--name", "m", "--out", out) == 8
    assert_one_error_line(capsys.readouterr().err, "--force")
    assert (out / "m.safetensors").read_bytes() == b"weights that .edc files were written with"
    # With --force it goes on to the export (which fails here: the run folder has no checkpoint).
    assert main("export-model", tmp_path / "run", "--name", "m", "--out", out, "--force") == 2
    assert_one_error_line(capsys.readouterr().err, "checkpoint")


def test_a_broken_model_folder_entry_breaks_only_itself(small_png, tmp_path, capsys, monkeypatch):
    """A damaged card or weights file on the model path is reported where it is used; every other
    model (and `models`) keeps working. Before, one unreadable card failed every command."""
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "broken.json").write_text("{not json")
    (junk / "broken.safetensors").write_bytes(b"x")
    (junk / "garbage.json").write_text((SHIPPED_WEIGHTS / f"{SHIPPED}.json").read_text())
    (junk / "garbage.safetensors").write_bytes(b"not safetensors")
    (junk / "nocfg.json").write_text("{}")
    (junk / "nocfg.safetensors").write_bytes((SHIPPED_WEIGHTS / f"{SHIPPED}.safetensors").read_bytes())
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", os.pathsep.join([str(junk), os.environ["EDGECODEC_MODEL_PATH"]]))
    assert main("models") == 0
    out = capsys.readouterr().out
    assert "broken: cannot be used:" in out and "broken.json" in out and "tiny" in out
    assert main("models", "--json") == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert "broken.json" in listed["broken"]["problem"] and listed["tiny"]["problem"] is None
    assert main("compress", small_png, "-o", tmp_path / "ok.edc", "--model", "tiny") == 0
    capsys.readouterr()
    # a card beside weights it does not describe (another model's, or damaged: its weights_sha256 differs)
    # was listed with the card's figures as usable
    # with a warning (it is used as its weights allow: this one fails to load below, exit 9)
    assert "garbage: " in out and "Warning: " in out and "is not the weights file its card describes" in out
    assert "is not the weights file its card describes" in listed["garbage"]["warning"]
    assert listed["garbage"]["problem"] is None and listed["tiny"]["warning"] is None
    # listed as "None transforms, None prior" (its problem null), while compress refuses it (exit 9)
    assert "nocfg: cannot be used:" in out and "nocfg.json is not a model card (it has no model config)" in out
    assert "it has no model config" in listed["nocfg"]["problem"]
    for name, fragment in (("broken", "broken.json"), ("garbage", "garbage.safetensors"), ("nocfg", "no model config")):
        assert main("compress", small_png, "-o", tmp_path / f"{name}.edc", "--model", name) == 9, name
        assert_one_error_line(capsys.readouterr().err, fragment)
        assert not (tmp_path / f"{name}.edc").exists()


def test_export_model_refuses_what_cannot_work_before_registering_a_model(tmp_path, capsys):
    """A --kodak sweep that cannot run (qualities outside [0, 1], none, a missing or empty folder)
    used to fail only after the model was written and registered, so the next try needed --force;
    a damaged checkpoint was an internal error with torch's 10-line message, and an --out that is a
    file an internal FileExistsError."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "ckpt-00000002.pt").write_bytes(b"not a checkpoint")
    out = tmp_path / "models"
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    (tmp_path / "empty").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(kodak / "a.png")
    for args, fragment in (
            (["--kodak", kodak, "--qualities", "0.5,2"], "got 2.0"),
            (["--kodak", kodak, "--qualities", ""], "--qualities"),
            (["--kodak", tmp_path / "none"], "does not exist"),
            (["--kodak", tmp_path / "empty"], "no images")):
        assert main("export-model", run_dir, "--name", "m", "--out", out, *args) == 2, args
        assert_one_error_line(capsys.readouterr().err, fragment)
        assert not out.exists(), args
    assert main("export-model", run_dir, "--name", "m", "--out", out) == 2
    assert_one_error_line(capsys.readouterr().err, "cannot load checkpoint", "ckpt-00000002.pt")
    assert not out.exists()
    model = make_tiny(0)  # a real checkpoint of a tiny model, and its run's config
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict(), "step": 2},
               run_dir / "ckpt-00000002.pt")
    whole = (run_dir / "ckpt-00000002.pt").read_bytes()
    (run_dir / "ckpt-00000002.pt").write_bytes(whole[:len(whole) // 2])  # truncated: torch's reason
    assert main("export-model", run_dir, "--name", "m", "--out", out) == 2  # is five sentences long
    err = capsys.readouterr().err
    assert_one_error_line(err, "cannot load checkpoint", "central directory")
    assert "internal miniz error" not in err
    (run_dir / "ckpt-00000002.pt").write_bytes(whole)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(load_config(None)))
    out.write_text("a file")
    assert main("export-model", run_dir, "--name", "m", "--out", out) == 11
    assert_one_error_line(capsys.readouterr().err, "a file is in its place")
    assert out.read_text() == "a file"


def test_export_model_registers_a_model_whole_and_keeps_shipped_names(tmp_path, capsys, monkeypatch):
    """export-model wrote NAME.safetensors and its card before the --kodak sweep: an image the sweep
    could not read failed the command with the model registered (and a Ctrl+C meanwhile left the
    weights without a card), so the next try needed --force. It now works in a hidden folder and
    moves the model in at the end. A shipped model's name, exported into a folder the models are
    looked up in, hid the shipped model: refused without --force."""
    run_dir = tmp_path / "run"
    make_tiny_run(run_dir)
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(kodak / "a.png")
    (kodak / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n damaged")
    out = tmp_path / "models"
    out.mkdir()
    model_path = os.environ["EDGECODEC_MODEL_PATH"]
    assert main("export-model", run_dir, "--name", "m", "--out", out, "--kodak", kodak, "-q") == 3
    assert_one_error_line(capsys.readouterr().err, "b.png")
    assert not list(out.iterdir())
    (kodak / "b.png").unlink()
    assert main("export-model", run_dir, "--name", "m", "--out", out, "--kodak", kodak, "-q",
                "--qualities", "0.5") == 0
    assert sorted(p.name for p in out.iterdir()) == ["m.json", "m.safetensors"]
    card = json.loads((out / "m.json").read_text())
    assert card["kodak"]["points"][0]["images"] == 1
    assert card["weights_sha256"] == __import__("hashlib").sha256((out / "m.safetensors").read_bytes()).hexdigest()
    assert os.environ["EDGECODEC_MODEL_PATH"] == model_path  # the sweep's path was put back
    # --force over it, interrupted between moving the card and the weights in: the model as it was.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_replace = os.replace

    def interrupted(src, dst):
        if Path(dst) == out / "m.safetensors" and ".export" in str(src) and "replaced-" not in str(src):
            raise KeyboardInterrupt
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", interrupted)
    assert main("export-model", run_dir, "--name", "m", "--out", out, "--force", "--summary", "new") == 130
    monkeypatch.setattr(os, "replace", real_replace)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # A name that is no model name is refused before any folder is made with it.
    capsys.readouterr()
    for bad in ("a/b", "../x", "./../../x"):
        assert main("export-model", run_dir, "--name", bad, "--out", tmp_path / "new" / "sub") == 2, bad
        assert_one_error_line(capsys.readouterr().err, "invalid model name")
    assert not (tmp_path / "new").exists() and not (tmp_path / "x").exists()

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", os.pathsep.join([str(out), os.environ["EDGECODEC_MODEL_PATH"]]))
    for where in ([], ["--out", out]):  # the user model folder, a folder on the model path
        capsys.readouterr()
        assert main("export-model", run_dir, "--name", SHIPPED, *where) == 8, where
        assert_one_error_line(capsys.readouterr().err, f"{SHIPPED!r} is a shipped model")
    assert not (tmp_path / "data").exists() and not (out / f"{SHIPPED}.json").exists()
    assert main("export-model", run_dir, "--name", SHIPPED, "--out", tmp_path / "elsewhere") == 0
    assert main("export-model", run_dir, "--name", SHIPPED, "--force") == 0
    assert (tmp_path / "data" / "edgecodec" / "models" / f"{SHIPPED}.safetensors").is_file()


@pytest.mark.parametrize("args", [["--min-level", "nan"], ["--qualities", "abc"], ["--qualities", "0,nan"]])
def test_export_model_refuses_bad_numbers_before_exporting(tmp_path, capsys, args):
    """A NaN min_level would have been exported into a model whose every gain is NaN."""
    with pytest.raises(SystemExit) as info:
        main("export-model", tmp_path / "run", "--name", "m", "--out", tmp_path / "models", *args)
    assert info.value.code == 2
    assert args[0] in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "models").exists()


def test_metrics_measures_files_of_any_codec_against_the_original(small_png, small_edc, tmp_path, capsys):
    """`edgecodec metrics ORIGINAL FILES`: each file's bytes and its decoded image's quality, as
    `edgecodec eval` measures them (the same functions on the same RGB arrays)."""
    from edgecodec.codec.api import decode_array
    from edgecodec.eval.runner import STLPIPS
    from edgecodec.metrics import ms_ssim, psnr, ssim

    reference = np.array(Image.open(small_png))
    jpeg = tmp_path / "small.jpg"
    Image.fromarray(reference).save(jpeg, quality=40)
    assert main("metrics", small_png, small_edc, jpeg, "--json", "--st-lpips") == 0
    rows = {Path(r["file"]).name: r for r in json.loads(capsys.readouterr().out)}
    lpips = STLPIPS()
    for path, decoded in ((small_edc, decode_array(small_edc.read_bytes())[0]), (jpeg, np.array(Image.open(jpeg)))):
        row = rows[path.name]
        assert row["bytes"] == path.stat().st_size and row["bpp"] == 8 * row["bytes"] / (96 * 64)
        assert row["psnr"] == psnr(reference, decoded) and row["ssim"] == ssim(reference, decoded)
        assert row["ms_ssim"] is None and math.isnan(ms_ssim(reference, decoded))  # 96 x 64: too small for it
        assert row["st_lpips"] == pytest.approx(lpips(reference, decoded), abs=1e-6)
    # Of several files, one of another size or one that cannot be read is named on stderr after the
    # others are printed, exit 10 as info's (was 3 for all); with --json it has an entry with its error.
    other = tmp_path / "other.png"
    Image.fromarray(reference[:32]).save(other)
    missing = tmp_path / "missing.png"
    assert main("metrics", small_png, other, jpeg, missing) == 10
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{jpeg}: {jpeg.stat().st_size:,} bytes")
    assert captured.err.splitlines() == [f"failed: {other} is 96x32, the reference 96x64",
                                         f"failed: no such file: {missing}"]
    assert main("metrics", small_png, other, jpeg, "--json") == 10
    listed = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in listed] == [str(other), str(jpeg)] and "96x32" in listed[0]["error"]
    # ST-LPIPS of images too small for its trunk (under 21 pixels a side) is n/a, as MS-SSIM's is,
    # not an internal error; identical images' PSNR is inf, not n/a.
    thumb = tmp_path / "thumb.png"
    Image.fromarray(reference[:20, :20]).save(thumb)
    assert main("metrics", thumb, thumb, "--st-lpips") == 0
    assert capsys.readouterr().out.endswith("PSNR inf dB, SSIM 1.0000, MS-SSIM n/a, ST-LPIPS n/a\n")
    # A damaged .edc file is named with the container's reason, not "not an image Pillow can read".
    damaged = tmp_path / "damaged.edc"
    data = bytearray(small_edc.read_bytes())
    data[-3] ^= 0xFF
    damaged.write_bytes(bytes(data))
    # One file fails with its own exit code, as decompress's (every .edc failure was 3): damaged 4,
    # a newer format version 5.
    assert main("metrics", small_png, damaged) == 4
    assert_one_error_line(capsys.readouterr().err, "damaged.edc: corrupted .edc file: checksum mismatch")
    newer = tmp_path / "newer.edc"
    newer.write_bytes(small_edc.read_bytes()[:4] + bytes([99]) + small_edc.read_bytes()[5:])
    assert main("metrics", small_png, newer) == 5
    assert_one_error_line(capsys.readouterr().err, "newer.edc")


@pytest.mark.parametrize("suffix", [".gif", ".tif"])
def test_an_animated_or_multi_page_input_is_one_clear_line_exit_3(tmp_path, capsys, suffix):
    """Several frames: the codec refuses to code them (exit 3, a bad input image), in one line that
    says so and what to do, not that it "cannot read" the file."""
    frames = [Image.new("RGB", (32, 24), colour) for colour in ("red", "blue")]
    src = tmp_path / f"two{suffix}"
    frames[0].save(src, save_all=True, append_images=frames[1:])
    assert main("compress", src, "-o", tmp_path / "two.edc", "--model", "tiny") == 3
    fmt = "GIF" if suffix == ".gif" else "TIFF"
    line = assert_one_error_line(capsys.readouterr().err)
    assert line == (f"edgecodec: error: {src}: 2 frames (an animated or multi-page {fmt}); edgecodec codes one "
                    "picture: extract the frame you want first"), line
    assert not (tmp_path / "two.edc").exists()


def test_metrics_says_it_reads_files_not_standard_input(small_png, small_edc, capsys):
    """`metrics - a.edc` said "no such file: -" (exit 3), as if - named a file, where compress,
    decompress and info read standard input; metrics does not: a usage error saying so."""
    assert main("metrics", "-", small_edc) == 2
    assert_one_error_line(capsys.readouterr().err, "metrics reads files: give the original's path, not -")
    assert main("metrics", small_png, small_edc, "-") == 2
    assert_one_error_line(capsys.readouterr().err, "metrics reads files: give the coded or decoded files' paths, not -")


def test_outputs_under_a_file_exit_11_and_plots_name_what_they_write(tmp_path, capsys):
    """An output folder that is a file, or under one, was an internal error (FileExistsError,
    NotADirectoryError; exit 1) for eval, export onnx, train and plot-training, and export onnx -o
    /proc/x named its temporary folder. plot-training -o NAME without a suffix wrote NAME.png
    (replacing that file) and said "wrote NAME"; a damaged log's error did not name the file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.RandomState(0)
    for i in range(2):
        Image.fromarray(rng.randint(0, 256, (64, 64, 3), dtype=np.uint8)).save(images / f"{i}.png")
    cases = {
        "eval": (["eval", images, "--out", blocker, "--models", "none", "--codecs", "jpeg", "--sweep", "jpeg=50",
                  "-q", "--no-st-lpips"], "a file is in its place"),
        "export": (["export", "onnx", "--model", "tiny", "-o", blocker / "export"], "a file is on its path"),
        "train": (["train", "--config", REPO / "edgecodec" / "configs" / "crb.yaml", "--data", images, "--out", blocker / "run",
                   "--steps", 1, "model.overrides={channels: 16, latent_channels: 32, hyper_channels: 16}",
                   "data.crop=64", "data.val_crop=64", "train.tensorboard=false"], "a file is on its path"),
    }
    for name, (args, fragment) in cases.items():
        assert main("--threads", 1, *args) == 11, name
        assert_one_error_line(capsys.readouterr().err, fragment)
        assert blocker.read_text() == "x"
    run = tmp_path / "run"
    run.mkdir()
    (run / "val.csv").write_text("step,val_psnr_q0.5,val_bpp_q0.5\n10,20.5,0.4\n20,21.0,0.38\n")
    assert main("plot-training", run, "-o", blocker / "chart.png") == 11
    assert_one_error_line(capsys.readouterr().err, "a file is on its path")
    (tmp_path / "chart.png").write_bytes(b"an earlier chart")
    assert main("plot-training", run, "-o", tmp_path / "chart") == 2
    assert_one_error_line(capsys.readouterr().err, ".png")
    assert (tmp_path / "chart.png").read_bytes() == b"an earlier chart" and not (tmp_path / "chart").exists()
    assert main("plot-training", run, "-o", tmp_path / "chart.svg") == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'chart.svg'}\n"
    assert (tmp_path / "chart.svg").read_bytes().startswith(b"<?xml")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    (run / "val.csv").write_text("step,val_psnr_q0.5\n10,x\n")
    assert main("plot-training", run, "-o", tmp_path / "chart.png", "--force") == 2
    assert_one_error_line(capsys.readouterr().err, "val.csv: not a training log")


def test_a_card_with_fields_of_the_wrong_type_breaks_only_itself(tmp_path, capsys, monkeypatch):
    """A card that is a JSON object but whose config, bpp_range, parameters or summary has the
    wrong type failed `models` and `models --json` as a whole (an internal AttributeError)."""
    junk = tmp_path / "junk"
    junk.mkdir()
    weights = (SHIPPED_WEIGHTS / f"{SHIPPED}.safetensors").read_bytes()
    card = json.loads((SHIPPED_WEIGHTS / f"{SHIPPED}.json").read_text())
    for name, field, value in (("cfg", "config", 5), ("bpp", "bpp_range", "abc"), ("params", "parameters", 5),
                               ("counts", "parameters", {"encoder": "many"}), ("summ", "summary", ["x"])):
        (junk / f"{name}.json").write_text(json.dumps({**card, field: value}))
        (junk / f"{name}.safetensors").write_bytes(weights)
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", os.pathsep.join([str(junk), os.environ["EDGECODEC_MODEL_PATH"]]))
    assert main("models") == 0
    out = capsys.readouterr().out
    for name in ("cfg", "bpp", "params", "counts", "summ"):
        assert f"{name}: cannot be used: {junk / name}.json is not a model card" in out, name
    assert "tiny" in out and SHIPPED in out
    assert main("models", "--json") == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert "config is not an object" in listed["cfg"]["problem"] and listed[SHIPPED]["problem"] is None


def test_ctrl_c_while_the_parser_imports_is_one_line(monkeypatch, capsys):
    """Ctrl+C in the first half second (build_parser imports the subcommands' modules) is exit 130
    and one line, as later (it was a KeyboardInterrupt traceback from deep in an import)."""
    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main("models") == 130
    assert capsys.readouterr().err == "edgecodec: interrupted\n"


def test_ctrl_c_during_torchs_import_is_held_until_it_is_in(tmp_path, monkeypatch):
    """A Ctrl+C inside torch's import aborted the process (SIGABRT from its pybind11 initialisers):
    the CLI holds it until the module is in, then raises it (exit 130 as anywhere else)."""
    (tmp_path / "slow_native_init.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(0.2)  # the handler runs here: a KeyboardInterrupt would cut the import\n"
        "COMPLETE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        cli._import_holding_signals("slow_native_init")
    assert sys.modules["slow_native_init"].COMPLETE
    assert signal.getsignal(signal.SIGINT) is previous
    del sys.modules["slow_native_init"]
    # A process that ignores SIGINT (a `cmd &` job from a script) keeps ignoring it (it was raised).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cli._import_holding_signals("slow_native_init")
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.modules.pop("slow_native_init", None)


def test_empty_file_names_are_refused(small_png, tmp_path, capsys, monkeypatch):
    """An empty name (`"$IN"` with IN unset) is the current folder to pathlib: compress "" -o OUT
    coded every image under the working folder, and an empty -o wrote the default output, in silence."""
    work = tmp_path / "work"
    work.mkdir()
    Image.open(small_png).save(work / "a.png")
    monkeypatch.chdir(work)
    for args in (["compress", "", "-o", "out"], ["compress", "a.png", "-o", ""],
                 ["decompress", "a.edc", "-o", ""], ["info", "a.edc", ""],
                 # the other file and folder options: an empty one counted as not given (train
                 # --resume "" --config crb started a fresh run in runs/NAME)
                 ["compress", "a.png", "-o", "b.edc", "--roi-mask", ""],
                 ["decompress", "a.edc", "-o", "b.png", "--backend", "onnx", "--onnx-dir", ""],
                 ["train", "--config", "crb", "--resume", ""], ["train", "--config", "crb", "--out", ""],
                 ["train", "--config", ""], ["train", "--config", "crb", "--data", ""],
                 ["export-model", "run", "--name", "x", "--out", ""], ["export", "onnx", "-o", ""],
                 ["export", "onnx", "-o", "x", "--int8", ""]):
        with pytest.raises(SystemExit) as info:
            main(*args)
        assert info.value.code == 2, args
        assert_one_error_line(capsys.readouterr().err, "is empty")
    assert sorted(p.name for p in work.iterdir()) == ["a.png"]  # nothing written


def test_a_file_of_a_model_not_installed_says_how_to_install_it(small_edc, tmp_path, capsys):
    """decompress of a file whose model is not installed said "unknown model 'X'; available: ...",
    as for a mistyped --model: not that the file needs that model, nor how to install it."""
    container = Container.from_bytes(small_edc.read_bytes())
    other = tmp_path / "other.edc"
    other.write_bytes(dataclasses.replace(container, header=dataclasses.replace(
        container.header, model="notinstalled")).to_bytes())
    assert main("decompress", other, "-o", tmp_path / "other.png") == 9
    assert_one_error_line(capsys.readouterr().err, "unknown model 'notinstalled'", "not installed here",
                          "notinstalled.safetensors", "EDGECODEC_MODEL_PATH")
    assert not (tmp_path / "other.png").exists()


def test_an_output_named_as_a_folder_is_not_written_as_a_file(small_png, small_edc, tmp_path, capsys):
    """`compress photo.png -o coded/` wrote a file named coded (pathlib drops the final slash);
    decompress said only that the output must be a lossless format."""
    for command, src in (("compress", small_png), ("decompress", small_edc)):
        for output in (f"{tmp_path / 'coded'}/", f"{tmp_path / 'coded'}/."):  # -o coded/. wrote coded too
            assert main(command, src, "-o", output) == 11
            assert_one_error_line(capsys.readouterr().err, "names a folder", "give a file name")
            assert not (tmp_path / "coded").exists()


def test_several_inputs_are_told_to_use_a_folder(small_png, small_edc, tmp_path, capsys):
    """`compress *.png -o coded/` was "unrecognized arguments: b.png", which says nothing of
    compress taking one file or a folder."""
    for command, src in (("compress", small_png), ("decompress", small_edc)):
        with pytest.raises(SystemExit) as info:
            main(command, src, src, "-o", tmp_path / "out")
        assert info.value.code == 2
        assert_one_error_line(capsys.readouterr().err, f"{command}: several inputs", "put the files in a folder")
    with pytest.raises(SystemExit) as info:  # an unknown option is still named as argparse names it
        main("compress", small_png, "--qualty", "3")
    assert info.value.code == 2
    assert_one_error_line(capsys.readouterr().err, "unrecognized arguments: --qualty 3")
    assert not (tmp_path / "out").exists()


def test_standard_output_appended_to_an_input_is_refused(small_png, small_edc, capsys, monkeypatch):
    """`decompress photo.edc -o - >> photo.edc` appended the PNG to the .edc and exited 0: the
    input no longer decoded (checksum mismatch). Standard output is checked against the inputs as
    an -o FILE is."""
    before = {path: path.read_bytes() for path in (small_png, small_edc)}
    for args, stdin, stdout, what in ((["decompress", small_edc, "-o", "-"], None, small_edc, "the input file"),
                                      (["compress", "-", "--model", "tiny"], small_png, small_png,
                                       "the file standard input reads")):
        with open(stdout, "a") as out, open(stdin or os.devnull) as inp:
            monkeypatch.setattr(sys, "stdout", out)
            monkeypatch.setattr(sys, "stdin", inp)
            assert main(*args) == 2
            monkeypatch.undo()
        assert_one_error_line(capsys.readouterr().err, f"standard output is {what}", "choose another output")
    assert {path: path.read_bytes() for path in before} == before


def test_an_output_without_a_suffix_is_told_of_format(small_edc, tmp_path, capsys):
    """decompress -o NAME without a suffix listed the suffixes only, though --format names the format
    of such an output."""
    assert main("decompress", small_edc, "-o", tmp_path / "decoded") == 2
    assert_one_error_line(capsys.readouterr().err, "must be a lossless format", "or give --format")
    assert main("decompress", small_edc, "-o", tmp_path / "decoded.jpg") == 2
    assert "--format" not in capsys.readouterr().err  # a suffix names the format: --format is no help
    assert main("decompress", small_edc, "-o", tmp_path / "decoded", "--format", "png") == 0
    assert Image.open(tmp_path / "decoded").format == "PNG"


def test_a_file_name_with_a_newline_keeps_messages_on_one_line(small_png, tmp_path, capsys):
    """A name holding a newline split the error over two lines (the contract is one line on
    stderr) and the summary line over two; an escape sequence reached the terminal as it was."""
    bad = tmp_path / "not\nan image.png"
    bad.write_text("text\n")
    assert main("compress", bad, "-o", tmp_path / "bad.edc") == 3
    line = assert_one_error_line(capsys.readouterr().err, "not\\nan image.png: not an image")
    assert "\x1b" not in line
    odd = tmp_path / "two\nlines\x1b[2J.png"
    odd.write_bytes(small_png.read_bytes())
    assert main("compress", odd, "-o", tmp_path / "odd.edc", "--model", "tiny") == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "two\\nlines\\x1b[2J.png -> " in out, out


def test_one_line_escapes_every_line_break_and_terminal_control():
    """str.splitlines() also breaks on \\x85, U+2028 and U+2029, and \\x9b is CSI on some terminals."""
    from edgecodec.errors import one_line

    text = one_line("a\nb\x1b[2Jc\x9bd\u2028e\x85f\u2029g é")
    assert len(text.splitlines()) == 1 and text.isprintable()
    assert text == "a\\nb\\x1b[2Jc\\u009bd\\u2028e\\u0085f\\u2029g é"


def test_metrics_failed_lines_stay_one_line(small_png, small_edc, tmp_path, capsys):
    """metrics' failed line named the file with its newline as it was (two lines on stderr)."""
    bad = tmp_path / "not\nan image.webp"
    bad.write_text("text\n")
    assert main("metrics", small_png, small_edc, bad) == 10  # EXIT_PARTIAL: the good file is measured
    err = capsys.readouterr().err
    assert "failed: " in err and len(err.strip().splitlines()) == 1, err
