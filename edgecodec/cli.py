"""The `edgecodec` command line. Errors print one line on stderr and exit non-zero (see EXIT CODES)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import importlib.util
import io
import json
import os
import shlex
import signal
import stat
import sys
import threading
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from .argtypes import (finite_number, fraction, int_at_least, numbers, path_name, positive_number, region,
                       unit_interval)
from .atomic import atomic_path, remove_stale_temps
from .errors import EXIT_PARTIAL, one_line

LOSSLESS_FORMATS = {"png": "PNG", "bmp": "BMP", "tif": "TIFF", "tiff": "TIFF", "ppm": "PPM", "webp": "WEBP"}
# The formats that hold an ICC profile, EXIF and XMP (the others get sRGB pixels and no metadata).
_TAGGED_FORMATS = ("PNG", "TIFF", "WEBP")
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended
STDIO = "-"  # as an input: standard input; as an output: standard output (pipes)
CARD_QUALITIES = "0,0.25,0.5,0.75,1"  # export-model --kodak: the qualities a card measures

EPILOG = """exit codes: 0 ok, 1 internal error, 2 usage, 3 bad input image, 4 corrupted or truncated .edc,
5 .edc from a newer format version, 6 no installed model has the weights of the .edc, 7 image over the
pixel limit, 8 output exists (use --force) or run folder in use, 9 unknown model, 10 some files of a
folder (or of info's or metrics' inputs) failed, 11 output cannot be written, 130 interrupted, 143 terminated (SIGTERM)"""


def _write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write through atomic.atomic_path, so a crash never leaves a half-written output (only,
    after a kill, a hidden temporary file that folder mode removes). Without ``force`` a file
    that appeared meanwhile under the name (another run) is kept."""
    from .errors import OutputExistsError, OutputWriteError

    _check_output(path, force)  # again: the file may have appeared while the output was computed
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a file on its path
        raise OutputWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with atomic_path(path, overwrite=force) as tmp:
            tmp.write_bytes(data)
    except FileExistsError:
        raise OutputExistsError(f"output {path} appeared while it was computed (another run?): kept it; "
                                "use --force to overwrite") from None
    except OSError as exc:  # e.g. a full disk, or a folder where the file should go
        raise OutputWriteError(f"cannot write {path}: {exc.strerror or exc}") from None


def _is_stdio(path: Path) -> bool:
    return str(path) == STDIO


def _read_input(path: Path, max_pixels: int | None, edc: bool = False) -> bytes:
    """The bytes of an input file, or of standard input for "-": an .edc file (``edc``, for
    decompress and info), read no further than its header allows (``container.read_file``), or an
    image, read no further than any image within the pixel limit needs (``read_image_stream``).
    Endless input (`edgecodec info /dev/zero`, an endless pipe) is refused instead of filling the memory."""
    from .codec.container import read_file
    from .errors import InputImageError, UsageError

    if edc:
        read = read_file
    else:  # imageio needs Pillow, which `info` on a lite install (no Pillow) must not import
        from .codec.imageio import read_image_stream
        read = read_image_stream
    if _is_stdio(path):
        if sys.stdin is None:  # the shell closed it (<&-)
            raise UsageError("standard input is closed: pipe the data in (< FILE) or name the input file")
        if sys.stdin.isatty():
            raise UsageError("standard input is a terminal: pipe the data in (< FILE) or name the input file")
        return read(sys.stdin.buffer, "standard input", max_pixels)
    try:
        with open(path, "rb") as f:
            return read(f, str(path), max_pixels)
    except OSError as exc:
        raise InputImageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _check_output(path: Path, force: bool) -> None:
    """Refuse an output before any work: an existing file without --force, a folder, a block
    device or socket, or binary data for a terminal."""
    from .errors import OutputExistsError, OutputWriteError, UsageError

    if _is_stdio(path):
        if sys.stdout is None:  # the shell closed it (>&-)
            raise OutputWriteError("cannot write standard output: it is closed; give -o FILE")
        if sys.stdout.isatty():
            raise UsageError("refusing to write binary data to a terminal: redirect standard output or give -o FILE")
        return
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:  # -o notes.txt/x.edc: refused before the work, not after it
            raise OutputWriteError.making(path, exc) from None
        if exc.errno in (errno.ENOENT, errno.EBADF, errno.ELOOP):  # as Path.exists: nothing there
            if os.path.islink(path) and not force:  # a broken link: the rename would replace it
                raise OutputExistsError(f"{path} exists (a broken symbolic link): pass --force to replace it") \
                    from None
            return
        # a name over 255 bytes
        raise OutputWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):  # refused before any work: --force cannot replace a folder with a file
        raise OutputWriteError(f"cannot write {path}: it is a folder; give a file name (a folder output "
                               "takes a folder input)")
    if _is_stream_mode(mode):
        return  # /dev/null or a FIFO: written into, nothing stored there to lose (_write_output)
    if not stat.S_ISREG(mode):
        # A block device or a socket: the atomic rename would replace the node itself with a
        # regular file, and writing into a disk would destroy it; refused even with --force.
        raise OutputWriteError(f"cannot write {path}: not a regular file, a character device or a pipe")
    if not force:
        raise OutputExistsError(f"{path} exists: pass --force to overwrite")


def _check_not_input(src: Path, dst: Path, args: argparse.Namespace) -> None:
    """Refuse to write over an input, even with --force: that would lose it. The inputs are the
    image or .edc (or the file standard input reads), its --roi-mask and the files of --onnx-dir."""
    from .errors import UsageError

    shown = f"output {dst}"
    try:
        if not _is_stdio(dst):
            out = os.stat(dst)
        elif sys.stdout is not None:  # `> FILE` or `>> FILE`: `>> photo.edc` appended to the input, then exit 0
            out, shown = os.fstat(sys.stdout.fileno()), "standard output"
        else:
            return
    except (OSError, ValueError):  # no output yet (or no input: reported when it is read), or no real stdout
        return
    if not stat.S_ISREG(out.st_mode):  # /dev/null, a FIFO: written into, nothing stored there to lose
        return
    inputs: list[tuple[str, os.stat_result]] = []
    try:
        if not _is_stdio(src):
            inputs.append(("the input file", os.stat(src)))
        elif sys.stdin is not None:
            inputs.append(("the file standard input reads", os.fstat(sys.stdin.fileno())))
    except (OSError, ValueError):  # reported when it is read
        pass
    mask = _mask_path(args, src) if getattr(args, "roi_mask", None) else None
    if mask is not None and mask.exists():
        inputs.append((f"the mask {mask}", os.stat(mask)))
    for what, st in inputs:
        if (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino):
            raise UsageError(f"{shown} is {what}: writing it would lose it; choose another output")
    onnx_dir = getattr(args, "onnx_dir", None)
    if onnx_dir and not _is_stdio(dst) and dst.resolve().parent == Path(onnx_dir).resolve():
        raise UsageError(f"output {dst} is in the export {onnx_dir} that codes it: choose another output")


def _write_output(path: Path, data: bytes, force: bool) -> None:
    from .errors import OutputWriteError

    if _is_stdio(path):
        try:
            sys.stdout.flush()
            _write_all(sys.stdout.buffer, data)
        except BrokenPipeError:  # the data is cut short: not a success, unlike printed lines cut by `head`
            raise OutputWriteError("cannot write standard output: the reader closed the pipe before the "
                                   f"end of the data ({len(data)} bytes)") from None
        except OSError as exc:
            raise OutputWriteError(f"cannot write standard output: {exc.strerror or exc}") from None
    elif _is_stream(path):  # /dev/null, a FIFO: a rename would replace the node with a regular file
        from .errors import UsageError

        try:
            with open(path, "wb", buffering=0) as f:
                if f.isatty():  # -o /dev/stdout or /dev/tty on a terminal, refused as -o - is
                    raise UsageError(f"refusing to write binary data to the terminal {path}: give -o FILE")
                _write_all(f, data)
        except OSError as exc:
            raise OutputWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    else:
        _write_atomic(path, data, force)


