"""Turning user input (path, encoded bytes, PIL image, HxWx3 or HxWx4 array) into 8-bit RGB, recording
what was converted, with the alpha plane and metadata the file keeps beside it (codec/extras.py)."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ..errors import FormatError, ImageTooLargeError, InputImageError, UsageError
from .container import EXIF, ICC, MAGIC, XMP, Container, read_file
from .limits import (MAX_METADATA_BYTES, check_pixels, is_binary_stream, max_input_bytes, pixel_limit,
                     read_limited)

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]

# File suffixes read as images: by folder runs of `compress` and by the training data loader.
# JPEG XL and HEIC / HEIF (phones' photos) through the plugins ``register_plugins`` loads.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm",
                  ".pbm", ".pnm", ".gif", ".avif", ".jxl", ".heic", ".heif"}
ALPHA_MODES = {"RGBA", "LA", "PA"}  # and the premultiplied RGBa and La, converted to these first
ALPHA_POLICIES = ("keep", "drop", "refuse")  # keep: coded losslessly beside the picture (codec/extras.py)
METADATA_POLICIES = ("strip", "keep")  # EXIF and XMP; stripped by default, as cwebp does (GPS positions, bytes)
# An RGB source's ICC profile other than sRGB: kept (its numbers coded as they are, the profile
# stored, so the decoded image is tagged with it, as JPEG, AVIF and JPEG XL files keep theirs: a
# Display P3 photo keeps its gamut) or converted to sRGB. CMYK sources are always converted.
ICC_POLICIES = ("keep", "convert")
EXIF_PREFIX = b"Exif\x00\x00"  # of a JPEG's APP1 segment, and of Pillow's info["exif"]
# Formats whose extra frames are images of their own (animation frames, pages), which coding only
# the first would silently lose. (A JPEG's MPO frames are previews or stereo views: not refused.)
MULTI_FRAME_FORMATS = ("GIF", "PNG", "WEBP", "TIFF", "AVIF", "JXL", "HEIF")


@functools.cache
def register_plugins() -> None:
    """Teach Pillow JPEG XL (pillow-jxl-plugin) and HEIC / HEIF (pillow-heif), where installed
    (requirements-lite.txt installs neither); once, before the first image is opened."""
    try:
        import pillow_jxl  # noqa: F401  (registers the JXL format)
    except ImportError:
        pass
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


@dataclass(frozen=True)
class PreparedImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    channels: int  # of the source
    bit_depth: int  # of the source
    conversions: int  # container.CONVERSIONS flags
    alpha: np.ndarray | None = None  # (H, W) uint8, kept (alpha="keep") from a source with transparency
    exif: bytes | None = None  # kept EXIF block (metadata="keep"), TIFF-structured, orientation removed if applied
    xmp: bytes | None = None  # kept XMP packet, UTF-8
    icc: bytes | None = None  # kept ICC profile of an RGB source (icc="keep"), which ``rgb``'s numbers are in


def source_bit_depth(img: Image.Image) -> int:
    """Bits per channel of the source. Call before ``load()``: loading clears the raw-mode info."""
    if img.mode == "1":
        return 1
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        return 16 if img.mode.startswith("I;16") else 32
    # Pillow reads 16-bit-per-channel RGB(A) PNG/TIFF as 8-bit; the raw mode still tells.
    if any("16" in r for r in _raw_modes(img)):
        return 16
    return 8


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation that asks for a turn or a flip (2 to 8), else 1. An EXIF block Pillow
    cannot parse (a PNG's or WebP's damaged eXIf) or a value outside 1-8 is no orientation, as
    viewers take it: such a block refused the image (a SyntaxError from Pillow for a PIL image), and
    a value of 9 was recorded as "EXIF orientation applied" with nothing turned."""
    try:
        value = img.getexif().get(0x0112, 1)
    except (SyntaxError, ValueError, OSError, EOFError, IndexError, struct.error):
        return 1
    return value if isinstance(value, int) and 2 <= value <= 8 else 1


def _gray_alpha_16(img: Image.Image) -> bool:
    """Whether an opened, not yet loaded RGBA image is a 16-bit gray + alpha PNG, which Pillow reads
    as RGBA (the raw mode tells, until ``load()`` clears it): coded as gray + alpha, not as colour."""
    return img.mode == "RGBA" and any(r.startswith("LA;16") for r in _raw_modes(img))


def _palette_alpha(img: Image.Image) -> bool:
    """A palette image whose palette holds alpha (what ``quantize()`` or ``convert("P")`` of an RGBA
    image makes: no info["transparency"], which only files carry); Pillow >= 10.1's
    ``has_transparency_data`` says the same, and pyproject allows Pillow 10.0."""
    return img.mode == "P" and img.palette is not None and img.palette.mode.endswith("A")


def _raw_modes(img: Image.Image) -> list[str]:
    """The raw modes of an opened, not yet loaded image's tiles (``load()`` clears them)."""
    rawmodes = [t[3] if len(t) > 3 else None for t in (getattr(img, "tile", None) or [])]
    rawmodes = [r[0] if isinstance(r, tuple) else r for r in rawmodes]
    return [r for r in rawmodes if isinstance(r, str)]


def _check_policies(alpha: str, metadata: str, icc: str) -> None:
    if alpha not in ALPHA_POLICIES:
        raise UsageError(f"alpha must be one of {ALPHA_POLICIES}, not {alpha!r}")
    if metadata not in METADATA_POLICIES:
        raise UsageError(f"metadata must be one of {METADATA_POLICIES}, not {metadata!r}")
    if icc not in ICC_POLICIES:
        raise UsageError(f"icc must be one of {ICC_POLICIES}, not {icc!r}")


def _alpha_plane(img: Image.Image) -> np.ndarray:
    """The (H, W) uint8 alpha of an image with transparency (an alpha band, a palette's or a colour key's)."""
    if "A" in img.getbands():
        return np.array(img.getchannel("A"))
    key = img.info.get("transparency")
    if (img.mode.startswith("I") or img.mode == "F") and isinstance(key, (int, float)):
        # A 16-bit grayscale PNG's colour key: convert("RGBA") ignores it in these modes.
        return np.where(np.asarray(img) == key, 0, 255).astype(np.uint8)
    return np.array(img.convert("RGBA").getchannel("A"))  # palette or colour-key transparency


# The tags of a TIFF's own directory that describe the photo rather than the TIFF's pixel layout:
# EXIF's IFD0 tags (camera, date, author, resolution) and its EXIF and GPS sub-directories.
_TIFF_EXIF_TAGS = (0x010E, 0x010F, 0x0110, 0x011A, 0x011B, 0x0128, 0x0131, 0x0132, 0x013B, 0x013C, 0x8298)
_TIFF_EXIF_IFDS = (0x8769, 0x8825)


def _tiff_exif(img: Image.Image) -> bytes | None:
    """A TIFF source's EXIF block. Pillow gives TIFFs no info["exif"]: their EXIF tags sit in the
    image's own directory, beside the strip offsets and sample formats that no other file may take."""
    tags = img.getexif()
    exif = Image.Exif()
    for tag in _TIFF_EXIF_TAGS:
        if tag in tags:
            exif[tag] = tags[tag]
    for tag in _TIFF_EXIF_IFDS:
        if tag in tags and tags.get_ifd(tag):
            exif[tag] = dict(tags.get_ifd(tag))  # a dict: tobytes() writes the sub-directory
    return exif.tobytes()[len(EXIF_PREFIX):] if len(exif) else None


def _metadata(img: Image.Image) -> tuple[bytes | None, bytes | None]:
    """The EXIF block (without the APP1 prefix) and XMP packet of a JPEG, PNG, WebP, AVIF, JPEG XL
    or TIFF source, as Pillow read them; after ``exif_transpose`` they no longer claim a rotation."""
    exif, xmp = img.info.get("exif"), img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
    if exif is None and img.format == "TIFF":
        exif = _tiff_exif(img)
    if isinstance(exif, bytes) and exif.startswith(EXIF_PREFIX):
        exif = exif[len(EXIF_PREFIX):]
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return (bytes(exif) if isinstance(exif, bytes) and exif else None,
            bytes(xmp) if isinstance(xmp, bytes) and xmp else None)