def _write_all(stream: io.RawIOBase | io.BufferedIOBase, data: bytes) -> None:
    """Write all of ``data`` to a binary stream. write() may return a short count without raising
    (a disk filling up, a pipe closing) and flush() then reports nothing, so the count is checked
    here: writing the rest raises the error (ENOSPC, EPIPE)."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if not written:  # None or 0: a stream that takes nothing now (non-blocking) would loop forever
            raise OSError(errno.EIO, "the output took no more data")
        view = view[written:]
    stream.flush()


def _is_stream(path: Path) -> bool:
    """A character device or a FIFO (``-o /dev/null``): written into in place, not via a rename."""
    try:
        return _is_stream_mode(os.stat(path).st_mode)
    except OSError:
        return False


def _is_stream_mode(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _shown(path: Path, stream: str) -> str:
    return stream if _is_stdio(path) else str(path)


def _report(line: str, dst: Path) -> None:
    """The one-line summary of a file: on standard error when standard output carries the data."""
    print(one_line(line), file=sys.stderr if _is_stdio(dst) else sys.stdout)




def _fmt_metric(value: float, digits: int) -> str:
    import math

    return "n/a" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.{digits}f}")


# --- compress ------------------------------------------------------------------------------------
def _compress_one(src: Path, dst: Path, args: argparse.Namespace) -> str:
    from .codec.container import STREAM_EXTRAS, Container
    from .codec.imageio import IMAGE_SUFFIXES, load_image
    from .errors import UsageError

    _check_not_input(src, dst, args)  # first: an input is not an output that --force may replace
    if not _is_stdio(dst) and dst.suffix.lower() in IMAGE_SUFFIXES:  # .edc bytes under an image's name
        raise UsageError(f"-o {dst}: compress writes an .edc file, not {dst.suffix}: name it .edc (decompress "
                         "writes images)")
    _check_output(dst, args.force)
    source = _read_input(src, args.max_pixels) if _is_stdio(src) else src
    prepared = load_image(source, alpha=args.alpha, max_pixels=args.max_pixels, metadata=args.metadata,
                          icc=args.icc)
    note = ""
    roi = _regions_of_interest(args, src, prepared.rgb.shape[:2])
    if args.backend == "onnx":  # the torch-free encoder (edgecodec.lite): no torch import on this path
        from .codec.extras import source_extras

        encoder = _lite_coder("encoder", args.model, args)
        target = _target_bytes(args, prepared.rgb.shape[0] * prepared.rgb.shape[1])
        data = encoder.encode_picture(prepared.rgb, None if target is not None else args.quality,
                                      channels=prepared.channels,
                                      bit_depth=prepared.bit_depth, conversions=prepared.conversions,
                                      extras=source_extras(prepared), max_pixels=args.max_pixels,
                                      target_bytes=target, roi=roi, roi_quality=args.roi_quality)
        note = _size_note(target, data)
    else:
        data, note = _compress_torch(prepared, args, roi)
    _write_output(dst, data, args.force)
    container = Container.from_bytes(data)
    header = container.header
    h, w = prepared.rgb.shape[:2]
    if STREAM_EXTRAS.keys() & container.extras.keys():  # a quality map
        note = f", regions of interest at quality {round(args.roi_quality * 65535) / 65535:.4f}{note}"
    line = (f"{_shown(src, 'stdin')} -> {_shown(dst, 'stdout')}: {w}x{h}, {len(data)} bytes, "
            f"{8 * len(data) / (w * h):.4f} bpp, quality {header.quality:.4f}, model {header.model}{note}")
    if args.metrics:
        from .codec.api import decode_array
        from .metrics import ms_ssim, psnr
        decoded, _ = decode_array(data, args.max_pixels)
        line += (f", PSNR {_fmt_metric(psnr(prepared.rgb, decoded), 2)} dB, "
                 f"MS-SSIM {_fmt_metric(ms_ssim(prepared.rgb, decoded), 4)}")
    return line


def _mask_path(args: argparse.Namespace, src: Path) -> Path | None:
    """The --roi-mask of the input ``src``: the mask file, or in a folder of masks the one at the
    image's path relative to the input folder with the suffix .png (None when there is none)."""
    from .errors import InputImageError

    mask = Path(args.roi_mask)
    if not mask.is_dir():
        return mask
    path = (mask / src.relative_to(args.input)).with_suffix(".png")
    try:
        return path if path.is_file() else None
    except OSError as exc:  # a folder of masks that cannot be searched: this image fails, not the run
        raise InputImageError(f"cannot read its mask {path}: {exc.strerror or exc}") from None


def _has_mask(args: argparse.Namespace, src: Path) -> bool:
    """Whether a folder of masks has one for ``src`` (one it cannot read fails with its image)."""
    from .errors import EdgecodecError

    try:
        return _mask_path(args, src) is not None
    except EdgecodecError:
        return True