def prepare_pil(img: Image.Image, alpha: str = "keep", max_pixels: int | None = None,
                bit_depth: int | None = None, metadata: str = "strip", icc: str = "keep",
                oriented: bool = False) -> PreparedImage:
    """Convert a PIL image to 8-bit RGB; flags follow ``container.CONVERSIONS``. ``alpha``: keep
    the alpha plane (coded losslessly), drop it, or refuse the image; ``metadata``: keep or strip
    EXIF and XMP; ``icc``: keep an RGB source's profile or convert to sRGB (``ICC_POLICIES``).
    ``oriented``: the reader already applied the file's EXIF orientation (Pillow's TIFF loader does)."""
    _check_policies(alpha, metadata, icc)
    if img.width == 0 or img.height == 0:  # Image.new("RGB", (0, 0)): no file holds one; torch's convolutions fail
        raise InputImageError(f"image is empty ({img.width}x{img.height} pixels)")
    check_pixels(img.width, img.height, max_pixels)
    flags = 16 if oriented else 0
    depth = bit_depth or source_bit_depth(img)
    if _gray_alpha_16(img):  # an opened PIL image (load_image converts those it opens itself)
        img = img.convert("LA")
    profile = img.info.get("icc_profile")
    if _orientation(img) != 1:
        img = ImageOps.exif_transpose(img)
        flags |= 16
    if img.mode in ("La", "RGBa"):  # premultiplied (in-memory images only): LA / RGBA, which convert() knows
        img = img.convert(img.mode.upper())
    mode = img.mode
    # An alpha band, or a palette's or a colour key's transparency (PNG tRNS, GIF), in any mode.
    has_alpha = mode in ALPHA_MODES or "transparency" in img.info or _palette_alpha(img)
    if has_alpha and alpha == "refuse":
        raise InputImageError(f"image has an alpha channel (mode {mode}): pass --alpha keep (alpha='keep') to "
                              "code it losslessly, or --alpha drop (alpha='drop') to discard it")
    alpha_plane = _alpha_plane(img) if has_alpha and alpha == "keep" else None
    if has_alpha and alpha == "drop":
        flags |= 8
    exif, xmp = _metadata(img) if metadata == "keep" else (None, None)
    kept_profile = None
    channels = len(img.getbands())
    if mode in ("P", "PA"):
        flags |= 2
        img = img.convert("RGBA" if has_alpha else "RGB")
        channels = 4 if has_alpha else 3
    if mode == "1":
        flags |= 64 | 1
        img = img.convert("L")
    if img.mode.startswith("I") or img.mode == "F":
        # A float image's NaN and infinities have no level: 0 (they made the cast warn and the scale NaN).
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        peak = arr.max(initial=0)
        if img.mode == "F" and peak <= 1:  # floats on [0, 1], as TIFF readers take them: / 257 coded them black
            flags |= 4
            arr = arr * 255.0
        elif img.mode.startswith("I;16") or peak > 255:
            flags |= 4
            arr = arr / 257.0 if peak <= 65535 else arr / peak * 255.0
        # else 32-bit integers or floats on 0-255 (img.convert("I") or "F" of an 8-bit image): 8-bit
        # levels, as Pillow's own convert("L") takes them (/ 257 coded them black)
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    elif depth == 16:
        flags |= 4
    if img.mode in ("L", "LA"):
        flags |= 1
        rgb = img.convert("L").convert("RGB")
    else:
        if img.mode not in ("RGB", "RGBA"):  # CMYK, YCbCr, LAB, HSV ...
            flags |= 32
        source = img.convert("RGB") if img.mode == "RGBA" else img
        if icc == "keep" and source.mode == "RGB" and _foreign_profile(profile, "RGB") is not None:
            kept_profile = bytes(profile)  # the numbers stay in the profile's space
            converted = None
        else:
            converted = icc_to_srgb(source, profile)
        if converted is not None:
            flags |= 128
            rgb = converted
        else:  # convert() would copy an RGB image once more before np.array copies it (133 MB for 8K)
            rgb = source if source.mode == "RGB" else source.convert("RGB")
    kept = sum(len(block) for block in (exif, xmp, kept_profile) if block)
    if kept > MAX_METADATA_BYTES:  # a reader would refuse the file (limits.max_input_bytes)
        raise InputImageError(f"the image's metadata and colour profile to keep take {kept} bytes, over the limit "
                              f"of {MAX_METADATA_BYTES} bytes an .edc file holds: pass --metadata strip "
                              "(metadata='strip') or --icc convert (icc='convert')")
    return PreparedImage(np.array(rgb, dtype=np.uint8), channels, depth, flags, alpha_plane, exif, xmp,
                         kept_profile)