def _regions_of_interest(args: argparse.Namespace, src: Path, shape: tuple[int, int]):
    """--roi's rectangles, the input's --roi-mask as an (H, W) uint8 array (checked against the
    input's ``shape``), or None."""
    if not args.roi_mask:
        return args.roi
    path = _mask_path(args, src)
    if path is None:  # a folder of masks without one for this image: no region in it
        return None
    from PIL import Image

    from .codec.imageio import load_mask
    from .errors import ImageTooLargeError, InputImageError, UsageError

    try:
        mask = load_mask(path, args.max_pixels)
    except (InputImageError, ImageTooLargeError) as exc:
        raise type(exc)(f"cannot read the mask {path}: {exc}") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputImageError(f"cannot read the mask {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if mask.shape != tuple(shape):
        raise UsageError(f"the mask {path} is {mask.shape[1]}x{mask.shape[0]}; the image is "
                         f"{shape[1]}x{shape[0]}")
    return mask


def _target_bytes(args: argparse.Namespace, pixels: int) -> int | None:
    """--target-size, or --target-bpp for an image of ``pixels`` pixels, in bytes (None: neither)."""
    from .codec.rate_search import bpp_to_bytes, parse_size

    if args.target_bpp is not None:
        return bpp_to_bytes(args.target_bpp, pixels)
    return parse_size(args.target_size) if args.target_size is not None else None


def _size_note(target: int | None, data: bytes) -> str:
    """The summary line's note when a target size was missed (rate_search's tolerance)."""
    from .codec.rate_search import SearchResult

    if target is None or SearchResult(0, data, target).reached:
        return ""
    return f" (target {target} bytes not reachable: closest is {len(data)} bytes)"


def _compress_torch(prepared, args: argparse.Namespace, roi) -> tuple[bytes, str]:
    """The file, and a note for the summary line, from the PyTorch encoder: at a quality, or
    searched for a target size, bpp or score; ``roi``: regions of interest, or None."""
    from .codec.api import Encoder, quality_to_q16
    from .codec.rate_search import SearchResult

    encoder = Encoder(prepared, _model_of(args), refine_steps=args.refine, roi=roi,
                      roi_quality=args.roi_quality)
    target = _target_bytes(args, encoder.num_pixels)
    if target is not None:
        result: SearchResult = encoder.encode_to_size(target)
        return result.data, _size_note(target, result.data)
    if args.target_psnr is not None or args.target_ms_ssim is not None:
        metric, target, shown = (("psnr", args.target_psnr, lambda v: f"{v:.2f} dB") if args.target_psnr is not None
                                 else ("ms-ssim", args.target_ms_ssim, lambda v: f"{v:.4f}"))
        scored = encoder.encode_to_score(metric, target)
        name = "PSNR" if metric == "psnr" else "MS-SSIM"
        note = (f" ({name} {shown(scored.score)}, target {shown(target)})" if scored.reached else
                f" (target {name} {shown(target)} not reachable: {shown(scored.score)} at the best quality)")
        return scored.data, note
    return encoder.encode(quality_to_q16(args.quality)), ""


def cmd_compress(args: argparse.Namespace) -> int:
    from .errors import UsageError

    src = Path(args.input)
    if args.backend == "onnx" and (args.refine or args.metrics or args.target_psnr is not None
                                   or args.target_ms_ssim is not None):
        raise UsageError("--backend onnx encodes at a --quality, --target-size or --target-bpp: --target-psnr, "
                         "--target-ms-ssim, --refine and --metrics need the PyTorch encoder (--backend torch)")
    _check_onnx_only(args, "onnx_dir")
    if args.roi and args.roi_mask:
        raise UsageError("give the regions of interest as --roi rectangles or as a --roi-mask, not both")
    if args.roi_quality is not None and not (args.roi or args.roi_mask):
        raise UsageError("--roi-quality is the quality of regions of interest: give them with --roi or --roi-mask")
    args.roi_quality = 1.0 if args.roi_quality is None else args.roi_quality
    if (args.roi or args.roi_mask) and args.refine:
        raise UsageError("--refine optimises one quality: it does not take --roi or --roi-mask")
    if args.roi_mask and Path(args.roi_mask).is_dir() and not src.is_dir():
        raise UsageError(f"--roi-mask {args.roi_mask} is a folder of masks: give a folder of images")
    if args.target_size is not None:  # refused once, not as a failure of every file of a folder
        from .codec.rate_search import parse_size

        parse_size(args.target_size)
    # an unusable --model is refused once, not as a failure of every file of a folder
    if args.model == "":  # `--model "$MODEL"` with MODEL unset: no name, not the default
        from .errors import UnknownModelError

        raise UnknownModelError("--model is empty: give a model's name (`edgecodec models` lists them), or leave "
                                "--model out for the default")
    if args.onnx_dir:  # the export's manifest names its model: another --model is refused by loading it
        _lite_coder("encoder", args.model, args)
    elif args.backend == "torch" or importlib.util.find_spec("torch") is not None:
        _check_model_arg(_model_of(args), load=args.backend == "torch")
    if args.refine:  # refused up front (e.g. a perceptual model), not once per file of a folder
        from .codec.refine import refinement_objective

        refinement_objective(_model_of(args))
    from .codec.imageio import IMAGE_SUFFIXES

    if src.is_dir():
        if args.roi_mask and Path(args.roi_mask).is_dir() and not any(
                _has_mask(args, path) for path in _input_files(src, IMAGE_SUFFIXES, exclude=[Path(args.roi_mask)])):
            raise UsageError(f"no mask in {args.roi_mask} matches an image of {src} (the mask of {src}/a/b.jpg is "
                             f"{args.roi_mask}/a/b.png)")
        return _run_folder(src, args, IMAGE_SUFFIXES, ".edc", _compress_one)
    _check_one_file(args)
    dst = Path(args.output) if args.output else _default_output(src, ".edc")
    _report(_compress_one(src, dst, args), dst)
    return 0


def _check_one_file(args: argparse.Namespace) -> None:
    """Folder options given with one file were ignored in silence: refused. So is an -o that names
    a folder by its final "/": pathlib drops the slash, and `-o coded/` wrote a file named coded."""
    from .errors import OutputWriteError, UsageError

    # a final "/", "/." or "/..": pathlib drops the first two, and all three name folders
    if args.output and args.output != STDIO and (args.output.endswith(("/", os.sep))
                                                 or os.path.basename(args.output) in (".", "..")):
        raise OutputWriteError(f"cannot write {args.output}: it names a folder; give a file name (a folder output "
                               "takes a folder input)")
    given = [option for option, value in (("--jobs", (args.jobs or 1) > 1), ("--skip-existing", args.skip_existing))
             if value]
    if given:
        raise UsageError(f"{' and '.join(given)} {'go' if len(given) > 1 else 'goes'} with a folder input; "
                         f"{args.input} is one file")


def _default_output(src: Path, suffix: str) -> Path:
    """Beside the input with the command's suffix; standard output when reading standard input."""
    return src if _is_stdio(src) else src.with_suffix(suffix)


# --- decompress ----------------------------------------------------------------------------------
def _decompress_one(src: Path, dst: Path, args: argparse.Namespace) -> str:
    from .errors import UsageError

    # --format (PNG) on standard output, and into a device or FIFO named without a suffix (-o /dev/null)
    if _is_stdio(dst) or not dst.suffix and (args.image_format or _is_stream(dst)):
        fmt = args.image_format or "png"
    else:
        fmt = dst.suffix.lower()[1:]
    _check_not_input(src, dst, args)  # first: an input is not an output that --force may replace
    _check_output(dst, args.force)  # before the format: a folder is said to be one
    if fmt not in LOSSLESS_FORMATS:
        # a name without a suffix takes --format (-o /dev/null, a device): say so, not only the suffixes
        hint = ", or give --format" if not dst.suffix else ""
        raise UsageError(f"output {dst} must be a lossless format: .png, .tif, .webp (written lossless), .bmp or "
                         f".ppm{hint}")
    data = _read_input(src, args.max_pixels, edc=True)
    if getattr(args, "backend", "torch") == "onnx":
        image = _decompress_lite(data, args)
    else:
        from .codec.api import decompress  # imports torch: not for the onnx backend

        image = decompress(data, max_pixels=args.max_pixels, region=args.region)
    if image.mode in ("LA", "RGBA") and args.alpha == "drop":
        image = image.convert(image.mode[:-1])
    if fmt == "webp" and image.mode in ("L", "LA"):  # WebP has no grayscale: the summary names what is written
        image = image.convert(image.mode.replace("L", "RGB"))
    if image.mode in ("LA", "RGBA") and fmt in ("bmp", "ppm"):  # Pillow's BMP reads back without it
        raise UsageError(f"{_shown(src, 'stdin')} has an alpha channel, which {fmt.upper()} does not hold: "
                         "write .png, .tif or .webp, or pass --alpha drop")
    _write_output(dst, _encoded_image(image, LOSSLESS_FORMATS[fmt]), args.force)
    return f"{_shown(src, 'stdin')} -> {_shown(dst, 'stdout')}: {image.width}x{image.height} {image.mode}"


def _encoded_image(image, fmt: str) -> bytes:
    """A decoded image as a lossless file, with the ICC profile, EXIF and XMP the .edc kept where the
    format holds them; a format without ICC profiles gets the image converted to sRGB instead."""
    from PIL import Image, PngImagePlugin

    # WebP: lossless, and exact keeps the colour under fully transparent pixels as decoded.
    options: dict = {"lossless": True, "exact": True} if fmt == "WEBP" else {}
    profile = image.info.get("icc_profile")
    if profile and fmt in _TAGGED_FORMATS:
        options["icc_profile"] = profile
    elif profile:
        from .codec.imageio import icc_to_srgb

        converted = icc_to_srgb(image.convert("RGB"), profile)
        image = converted if converted is not None else image
    exif, xmp = image.info.get("exif"), image.info.get("xmp")
    if exif and fmt in _TAGGED_FORMATS:
        options["exif"] = exif
    if xmp and fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
        options["pnginfo"] = info
    if xmp and fmt == "TIFF":
        # TIFF tag 700 is XMP. One tag mapping with the EXIF: Pillow's TIFF writer takes tiffinfo
        # over exif when given both, which dropped the EXIF.
        tags = Image.Exif()
        if exif:
            tags.load(exif)
        tags[700] = xmp
        options["exif"] = tags
    if xmp and fmt == "WEBP":
        options["xmp"] = xmp
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def _decompress_lite(data: bytes, args: argparse.Namespace):
    """Decode with the torch-free decoder (edgecodec.lite) of the file's model."""
    from .codec.container import Container
    from .codec.extras import decoded_image

    container = Container.from_bytes(data)
    decoder = _lite_coder("decoder", container.header.model, args, container.header.weights_hash)
    pixels, _ = decoder.decode(data, max_pixels=args.max_pixels, region=args.region)  # RGBA if alpha was kept
    return decoded_image(pixels, container, args.region)


_LITE_CODERS_LOCK = threading.Lock()


def _lite_coder(kind: str, model: str | None, args: argparse.Namespace, weights_hash: bytes | None = None):
    """The torch-free decoder or encoder (edgecodec.lite) of ``model``: from --onnx-dir (no torch
    needed; an encoder's model is then the export's, unless --model names another), else the
    model's export in the cache, exported on first use and again if damaged; a decoder's of the
    model with the file's ``weights_hash`` (zoo.load_model). One per kind, model and weights in
    folder mode, shared by its --jobs threads (onnxruntime sessions run concurrently)."""
    with _LITE_CODERS_LOCK:  # one export and one load for the files of parallel jobs
        return _load_lite_coder(kind, model, args, weights_hash)


NO_TORCH_ONNX = ("without PyTorch, --backend onnx needs --onnx-dir DIR: an export made with `edgecodec export onnx` "
                 "where PyTorch is installed")


def _load_lite_coder(kind: str, model: str | None, args: argparse.Namespace, weights_hash: bytes | None):
    from .errors import UsageError
    from .lite import LiteDecoder, LiteEncoder

    if model is None and not args.onnx_dir:
        try:
            from .zoo import DEFAULT_MODEL  # imports torch, which exporting into the cache needs anyway
        except ImportError:
            raise UsageError(NO_TORCH_ONNX) from None
        model = DEFAULT_MODEL
    coders = args.__dict__.setdefault("_lite_coders", {})
    if (kind, model, weights_hash) in coders:
        return coders[kind, model, weights_hash]
    int8 = kind == "decoder" and args.int8

    def load(folder: Path):
        return (LiteDecoder(folder, threads=args.threads, int8=int8) if kind == "decoder"
                else LiteEncoder(folder, threads=args.threads))

    try:
        if args.onnx_dir:
            coder = load(Path(args.onnx_dir))
        elif int8:  # the cache holds fp32 exports only
            raise UsageError("--int8 needs --onnx-dir: an export made with `edgecodec export onnx --int8 IMAGES`")
        else:
            try:
                from .export.onnx import ensure_export
            except ImportError:  # a torch-free install: the cache's exports are made with PyTorch
                raise UsageError(NO_TORCH_ONNX) from None
            try:
                coder = load(ensure_export(model, weights_hash=weights_hash))
            except (OSError, ValueError):  # the cache's own export is damaged (a file changed or missing)
                coder = load(ensure_export(model, refresh=True, weights_hash=weights_hash))
    except UsageError:
        raise
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load the exported model: {exc}") from None
    if kind == "encoder" and model and coder.model_name != model:
        raise UsageError(f"{args.onnx_dir} is an export of model {coder.model_name!r}, not {model!r}")
    coders[kind, model, weights_hash] = coder
    return coder


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from .errors import UsageError
    from .export.onnx import export_onnx

    _check_model_arg(_model_of(args), load=False)
    calibration = None
    if args.int8:
        folder = Path(args.int8)
        calibration = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")) \
            if folder.is_dir() else []
        if not calibration:
            raise UsageError(f"--int8 needs a folder of calibration images (.png/.jpg): {folder}")
    out = export_onnx(_model_of(args), args.output, calibration)
    manifest = json.loads((out / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        print(f"{out / name}: {entry['bytes'] / 1e6:.2f} MB")
    return 0


def _check_onnx_only(args: argparse.Namespace, *options: str) -> None:
    """UsageError for an option of the onnx backend given without --backend onnx, which would
    otherwise be ignored silently (the PyTorch coder does the work)."""
    from .errors import UsageError

    for option in options:
        if getattr(args, option) and args.backend != "onnx":
            raise UsageError(f"--{option.replace('_', '-')} goes with --backend onnx")


def cmd_decompress(args: argparse.Namespace) -> int:
    from .errors import UsageError

    _check_onnx_only(args, "onnx_dir", "int8")
    src = Path(args.input)
    suffix = f".{args.image_format or 'png'}"
    if src.is_dir():
        return _run_folder(src, args, {".edc"}, suffix, _decompress_one)
    _check_one_file(args)
    named = Path(args.output).suffix.lower().lstrip(".") if args.output and args.output != STDIO else ""
    if args.image_format and named and LOSSLESS_FORMATS.get(named) != LOSSLESS_FORMATS[args.image_format]:
        raise UsageError(f"-o {args.output} names another format than --format {args.image_format}: "
                         "give one of them")
    dst = Path(args.output) if args.output else _default_output(src, suffix)
    _report(_decompress_one(src, dst, args), dst)
    return 0


# --- folder mode ---------------------------------------------------------------------------------
def _input_files(src: Path, suffixes: set[str], unreadable: list[tuple[Path, str]] | None = None,
                 exclude: Sequence[Path] = (), others: Counter | None = None,
                 repeats: list[Path] | None = None) -> list[Path]:
    """The files of a folder input that a folder run codes, in order. Symbolic links to folders are
    followed, each real folder once; folders in ``exclude`` (the run's output and mask folders,
    when inside the input) are not walked. Subfolders that cannot be listed, a link back up the
    tree (a loop) and files with an input suffix that cannot be read (a broken link, no
    permission, not a regular file) go to ``unreadable`` with the reason; the folder itself raises
    InputImageError. ``others`` counts the files left alone by suffix (hidden files aside);
    ``repeats`` gets the links to a folder walked under its own name."""
    from .errors import InputImageError
    from .walk import LOOP, REPEAT, walk_tree

    problems: list[OSError] = []
    files: list[Path] = []
    excluded = {os.path.realpath(path) for path in exclude}

    def failed(path: Path, reason: str) -> None:
        if unreadable is not None:
            unreadable.append((path, reason))

    skip = (lambda path: os.path.realpath(path) in excluded)
    for root, names, why in walk_tree(src, skip, onerror=problems.append):
        if why == LOOP:  # followed, it never ends or takes what lies beside the input
            failed(Path(root), f"a link back up the tree ({os.path.realpath(root)}): not walked")
            continue
        if why == REPEAT:  # a second name of a folder (latest -> 2026-12): its files once
            if repeats is not None:
                repeats.append(Path(root))
            continue
        for name in names:
            path = Path(root, name)
            if path.suffix.lower() not in suffixes:
                if others is not None and not name.startswith("."):
                    others[path.suffix.lower() or "no suffix"] += 1
                continue
            try:
                mode = path.stat().st_mode
            except OSError as exc:  # Path.is_file() raises for EACCES (a folder without x)
                broken = isinstance(exc, FileNotFoundError) and os.path.islink(path)
                failed(path, "a broken symbolic link" if broken else f"cannot read: {exc.strerror or exc}")
                continue
            if stat.S_ISREG(mode):
                files.append(path)
            elif not stat.S_ISDIR(mode):  # a FIFO, a socket, a device: reading it may never end
                failed(path, "not a regular file")
    for exc in problems:
        if Path(exc.filename) == src:
            raise InputImageError(f"cannot read the folder {src}: {exc.strerror or exc}")
        failed(Path(exc.filename), f"cannot read the folder: {exc.strerror or exc}")
    return sorted(files)


def _run_folder(src: Path, args: argparse.Namespace, suffixes: set[str], out_suffix: str,
                one: Callable[[Path, Path, argparse.Namespace], str]) -> int:
    from .errors import EdgecodecError, OutputWriteError, UsageError

    try:
        from tqdm import tqdm
    except ModuleNotFoundError:  # a device set up from requirements-lite.txt: folders run without a bar
        tqdm = None
    if not args.output or args.output == STDIO:
        raise UsageError("a folder input needs -o OUTPUT_FOLDER")
    if args.skip_existing and args.force:
        raise UsageError("--skip-existing keeps existing outputs and --force replaces them: give one")
    out_root = Path(args.output)
    if out_root.exists() and not out_root.is_dir():
        raise UsageError(f"output {out_root} is a file: a folder input needs an output folder")
    failures: list[tuple[Path, str]] = []  # (input, reason): unreadable subfolders, then files
    others: Counter = Counter()  # files of other kinds, by suffix
    repeats: list[Path] = []  # second names of folders
    own = [out_root] + ([Path(args.roi_mask)] if getattr(args, "roi_mask", None) else [])
    inside = [path for path in own if os.path.realpath(path) != os.path.realpath(src)]  # its own folders: not inputs
    files = _input_files(src, suffixes, failures, exclude=inside, others=others, repeats=repeats)
    if not files and not failures:
        raise UsageError(f"no input files ({', '.join(sorted(suffixes))}) in {src}")
    targets = _mirror_paths(src, files, out_root, out_suffix)
    # os.path.exists: False for an output folder that cannot be searched (Path.exists raised)
    pending = [path for path in files if not (args.skip_existing and os.path.exists(targets[path]))]
    written, skipped = 0, len(files) - len(pending)
    jobs = _folder_jobs(args, len(pending))
    try:  # before any work: a folder that cannot be made or written fails every file
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError.making(out_root, exc) from None
    if not os.access(out_root, os.W_OK | os.X_OK):
        raise OutputWriteError(f"cannot write {out_root}: permission denied")
    removed = remove_stale_temps(out_root, out_suffix)
    if removed:
        print(f"removed {removed} temporary file(s) left in {out_root} by an interrupted run")
    progress = None if tqdm is None else tqdm(total=len(files), initial=skipped, desc=args.command, unit="file",
                                               disable=args.quiet or None)
    try:
        for path, result in _each_file(pending, lambda path: one(path, targets[path], args), jobs):
            if progress is not None:
                progress.update()
            if isinstance(result, EdgecodecError):  # its message may start with the path, shown already
                failures.append((path, str(result).removeprefix(f"{path}: ")))
                continue
            written += 1
            if args.verbose:
                (print if progress is None else tqdm.write)(one_line(result))
    finally:
        if progress is not None:
            progress.close()
    print(f"{written} written, {skipped} skipped (existing), {len(failures)} failed")
    if repeats:
        print(f"left alone: {len(repeats)} link(s) to a folder walked already under another name")
    if others:  # named as no input of this command: said, so that no photo is left out unnoticed
        kinds = ", ".join(f"{suffix} {count}" for suffix, count in sorted(others.items()))
        what = f"{next(iter(suffixes))} files" if len(suffixes) == 1 else "images"
        print(f"left alone: {sum(others.values())} file(s) that are not {what} by their names ({kinds})")
    for path, reason in sorted(failures):
        print(one_line(f"failed: {path}: {reason}"), file=sys.stderr)
    return EXIT_PARTIAL if failures else 0


def _folder_jobs(args: argparse.Namespace, count: int) -> int:
    """Files coded at once (``--jobs``), each on one thread: torch's thread count is process-wide,
    and the codec's single_thread() sections in parallel files must not change it under each
    other (see web/app.py), so the PyTorch backend runs on one thread; the onnx backend's
    sessions take --threads each (default 1)."""
    from .errors import UsageError

    jobs = min(getattr(args, "jobs", 1) or 1, max(1, count))
    if jobs == 1:
        return 1
    if getattr(args, "backend", "torch") == "onnx":
        args.threads = args.threads or 1
        return jobs
    if args.threads and args.threads > 1:
        raise UsageError("--jobs runs each file on one thread with the PyTorch backend: drop --threads")
    import torch

    torch.set_num_threads(1)
    return jobs


def _each_file(paths: list[Path], one: Callable[[Path], str], jobs: int):
    """(path, summary line or the EdgecodecError it raised) for each path, in completion order,
    ``jobs`` files at once. Other exceptions and Ctrl-C stop the run: files being written finish
    (their outputs are atomic), the ones not started are dropped."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from .errors import EdgecodecError

    def run(path: Path):
        try:
            return path, one(path)
        except EdgecodecError as exc:
            return path, exc

    if jobs == 1:
        yield from map(run, paths)
        return
    pool = ThreadPoolExecutor(jobs)
    try:
        for future in as_completed([pool.submit(run, path) for path in paths]):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _mirror_paths(src: Path, files: list[Path], out_root: Path, out_suffix: str) -> dict[Path, Path]:
    """Output path of each input, mirroring the tree. An input whose output would be another's
    (photo.png and photo.jpg, or photo.png's photo.png.edc and photo.png.jpg's plain name) keeps its
    full name (photo.png.edc): full names never clash, so no output is written over another's."""
    full = {path: out_root / (str(path.relative_to(src)) + out_suffix) for path in files}
    target = {path: out_root / path.relative_to(src).with_suffix(out_suffix) for path in files}
    while True:
        counts = Counter(target.values())
        clashes = [path for path, dst in target.items() if counts[dst] > 1 and dst != full[path]]
        if not clashes:  # each step gives an input its full name for good, so this ends
            return target
        for path in clashes:
            target[path] = full[path]


def _model_of(args: argparse.Namespace) -> str:
    """--model's name (the default model when not given). Only a missing --model means the default:
    an empty one (`--model "$MODEL"` with MODEL unset) is refused as a name, not replaced."""
    from .zoo import DEFAULT_MODEL

    return DEFAULT_MODEL if args.model is None else args.model


def _check_model_arg(name: str, load: bool) -> None:
    """Refuse a --model that no command could use once, up front (exit 9): in folder mode it failed
    every file (exit 10) after the output folder was made. A path is told how models are found;
    ``load``: load it too (the PyTorch coders do on the first file anyway), so a damaged weights
    file is reported once as well."""
    from .errors import UnknownModelError
    from .zoo import find_model, load_model

    try:
        find_model(name)
    except UnknownModelError:
        if "/" in name or os.sep in name or name.endswith((".safetensors", ".json")):
            stem = Path(name).name.removesuffix(".safetensors").removesuffix(".json")
            raise UnknownModelError(
                f"--model {name}: --model takes a model's name, not a file: put the folder holding "
                f"{stem}.safetensors and {stem}.json on EDGECODEC_MODEL_PATH (or copy both into the user model "
                f"folder) and give --model {stem} (see `edgecodec models`)") from None
        raise
    if load:
        load_model(name)


# --- info / models -------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    """Every header field of each input. One input fails as any command does; of several, the
    readable ones are shown and the others listed on stderr (exit 10, as in folder mode)."""
    from .errors import EdgecodecError, UsageError

    if args.input.count(STDIO) > 1:  # the second read found it empty: a failed file, exit 10
        raise UsageError("standard input (-) can be read once: name it once")
    if len(args.input) == 1:
        fields, text = _info_fields(Path(args.input[0]))
        print(json.dumps(fields, indent=2) if args.json else text)
        return 0
    shown = []  # (fields, text); a failed file: ({"file", "error"}, None), in the JSON list too
    for name in args.input:
        try:
            shown.append(_info_fields(Path(name)))
        except EdgecodecError as exc:
            shown.append(({"file": name, "error": str(exc)}, None))
    if args.json:
        print(json.dumps([fields for fields, _ in shown], indent=2))
    else:
        print("\n\n".join(text for _, text in shown if text is not None))
    failed = [fields for fields, text in shown if text is None]
    for fields in failed:
        print(one_line(f"failed: {fields['file']}: {fields['error']}"), file=sys.stderr)
    return EXIT_PARTIAL if failed else 0


def _info_fields(path: Path) -> tuple[dict, str]:
    """An .edc file's header fields: as numbers and lists (for --json), and as aligned text."""
    from .codec.container import EXTRA_NAMES, Container
    from .lite.qmap import quality_map_summary

    data = _read_input(path, None, edc=True)
    c = Container.from_bytes(data)
    h = c.header
    qmap = quality_map_summary(c)
    rows = [
        ("file", _shown(path, "stdin")), ("format version", h.version), ("model", h.model),
        ("weights hash", h.weights_hash.hex()), ("quality", f"{h.quality:.6f} ({h.quality_q16}/65535)"),
        ("width", h.width), ("height", h.height), ("source channels", h.channels),
        ("source bit depth", h.bit_depth), ("conversions", ", ".join(h.conversion_names()) or "none"),
        ("tiles", f"{h.tile}x{h.tile} latent pixels ({16 * h.tile} px)" if h.tile else "none"),
        ("streams", ", ".join(f"{len(s)} bytes" for s in c.streams)),
        ("extras", ", ".join(f"{EXTRA_NAMES.get(tag, repr(tag))} {len(v)} bytes" for tag, v in c.extras.items())
         or "none"),
        ("quality map", f"{qmap['cells'][1]}x{qmap['cells'][0]} cells of {qmap['cell_pixels']}x{qmap['cell_pixels']} px, "
                        f"quality {qmap['min']:.4f} to "
                        f"{qmap['max']:.4f} (mean {qmap['mean']:.4f})" if qmap else "none"),
        ("file size", f"{len(data)} bytes"), ("bpp", f"{8 * len(data) / (h.width * h.height):.4f}"),
    ]
    fields = {
        "file": _shown(path, "-"), "format_version": h.version, "model": h.model,
        "weights_hash": h.weights_hash.hex(), "quality": h.quality, "quality_q16": h.quality_q16,
        "width": h.width, "height": h.height, "source_channels": h.channels, "source_bit_depth": h.bit_depth,
        "conversions": h.conversion_names(), "tile": h.tile, "stream_bytes": [len(s) for s in c.streams],
        "extras": {tag: len(v) for tag, v in c.extras.items()}, "quality_map": qmap, "file_bytes": len(data),
        "bpp": 8 * len(data) / (h.width * h.height)}
    return fields, "\n".join(f"{key:>17}: {value}" for key, value in rows)


def _same_file(a: Path, b: Path) -> bool:
    """One file, however its folder was named (a relative EDGECODEC_MODEL_PATH entry, a link)."""
    try:
        return a.samefile(b)
    except OSError:
        return a == b


def cmd_models(args: argparse.Namespace) -> int:
    from .zoo import DEFAULT_MODEL, all_models, card_mismatch, describe, folder_notes, list_models

    entries = list_models()
    mismatches = {entry.name: card_mismatch(entry) for entry in entries}
    # A name in several folders resolves to the first; the others (a shipped model behind a user's
    # export of its name) still decode the files written with them, and are listed with it.
    hidden: dict[str, list[str]] = {entry.name: [] for entry in entries}
    used = {entry.name: entry.weights for entry in entries}
    for other in all_models():  # a second scan: a model exported meanwhile is left for the next listing
        if other.name in used and not _same_file(other.weights, used[other.name]):
            hidden[other.name].append(str(other.weights))
    for note in folder_notes():
        print(f"edgecodec: note: {note}", file=sys.stderr)
    if args.json:  # the same for scripts: the card's fields, where the weights are, why one is unusable
        print(json.dumps([{**({} if entry.problem else describe(entry)), "name": entry.name,
                           "default": entry.name == DEFAULT_MODEL, "weights": str(entry.weights),
                           "hides": hidden[entry.name], "problem": entry.problem,
                           "warning": mismatches[entry.name]} for entry in entries],
                         indent=2))
        return 0 if entries else 1
    if not entries:
        print("no models installed")
        return 1
    for entry in entries:
        hides = (f" It hides {', '.join(hidden[entry.name])} (compress uses {entry.weights}; files written with a "
                 "hidden one still decode with it)." if hidden[entry.name] else "")
        if entry.problem:
            print(f"{entry.name}: cannot be used: {entry.problem}.{hides}")
            continue
        d = describe(entry)
        params = d["parameters"] or {}
        bpp = d["bpp_range"]
        where = f" on {d['bpp_measured_on']}" if d["bpp_measured_on"] else " (where measured not recorded)"
        rate = f"{bpp[0]:.3f}-{bpp[1]:.3f} bpp{where}" if bpp else "rate range not measured"
        if "encoder" in params and "decoder" in params:
            size = f"encoder {params['encoder'] / 1e6:.2f} M / decoder {params['decoder'] / 1e6:.2f} M parameters"
        else:
            size = "parameters not recorded"
        default = " (default)" if entry.name == DEFAULT_MODEL else ""
        warning = f" Warning: {mismatches[entry.name]}." if mismatches[entry.name] else ""
        line = f"{entry.name}{default}: {d['config']} transforms, {d['prior']} prior, {rate}, {size}. {d['summary']}"
        print(line.rstrip() + warning + hides)
    return 0


# --- train / export-model ----------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    """Train from a YAML config; under `torchrun --nproc_per_node N` every process runs this and
    rank 0 alone logs, validates and writes checkpoints."""
    import logging

    from .errors import UsageError
    from .train.config import load_config
    from .train.distributed import env_rank
    from .train.trainer import checkpoints, run

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.root={args.data}")
    if args.resume and not Path(args.resume).is_dir():  # a mistyped RUN must not start a new run from step 0
        raise UsageError(f"--resume {args.resume}: no such run folder (a new run takes --out)")
    if args.resume and args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise UsageError(f"--resume {args.resume} continues that run in its folder: drop --out {args.out} "
                         "(a new run takes --out)")
    config_path = args.config  # a file, or a shipped config's name (load_config resolves it)
    if config_path is None:  # --resume RUN alone: the run's own config (overrides included)
        saved = Path(args.resume) / "config.yaml" if args.resume else None
        if saved is None or not saved.is_file():
            raise UsageError("train needs --config, or --resume RUN of a run folder holding config.yaml")
        config_path = saved
    elif args.resume and not (Path(args.resume) / "config.yaml").is_file() and not checkpoints(Path(args.resume)):
        # --resume of a folder no training wrote (a parent folder, a data folder) with --config: a
        # new run started there, and the folder's own log.csv and val.csv lost their rows
        raise UsageError(f"--resume {args.resume}: not a run folder (no config.yaml, no checkpoint), so there is "
                         "nothing to continue: a new run takes --out")
    config = load_config(config_path, overrides)
    run_dir = Path(args.resume or args.out or Path("runs") / config["name"])
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"run folder {run_dir} is a file: choose another --out")
    if not args.resume and args.config and Path(args.config).resolve() == (run_dir / "config.yaml").resolve():
        # the run writes its resolved config.yaml there: the user's file, comments and all, was replaced
        raise UsageError(f"--config {args.config} is the config.yaml the run writes in {run_dir}: keep your config "
                         "elsewhere, or give another --out")
    rank = env_rank()
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s " + (f"[rank {rank}] " if rank else "") + "%(message)s")
    run(config, run_dir, resume=bool(args.resume), steps=args.steps)
    if rank == 0:
        print(f"run folder: {run_dir}")
    return 0


def cmd_plot_training(args: argparse.Namespace) -> int:
    from .errors import UsageError
    from .train.plot import plot_runs

    _check_output(Path(args.output), args.force)  # before the runs are read and drawn
    try:
        out = plot_runs(args.runs, args.output, title=args.title)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {out}")
    return 0


def cmd_export_model(args: argparse.Namespace) -> int:
    import tempfile

    from .errors import OutputExistsError, OutputWriteError, UsageError
    from .zoo import MODEL_NAME_RULE, model_dirs, shipped_models, user_model_dir, valid_model_name

    if not valid_model_name(args.name):  # before any folder is made with it
        raise UsageError(f"invalid model name {args.name!r}: a model name is {MODEL_NAME_RULE}")
    previous = None
    if args.previous:  # read now: with --force it may be the card this export replaces
        try:
            previous = json.loads(Path(args.previous).read_text())
        except OSError as exc:
            raise UsageError(f"--previous {args.previous}: {exc.strerror or exc}") from None
        except ValueError:
            previous = None
        if not isinstance(previous, dict) or "weights_sha256" not in previous:
            raise UsageError(f"--previous {args.previous}: not a model card")
    out_dir = Path(args.out) if args.out else user_model_dir()
    existing = out_dir / f"{args.name}.safetensors"
    if existing.exists() and not args.force:  # the files written with those weights need them to decode
        raise OutputExistsError(f"{existing} exists: pass --force to replace it (.edc files written with it then "
                                "decode only where it is kept)")
    searched = {d.resolve() for d in model_dirs()[:-1]}  # the user's folders, before the shipped weights
    if args.name in shipped_models() and out_dir.resolve() in searched and not args.force:
        raise OutputExistsError(f"{args.name!r} is a shipped model: {existing} would take its place for every command "
                                "(compress --model, models): choose another --name, export to another --out, or "
                                "pass --force")
    # Model names are case-sensitive, but `Fidelity` beside `fidelity` is a model easily mistaken for
    # the other, and the same file on a file system that ignores case (macOS, Windows).
    near = [*(shipped_models() if out_dir.resolve() in searched else []),  # beside it, as the guard above
            *(p.stem for p in out_dir.glob("*.safetensors") if out_dir.is_dir())]
    twins = sorted({n for n in near
                    if n != args.name and n.casefold() == args.name.casefold()})
    if twins and not args.force:
        raise OutputExistsError(f"{args.name!r} differs only in case from the model {twins[0]!r} (model names are "
                                "case-sensitive, and file systems that ignore case take them for one file): choose "
                                "another --name, or pass --force")
    if args.qualities is not None and not args.kodak:  # measured only with --kodak: not ignored in silence
        raise UsageError("--qualities are measured with --kodak FOLDER: give it, or drop --qualities")
    if args.kodak:  # checked before the export: a sweep that cannot run must not leave a model registered
        from .codec.api import quality_to_q16
        from .eval.runner import list_images

        args.qualities = numbers(CARD_QUALITIES) if args.qualities is None else args.qualities
        if not args.qualities:
            raise UsageError("--qualities: give at least one quality to measure with --kodak")
        for q in args.qualities:
            quality_to_q16(q)  # ValueError (usage) outside [0, 1]
        try:
            list_images(args.kodak)
        except FileNotFoundError as exc:
            raise UsageError(f"--kodak: {exc}") from None
    made = [p for p in (out_dir, *out_dir.parents) if not p.exists()]  # deepest first
    # The model is made, measured and given its history in a hidden folder inside its place, then
    # moved in, card first: until its weights are in, NAME is no model (a model is both files), so
    # a sweep that fails on an image, or an interruption, registers nothing and leaves nothing that
    # blocks the next export.
    try:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            staging_dir = tempfile.TemporaryDirectory(prefix=f".{args.name}.", suffix=".export", dir=out_dir)
        except OSError as exc:  # a file on its path, a read-only folder: exit 11
            raise OutputWriteError.making(out_dir, exc, "into the model folder") from None
        with staging_dir as staging:
            existing = _export_staged(args, Path(staging), out_dir, previous)
    except BaseException:
        for folder in made:  # a failed first export leaves no empty model folder
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    print(f"wrote {existing} and {existing.with_suffix('.json')}")
    if out_dir.resolve() not in {d.resolve() for d in model_dirs()}:  # compress --model NAME: "unknown model"
        print(f"edgecodec: note: {out_dir} is not a folder models are looked up in: add it to EDGECODEC_MODEL_PATH "
              f"to use --model {args.name}", file=sys.stderr)
    return 0


def _export_staged(args: argparse.Namespace, staging: Path, out_dir: Path, previous: dict | None) -> Path:
    """export-model's work in ``staging``, then the model moved into ``out_dir``; its weights' path there."""
    from .eval.runner import run_sweep
    from .train.export import add_kodak_metrics, append_stage_history, export_run

    overrides = {"min_level": args.min_level} if args.min_level is not None else None
    run = Path(args.run)
    run_dir, checkpoint = (run.parent, run) if run.is_file() else (run, None)  # RUN/best.pt: that checkpoint
    weights = export_run(run_dir, args.name, staging, {"summary": args.summary}, checkpoint=checkpoint,
                         config_overrides=overrides)
    card = weights.with_suffix(".json")
    if args.kodak:
        model_path = os.environ.get("EDGECODEC_MODEL_PATH")
        os.environ["EDGECODEC_MODEL_PATH"] = os.pathsep.join([str(staging), *filter(None, (model_path or "").split(
            os.pathsep))])  # the sweep finds the staged model first
        try:
            result = run_sweep(args.kodak, run_dir / f"eval-{args.name}", models=[args.name],
                               qualities=args.qualities, codecs=[], progress=not args.quiet)
        finally:
            os.environ.pop("EDGECODEC_MODEL_PATH")
            if model_path is not None:
                os.environ["EDGECODEC_MODEL_PATH"] = model_path
        points = result.summary["curves"][args.name]["points"]
        add_kodak_metrics(card, points, shlex.join(["edgecodec", *sys.argv[1:]]), Path(args.kodak))
        for p in points:
            print(f"quality {p['quality']:.2f}: {p['bpp']:.4f} bpp, PSNR {p['psnr']:.2f} dB, "
                  f"MS-SSIM {p['ms_ssim']:.4f}, ST-LPIPS {p['st_lpips']:.4f} ({p['images']} images)")
    if previous is not None:
        print("history: " + append_stage_history(card, previous, run_dir))
    # A model replaced (--force) is moved aside first and put back if the move in is interrupted,
    # so the folder never pairs the new card with the old weights.
    replaced = []
    try:
        for path in (card, weights):
            if os.path.lexists(out_dir / path.name):
                os.replace(out_dir / path.name, staging / f"replaced-{path.name}")
                replaced.append(path.name)
        os.replace(card, out_dir / card.name)
        os.replace(weights, out_dir / weights.name)
    except BaseException:
        for name in replaced:
            os.replace(staging / f"replaced-{name}", out_dir / name)
        raise
    return out_dir / weights.name


# --- parser --------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line on stderr, exit 2 (argparse printed its
    usage block first, and named the subcommand in the prefix a script matches)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("edgecodec").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"edgecodec: error: {where}{message} (edgecodec {command + ' ' if command else ''}--help)\n")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        """argparse's, with several files given to compress or decompress (`compress *.png -o
        coded/`) told what to do: argparse said only "unrecognized arguments: b.png"."""
        parsed, extra = self.parse_known_args(args, namespace)
        if not extra:
            return parsed
        command = getattr(parsed, "command", None)
        if command in ("compress", "decompress") and not any(arg.startswith("-") and arg != STDIO for arg in extra):
            self.exit(2, f"edgecodec: error: {command}: several inputs ({parsed.input} {' '.join(extra)}): {command} "
                         "takes one file, or a folder to code every file in it (-o OUTPUT_FOLDER): put the files in "
                         f"a folder, or run {command} once for each (edgecodec {command} --help)\n")
        self.error(f"unrecognized arguments: {' '.join(extra)}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgecodec", description="Learned image codec with real bitstreams.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--threads", type=int_at_least(1), default=None, help="CPU threads for the transforms")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("input", type=path_name,
                       help="file, a folder to process every file inside, or - for standard input")
        p.add_argument("-o", "--output", type=path_name,
                       help="output file, - for standard output (the default for a standard input), or a folder "
                            "for a folder input")
        p.add_argument("--force", action="store_true", help="overwrite existing outputs")
        p.add_argument("--skip-existing", action="store_true", help="folder mode: skip outputs that exist")
        p.add_argument("--max-pixels", type=int_at_least(1), default=None,
                       help="refuse images above this many pixels (default: $EDGECODEC_MAX_PIXELS or Pillow's)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        p.add_argument("-v", "--verbose", action="store_true", help="folder mode: a line per file")
        p.add_argument("--jobs", type=int_at_least(1),
                       help="folder mode: files coded at once (default 1), each on one thread with the PyTorch "
                            "backend, on --threads threads each with --backend onnx")

    p = sub.add_parser("compress", help="image(s) to .edc")
    common(p)
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=unit_interval, default=0.5, help="0 (smallest) to 1 (best), default 0.5")
    rate.add_argument("--target-bpp", type=positive_number, help="search the quality for this many bits per pixel")
    rate.add_argument("--target-size", help="search the quality for this file size, e.g. 40KB")
    rate.add_argument("--target-psnr", type=positive_number, metavar="DB",
                      help="search the lowest quality whose decoded image has this PSNR (about 10 encodes and "
                           "decodes)")
    rate.add_argument("--target-ms-ssim", type=fraction, metavar="VALUE",
                      help="search the lowest quality whose decoded image has this MS-SSIM, e.g. 0.98 (images of "
                           "at least 161 x 161 pixels)")
    p.add_argument("--model", help="model name (see `edgecodec models`)")
    p.add_argument("--alpha", choices=("keep", "drop", "refuse"), default="keep",
                   help="transparency: keep it (coded losslessly beside the picture; the default), drop it, "
                        "or refuse such images")
    p.add_argument("--metadata", choices=("strip", "keep"), default="strip",
                   help="the source's EXIF and XMP (camera, date, GPS position): strip them (the default) or "
                        "keep them in the file; decompress writes them into PNG, TIFF and WebP outputs")
    p.add_argument("--icc", choices=("keep", "convert"), default="keep",
                   help="an RGB image's colour profile other than sRGB (Display P3, Adobe RGB): keep it with the "
                        "image's numbers (the default; decompress writes it into PNG, TIFF and WebP outputs) or "
                        "convert the image to sRGB. CMYK images are always converted")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="onnx: the torch-free encoder (edgecodec.lite) with onnxruntime, at a --quality, "
                        "--target-size or --target-bpp (not --target-psnr, --target-ms-ssim, --refine or "
                        "--metrics); images above 2 MP are tiled as by the PyTorch encoder")
    p.add_argument("--onnx-dir", type=path_name,
                   help="--backend onnx: an `edgecodec export onnx` folder (then torch is not needed; default: "
                        "export the model into the cache on first use)")
    p.add_argument("--refine", type=int_at_least(0), default=0, metavar="STEPS",
                   help="optimise the latent for each image for STEPS gradient steps: fewer bytes at the same "
                        "quality, decodable by every decoder, but slower encoding (about 0.4 s a step for a "
                        "Kodak image at 2 threads; 50 is a good start). Fidelity models, images up to 2 MP. "
                        "Default 0 (off)")
    p.add_argument("--roi", type=region, action="append", metavar="LEFT,TOP,WIDTH,HEIGHT",
                   help="a region of interest, coded at --roi-quality while the rest gets --quality (or the "
                        "quality a target finds), never below the rest's; repeat for several. In cells of 16 x 16 "
                        "pixels: a cell in a region gets its quality, and one within 8 pixels of it most of it "
                        "(three quarters of the way from the rest's); with a folder, the same rectangles in "
                        "every image. "
                        "Hyperprior models")
    p.add_argument("--roi-mask", type=path_name, metavar="IMAGE",
                   help="regions of interest as a grayscale image of the input's size: white is coded at "
                        "--roi-quality, black at --quality, grays between. With a folder of images, a folder "
                        "of masks: the mask of IN/a/b.jpg is MASKS/a/b.png, and an image without one is coded "
                        "without regions")
    p.add_argument("--roi-quality", type=unit_interval, metavar="Q",
                   help="quality of the regions of interest, 0 to 1 (default 1)")
    p.add_argument("--metrics", action="store_true", help="decode again and print PSNR and MS-SSIM")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help=".edc to PNG (or TIFF, lossless WebP, BMP, PPM by the output's suffix)")
    common(p)
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="onnx: the torch-free decoder (edgecodec.lite) with onnxruntime; format 3 and later")
    p.add_argument("--alpha", choices=("keep", "drop"), default="keep",
                   help="a kept alpha channel: write it (the default; PNG, TIFF and WebP hold it) or drop it")
    p.add_argument("--onnx-dir", type=path_name, help="--backend onnx: an `edgecodec export onnx` folder "
                                      "(default: export the file's model into the cache on first use)")
    # The lite decoder refuses an export without decoder.int8.onnx (no silent fp32 fallback); say so.
    p.add_argument("--int8", action="store_true",
                   help="--backend onnx with --onnx-dir: decode with the int8 synthesis (decoder.int8.onnx, "
                        "written by `export onnx --int8 IMAGES`); an export without it is refused (exit 2)")
    p.add_argument("--region", type=region, metavar="LEFT,TOP,WIDTH,HEIGHT",
                   help="decode only this part of the image (pixels); a large (tiled) image decodes only "
                        "the tiles it needs. The pixels equal the whole image's crop")
    p.add_argument("--format", dest="image_format", choices=("png", "tif", "webp", "bmp", "ppm"),
                   help="the decoded images' format for a folder, standard output or no -o (default png; "
                        "an -o FILE's suffix names it)")
    p.set_defaults(func=cmd_decompress)

    p = sub.add_parser("export", help="deployment exports")
    export_sub = p.add_subparsers(dest="format", required=True, metavar="onnx")
    p = export_sub.add_parser("onnx", help="ONNX graphs + entropy tables for the torch-free decoder")
    p.add_argument("--model", help="model name (default: the default model)")
    p.add_argument("-o", "--output", type=path_name, required=True,
                   help="output folder: new, empty, or an earlier export (replaced); any other folder is refused")
    p.add_argument("--int8", type=path_name, metavar="IMAGES",
                   help="also write decoder.int8.onnx, calibrated on this folder's images (not your test set), "
                        "e.g. ../shared/data/train")
    p.set_defaults(func=cmd_export_onnx)

    p = sub.add_parser("info", help="show every header field of .edc files")
    p.add_argument("input", nargs="+", type=path_name, help=".edc file(s), or - for standard input")
    p.add_argument("--json", action="store_true", help="print the fields as JSON (extras: tag -> bytes; a list "
                                                       "for several files)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list installed models")
    p.add_argument("--json", action="store_true",
                   help="print them as JSON (name, default, weights, parameters, bpp range and the folder it was "
                        "measured on, summary; hides: the weights files of that name it hides; problem: why one "
                        "cannot be used; warning: a card that does not describe its weights)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("--config", type=path_name,
                   help="a config file, or a shipped one's name: cae, crb, gcrb, edge/fidelity-context, ... "
                        "(configs/NAME.yaml; with --resume: default RUN/config.yaml)")
    p.add_argument("--data", type=path_name, help="training image folder (overrides data.root)")
    p.add_argument("--steps", type=int_at_least(1),
                   help="stop at this step; the learning-rate schedule still follows train.steps "
                        "(to lengthen a run's schedule, override train.steps=N)")
    p.add_argument("--out", type=path_name, help="run folder (default runs/NAME)")
    p.add_argument("--resume", type=path_name, metavar="RUN", help="continue RUN from its last checkpoint")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.lr=1e-4")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("plot-training", help="chart PSNR, SSIM and bpp against the step for training runs")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (with val.csv)")
    p.add_argument("-o", "--output", type=path_name, required=True, help="image to write, e.g. OUT.png")
    p.add_argument("--title", help="figure title")
    p.add_argument("--force", action="store_true", help="replace the image if it exists")
    p.set_defaults(func=cmd_plot_training)

    p = sub.add_parser("export-model", help="export a run's checkpoint as a named model")
    p.add_argument("run", help="run folder (its newest checkpoint), or one checkpoint file of it (RUN/best.pt)")
    p.add_argument("--name", required=True, help="the model's name, as compress --model takes it")
    p.add_argument("--out", type=path_name, help="folder for NAME.safetensors/.json (default: the user model folder)")
    p.add_argument("--summary", default="", help="one line for `edgecodec models`")
    p.add_argument("--kodak", type=path_name, help="measure the model on this folder of PNGs and record it in the card")
    p.add_argument("--qualities", type=numbers,
                   help=f"with --kodak: the qualities to measure (default {CARD_QUALITIES})")
    p.add_argument("--min-level", type=finite_number, default=None,
                   help="level that quality 0 maps to (< 0 extrapolates the gains below the lowest trained level)")
    p.add_argument("--previous", type=path_name, metavar="CARD",
                   help="the card of the model this run continues (e.g. the shipped one): its training history "
                        "is carried over and this run's stage appended, compared on the Kodak points with --kodak")
    p.add_argument("--force", action="store_true", help="replace a model of that name in the output folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export_model)

    from .eval.command import add_bdrate_parser, add_eval_parser, add_metrics_parser
    add_eval_parser(sub)
    add_metrics_parser(sub)
    add_bdrate_parser(sub)

    from .web.command import add_serve_parser
    add_serve_parser(sub)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager, `kill`, a job scheduler), raised where the program is, so the
    clean-up a Ctrl+C runs (temporary files and folders removed) runs for it too."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


# Commands that never load torch: their start stays fast (no torch import held for them).
TORCH_FREE_COMMANDS = frozenset({"info", "plot-training", "bdrate"})


def _import_holding_signals(module: str) -> None:
    """Import ``module`` with Ctrl+C (and SIGTERM, where edgecodec handles it) held until it is in.

    torch's import runs pybind11 initialisers that call back into Python (torch.distributed's
    _c10d_init); a KeyboardInterrupt raised there aborts the process with SIGABRT and a C++
    message ("terminate called after throwing ... error_already_set") instead of exit 130. Seen
    about once in fifty Ctrl+C pressed in a command's first second.
    """
    if module in sys.modules or threading.current_thread() is not threading.main_thread():
        importlib.import_module(module)
        return
    held: list[int] = []
    # SIGINT as the process takes it (ignored in a `cmd &` job started from a script: it stays ignored)
    signals = ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is signal.default_int_handler else []) + \
        ([signal.SIGTERM] if signal.getsignal(signal.SIGTERM) is _raise_terminated else [])
    previous = {signum: signal.signal(signum, lambda signum, frame: held.append(signum)) for signum in signals}
    try:
        importlib.import_module(module)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if signal.SIGTERM in held:
        raise Terminated()
    if held:
        raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # A file name that is not valid in the locale's encoding (bytes from another system) is
        # printed escaped: a strict UTF-8 stream would fail on it after its file was written.
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
    try:
        parser = build_parser()  # imports the subcommands' modules: about half a second
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("edgecodec: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    # Signal handlers live in the main thread. Under torchrun, SIGTERM stays its kill: a worker
    # blocked in a collective with a failed peer would never reach a Python handler.
    handled = threading.current_thread() is threading.main_thread() and "WORLD_SIZE" not in os.environ
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if handled else None
    try:
        return _run(args)
    finally:
        if previous is not None:  # None: a handler not set from Python, which cannot be put back
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from .errors import EdgecodecError, UsageError

    try:  # Pillow warns of an image over its limit before edgecodec refuses it (exit 7): one line, not two
        from PIL.Image import DecompressionBombWarning
    except ImportError:  # a device with the lite decoder only
        pass
    else:
        warnings.simplefilter("ignore", DecompressionBombWarning)
    try:
        if os.environ.get("EDGECODEC_MAX_PIXELS"):  # a bad value: one usage error, not one per file of a folder
            from .codec.limits import default_max_pixels
            default_max_pixels()
        if getattr(args, "backend", "torch") != "onnx" and args.command not in TORCH_FREE_COMMANDS:
            try:
                _import_holding_signals("torch")
            except ModuleNotFoundError as exc:
                if exc.name != "torch":
                    raise
                raise UsageError(f"PyTorch is not installed, and `edgecodec {args.command}` needs it; without it, "
                                 "compress and decompress take --backend onnx --onnx-dir DIR (README, On the edge)"
                                 ) from None
            if args.threads:  # the lite coders (--backend onnx) take it themselves
                import torch
                torch.set_num_threads(args.threads)
        return args.func(args)
    except EdgecodecError as exc:
        print(one_line(f"edgecodec: error: {exc}"), file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        sys.stdout = open(os.devnull, "w")
        return 0
    except Terminated:
        print("edgecodec: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("edgecodec: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ValueError as exc:  # bad argument values caught inside the library
        print(one_line(f"edgecodec: error: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as exc:  # a path given on the command line or in a config
        print(one_line(f"edgecodec: error: not found: {exc.filename or exc}"), file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # never show users a traceback; EDGECODEC_DEBUG=1 shows it
        if isinstance(exc, ModuleNotFoundError) and exc.name == "PIL":  # a device set up for edgecodec.lite
            print(f"edgecodec: error: Pillow is not installed, and `edgecodec {args.command}` needs it (pip install "
                  "pillow); without it, code in Python with edgecodec.lite's LiteEncoder and LiteDecoder "
                  "(README, On the edge)", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG and exc.filename:
            # An input path no file can have: Path.exists() and is_dir() raise for it, not False.
            print(one_line(f"edgecodec: error: file name too long: {exc.filename}"), file=sys.stderr)
            return EXIT_USAGE
        if os.environ.get("EDGECODEC_DEBUG"):
            raise
        print(one_line(f"edgecodec: internal error: {type(exc).__name__}: {exc} (set EDGECODEC_DEBUG=1 for details)"),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