def mask_levels(img: Image.Image, max_pixels: int | None = None) -> np.ndarray:
    """A region-of-interest mask as (H, W) uint8 levels, white the region: 16-bit, 32-bit and float
    masks are reduced to 8 bits as images are (``convert("L")`` clipped a 16-bit gray to white) unless
    their values all lie within 0-255 (8-bit levels saved in a 16-bit file), colour masks taken by
    their luma, and transparent pixels count as black (the background)."""
    check_pixels(img.width, img.height, max_pixels)  # before anything decodes it
    if img.mode.startswith("I;16"):
        levels = np.asarray(img)
        if levels.max(initial=0) <= 255:
            img = Image.fromarray(levels.astype(np.uint8), "L")
    prepared = prepare_pil(img, max_pixels=max_pixels)
    levels = np.asarray(Image.fromarray(prepared.rgb).convert("L"))
    if prepared.alpha is not None:
        levels = ((levels.astype(np.uint16) * prepared.alpha + 127) // 255).astype(np.uint8)
    return levels


def load_mask(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """A mask file's levels (``mask_levels``), read within the pixel limit as images are (Pillow's
    own limit would refuse a mask the caller allowed)."""
    with pillow_pixel_limit(pixel_limit(max_pixels)), Image.open(path) as img:
        return mask_levels(img, max_pixels)


def icc_to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image | None:
    """An RGB or CMYK image converted from its embedded ICC profile to 8-bit sRGB, which is what
    the models were trained on and what an untagged decoded PNG means (a Display P3 or Adobe RGB
    photo read as sRGB looks washed out). None when there is nothing to do: no profile, an sRGB one,
    another mode, or a profile LittleCMS cannot use (then ignored, as browsers do)."""
    profile = _foreign_profile(icc, img.mode)
    if profile is None:
        return None
    try:
        return ImageCms.profileToProfile(img, profile, _srgb_profile(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def _foreign_profile(icc: bytes | None, mode: str) -> ImageCms.ImageCmsProfile | None:
    """An embedded profile that matters: one LittleCMS reads, for this RGB or CMYK mode's colour
    space, and not sRGB (an sRGB image's numbers need nothing). None otherwise."""
    if not icc or mode not in ("RGB", "CMYK"):
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if profile.profile.xcolor_space.strip() != mode:
            return None
        if mode == "RGB" and _maps_as_srgb(bytes(icc)):
            return None
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError, AttributeError):
        return None
    return profile


@functools.lru_cache(maxsize=16)
def _maps_as_srgb(icc: bytes) -> bool:
    """Whether an RGB profile shows colours as sRGB does: every colour of an 18-level grid,
    converted from it to sRGB (relative colorimetric), moves by at most one level. Judged by what
    the profile does, not by its name: profiles named "sRGB" in the training photos include one
    that moves colours by up to 9 levels, and sRGB under another name needs nothing either."""
    levels = np.linspace(0, 255, 18).round().astype(np.uint8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(1, -1, 3)
    shown = ImageCms.profileToProfile(Image.fromarray(grid, "RGB"), ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                      _srgb_profile(), renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                      outputMode="RGB")
    return int(np.abs(np.asarray(shown, dtype=np.int16) - grid).max()) <= 1


@functools.lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


# Reentrant: an .edc input is decoded by the Pillow plugin inside this context, so anything the codec
# opens with Pillow there re-enters it in the same thread (when kept alpha planes were PNGs, that
# deadlocked).
_PILLOW_LIMIT_LOCK = threading.RLock()


@contextlib.contextmanager
def pillow_pixel_limit(limit: int) -> Iterator[None]:
    """Let our pixel ``limit`` (checked right after the header is read, before decoding) govern
    where Pillow's global decompression-bomb limit would refuse an image the user allowed: Pillow
    refuses at Image.open above twice its MAX_IMAGE_PIXELS. Only then is the global lifted, under a
    lock (Pillow offers nothing else; other threads' opens skip its check meanwhile). Within twice
    Pillow's limit it is left alone: a service's own setting, or its other threads, are not touched."""
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is None or limit <= 2 * pillow_limit:
        yield
        return
    with _PILLOW_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _refuse_frames(img: Image.Image, label: str) -> None:
    """Refuse an animated or multi-page image rather than code its current frame alone."""
    frames = getattr(img, "n_frames", 1)
    if frames > 1 and img.format in MULTI_FRAME_FORMATS:
        # "{label}: ", as every input error here starts: folder mode strips it (the path, shown already)
        raise InputImageError(f"{label}: {frames} frames (an animated or multi-page {img.format}); edgecodec codes "
                              "one picture: extract the frame you want first")


def read_image_stream(f: BinaryIO, name: str, max_pixels: int | None = None) -> bytes:
    """An image file's bytes from a stream (standard input, a pipe), read no further than an image
    within the pixel limit can be (``limits.max_input_bytes``): an endless stream is refused instead
    of filling the memory. ``name`` names the stream in the error."""
    allowed = pixel_limit(max_pixels)
    limit = max_input_bytes(allowed, allowed)
    data = read_limited(f, limit)
    if data is None:
        raise InputImageError(f"{name} holds more than {limit} bytes, more than an image within the pixel limit "
                              f"of {allowed} pixels can (--max-pixels, max_pixels= or EDGECODEC_MAX_PIXELS raise it)")
    return data


def _pillow_source(path: Path, max_pixels: int | None) -> Path | io.BytesIO:
    """What Image.open reads for a path: the path itself for a regular file or a seekable device
    (Pillow reads those lazily, and refuses /dev/zero at its first bytes); a pipe's bytes, read
    within ``read_image_stream``'s bound (Pillow would read a pipe whole, `<(cat x.png /dev/zero)`
    until memory ran out)."""
    if path.is_file():
        return path
    try:
        with open(path, "rb") as f:
            return path if f.seekable() else io.BytesIO(read_image_stream(f, str(path), max_pixels))
    except OSError as exc:
        raise InputImageError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_image(image: ImageInput, alpha: str = "keep", max_pixels: int | None = None,
               metadata: str = "strip", icc: str = "keep") -> PreparedImage:
    """Read a path, an image file's bytes or binary file object, a PIL image or an HxWx3 (RGB) or
    HxWx4 (RGBA) uint8 array into 8-bit RGB, with its alpha plane, metadata and colour profile as ``alpha``,
    ``metadata`` and ``icc`` say (``prepare_pil``)."""
    _check_policies(alpha, metadata, icc)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:  # an argument of the wrong type, as the README says
            raise TypeError(f"arrays must be HxWx3 or HxWx4 uint8, got dtype {image.dtype} (shape {image.shape})")
        if image.ndim != 3 or image.shape[2] not in (3, 4) or 0 in image.shape:
            raise UsageError(f"arrays must be HxWx3 or HxWx4 uint8, got shape {image.shape}")
        check_pixels(image.shape[1], image.shape[0], max_pixels)
        if image.shape[2] == 4:
            return prepare_pil(Image.fromarray(image, "RGBA"), alpha, max_pixels)
        return PreparedImage(np.ascontiguousarray(image), 3, 8, 0)
    if isinstance(image, Image.Image):
        _refuse_frames(image, "the image")  # an opened animated GIF is its current frame: not cut silently
        return prepare_pil(image, alpha, max_pixels, metadata=metadata, icc=icc)
    label = "the image data"
    if isinstance(image, (bytearray, memoryview)):
        image = bytes(image)
    elif is_binary_stream(image):  # an open file, sys.stdin.buffer, a response body
        label = str(getattr(image, "name", "the image stream"))
        image = read_image_stream(image, label, max_pixels)
    if not isinstance(image, (bytes, str, os.PathLike)):
        raise TypeError(f"expected an image path, an image file's bytes, a binary file object, a PIL image or a "
                        f"uint8 array, not {type(image).__name__}")
    if isinstance(image, bytes):
        if not image:
            raise InputImageError(f"{label} is empty")
        source = io.BytesIO(image)
    else:
        if not os.fspath(image):  # Path("") is ".": the error was ". is a folder, not an image"
            raise UsageError("the image path is empty")
        path = Path(image)
        if not path.exists():
            raise InputImageError(f"no such file: {path}")
        if path.is_dir():
            raise InputImageError(f"{path} is a folder, not an image")
        source, label = _pillow_source(path, max_pixels), str(path)
    limit = pixel_limit(max_pixels)
    register_plugins()
    try:
        with pillow_pixel_limit(limit), Image.open(source) as img:
            _refuse_frames(img, label)
            check_pixels(img.width, img.height, limit)
            depth = source_bit_depth(img)
            gray_alpha = _gray_alpha_16(img)  # until load() clears the raw mode
            orientation = _orientation(img) if img.format == "TIFF" else 1
            img.load()
            if gray_alpha:
                img = img.convert("LA")
            # Pillow's TIFF loader applies the orientation in load() and drops the tag
            oriented = orientation != 1 and _orientation(img) == 1
            return prepare_pil(img, alpha, limit, bit_depth=depth, metadata=metadata, icc=icc, oriented=oriented)
    except UnidentifiedImageError:
        raise InputImageError(f"{label}: {_unidentified_reason(source)}") from None
    except Image.DecompressionBombError:  # Pillow's refusal, at twice its limit: over ours too
        raise ImageTooLargeError(f"{label}: image exceeds the limit of {limit} pixels (--max-pixels, max_pixels= "
                                 "or EDGECODEC_MAX_PIXELS raise it)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputImageError(f"{label}: cannot decode image ({exc})") from None


def _unidentified_reason(source: Path | io.BytesIO) -> str:
    """Why Pillow identified no image: for a damaged .edc file, the container's own reason (the
    plugin's error is lost among the other formats' refusals), else that no plugin reads it."""
    try:
        with open(source, "rb") if isinstance(source, Path) else contextlib.nullcontext(source) as f:
            f.seek(0)
            if f.read(len(MAGIC)) == MAGIC:
                f.seek(0)
                Container.from_bytes(read_file(f, "the .edc data"))
    except FormatError as exc:
        return str(exc)
    except OSError:
        pass
    return "not an image Pillow can read"


def image_info(container: Container) -> dict[str, object]:
    """A decoded image's PIL ``info`` entries: the file's model and quality (``edc_model``,
    ``edc_quality``), its kept profile and metadata (the Pillow plugin sets them when it opens a
    file, ``extras.decoded_image`` when it decodes one, so both give the same)."""
    extras = container.extras
    info: dict[str, object] = {"edc_model": container.header.model, "edc_quality": container.header.quality}
    if extras.get(ICC):
        info["icc_profile"] = extras[ICC]
    if extras.get(EXIF):
        info["exif"] = EXIF_PREFIX + extras[EXIF]
    if extras.get(XMP):
        info["xmp"] = extras[XMP]
    return info


def to_pil(rgb: np.ndarray, grayscale_source: bool) -> Image.Image:
    """A decoded (H, W, 3) uint8 array as a PIL image: mode L for grayscale sources, else RGB."""
    image = Image.fromarray(rgb, "RGB")
    # A grayscale source was coded as R = G = B; the decoded channels agree up to coding error.
    return image.convert("L") if grayscale_source else image
