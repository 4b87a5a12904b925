"""Classical image codecs through Pillow, set up like the anchors in ``shared/data/anchors``.

Each codec turns an 8-bit RGB array into the bytes of a complete file (container and headers
included: that is what bpp is computed from) and back. The settings match
``anchors/classical_kodak.csv``:

========  =====================================================================================
jpeg      libjpeg-turbo (Pillow's), 4:2:0 chroma subsampling, optimised Huffman tables, baseline
webp      libwebp (Pillow's), lossy, ``method=6`` (slowest, best), default sharp-YUV off
avif      libavif (Pillow >= 11's built-in plugin) with the aom encoder, ``speed=6``, 4:2:0,
          full range; decoded with whichever AV1 decoder libavif offers (dav1d here)
jxl       libjxl through ``pillow-jxl-plugin``, ``effort=7``, no container box
heic      libheif through ``pillow-heif`` with x265 (HEVC) at its default preset, 4:2:0: what
          phones write (not in ``anchors/``, nor in ``eval``'s default codecs; ``--codecs ...,heic``)
========  =====================================================================================

Everything runs single-threaded (``max_threads=1`` for AVIF, ``num_threads=0`` for JPEG XL, one
x265 pool thread and libde265 on one thread for HEIC; JPEG and WebP are single-threaded in
Pillow), so timings compare with the learned codec on one core.

Quality scales are each codec's own (0-100, higher is better). ``Codec.sweep`` lists qualities
that cover about 0.05-2 bpp on Kodak where the codec can reach it: JPEG cannot go far below
0.1 bpp, so its sweep starts there.
"""

from __future__ import annotations

import copy
import functools
import io
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image

JPEG_SETTINGS: dict[str, Any] = {"subsampling": "4:2:0", "optimize": True, "progressive": False}
WEBP_SETTINGS: dict[str, Any] = {"method": 6, "lossless": False}
AVIF_SETTINGS: dict[str, Any] = {"codec": "aom", "speed": 6, "subsampling": "4:2:0", "range": "full",
                                 "max_threads": 1}
JXL_SETTINGS: dict[str, Any] = {"effort": 7, "num_threads": 0, "use_container": False, "lossless": False}
HEIC_SETTINGS: dict[str, Any] = {"chroma": 420, "enc_params": {"x265:pools": "1", "x265:frame-threads": "1"}}

# Qualities per codec: about 0.05 (or the codec's floor) to 2+ bpp on Kodak, denser where curves bend.
JPEG_SWEEP = (2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85, 90)
WEBP_SWEEP = (0, 2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85, 90)
AVIF_SWEEP = (0, 5, 10, 15, 20, 30, 40, 50, 60, 70, 75, 80, 85)
JXL_SWEEP = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90)
HEIC_SWEEP = (0, 3, 6, 10, 14, 18, 22, 26, 30, 35, 40, 45, 50, 55)


class CodecUnavailableError(RuntimeError):
    """The Pillow build here lacks this codec (e.g. no AVIF support, or pillow-jxl-plugin missing)."""


@dataclass(frozen=True)
class Codec:
    name: str
    label: str
    extension: str
    pil_format: str
    settings: dict[str, Any]
    sweep: tuple[int, ...]
    quality_range: tuple[int, int]
    _check: Callable[[], None] = field(repr=False, compare=False)

    def available(self) -> bool:
        try:
            self._check()
        except CodecUnavailableError:
            return False
        return True

    def settings_id(self) -> str:
        """A string naming library versions and settings: part of the runner's cache key."""
        return f"{self.name}:{library_version(self.name)}:{sorted(self.settings.items())}"

    def encode(self, rgb: np.ndarray, quality: int) -> bytes:
        """The whole file, as the codec writes it, for an (H, W, 3) uint8 array."""
        self._check()
        lo, hi = self.quality_range
        if not lo <= int(quality) <= hi or int(quality) != quality:
            raise ValueError(f"{self.name} quality must be an integer in [{lo}, {hi}], got {quality}")
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.dtype} {rgb.shape}")
        buf = io.BytesIO()
        settings = copy.deepcopy(self.settings)  # pillow-heif writes into the enc_params it is given
        image = Image.fromarray(rgb, "RGB")
        if self.pil_format == "JPEG" and _is_gray(rgb):  # one component, as JPEG tools code gray images
            image = image.convert("L")  # (three cost 17% more bytes for the same PSNR on a gray photo)
        image.save(buf, format=self.pil_format, quality=int(quality), **settings)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        """An (H, W, 3) uint8 array from the file bytes."""
        self._check()
        with Image.open(io.BytesIO(data)) as img:
            if img.format != self.pil_format:
                raise ValueError(f"expected a {self.pil_format} file, got {img.format}")
            return np.array(img.convert("RGB"))


def _is_gray(rgb: np.ndarray) -> bool:
    # A colour photo differs in its first row already: it costs microseconds inside the timed encode,
    # not the 0.2 ms of a whole comparison on a Kodak image.
    first = rgb[0]
    if not ((first[:, 0] == first[:, 1]).all() and (first[:, 1] == first[:, 2]).all()):
        return False
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _check_pillow(feature: str) -> Callable[[], None]:
    def check() -> None:
        from PIL import features

        if not features.check(feature):
            raise CodecUnavailableError(f"this Pillow ({Image.__version__}) was built without {feature} support")
        if feature == "avif":
            _single_thread_avif()

    return check


@functools.lru_cache(maxsize=None)
def _single_thread_avif() -> None:
    from PIL import AvifImagePlugin, _avif

    if not _avif.encoder_codec_available("aom"):
        raise CodecUnavailableError("Pillow's libavif has no aom encoder")
    AvifImagePlugin.DEFAULT_MAX_THREADS = 1  # the decoder reads this module global


@functools.lru_cache(maxsize=None)  # a failure is not cached: it raises again
def _check_jxl() -> None:
    try:
        import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)
        from pillow_jxl import JpegXLImagePlugin
    except ImportError:
        raise CodecUnavailableError(
            "JPEG XL needs the pillow-jxl-plugin package (pip install pillow-jxl-plugin)") from None
    JpegXLImagePlugin.DECODE_THREADS = 0  # 0 disables the decoder's thread pool


@functools.lru_cache(maxsize=None)
def _check_heic() -> None:
    try:
        import pillow_heif
    except ImportError:
        raise CodecUnavailableError("HEIC needs the pillow-heif package (pip install pillow-heif)") from None
    if "x265" not in pillow_heif.libheif_info().get("encoders", {}):
        raise CodecUnavailableError("pillow-heif's libheif has no x265 encoder")
    pillow_heif.register_heif_opener()
    pillow_heif.options.DECODE_THREADS = 1


@functools.lru_cache(maxsize=None)
def library_version(name: str) -> str:
    from PIL import features

    try:
        if name == "jpeg":
            return f"libjpeg-turbo {features.version('jpg')}, Pillow {Image.__version__}"
        if name == "webp":
            return f"libwebp {features.version('webp')}, Pillow {Image.__version__}"
        if name == "avif":
            from PIL import _avif
            return f"libavif {features.version('avif')} ({_avif.codec_versions()}), Pillow {Image.__version__}"
        if name == "jxl":
            from importlib.metadata import version
            return f"pillow-jxl-plugin {version('pillow-jxl-plugin')}"
        if name == "heic":
            import pillow_heif
            info = pillow_heif.libheif_info()
            return f"libheif {info['libheif']} ({info['encoders']['x265']}), pillow-heif {pillow_heif.__version__}"
    except Exception:  # noqa: BLE001 - a version string is informative only
        pass
    return "unknown"


CODECS: dict[str, Codec] = {
    "jpeg": Codec("jpeg", "JPEG", ".jpg", "JPEG", JPEG_SETTINGS, JPEG_SWEEP, (1, 100), _check_pillow("jpg")),
    "webp": Codec("webp", "WebP", ".webp", "WEBP", WEBP_SETTINGS, WEBP_SWEEP, (0, 100), _check_pillow("webp")),
    "avif": Codec("avif", "AVIF", ".avif", "AVIF", AVIF_SETTINGS, AVIF_SWEEP, (0, 100), _check_pillow("avif")),
    # JPEG XL stops at 99: quality 100 is distance 0, which libjxl encodes only in lossless mode (it
    # raised "The encoder API is used in an incorrect way" with lossless=False).
    "jxl": Codec("jxl", "JPEG XL", ".jxl", "JXL", JXL_SETTINGS, JXL_SWEEP, (1, 99), _check_jxl),
    "heic": Codec("heic", "HEIC", ".heic", "HEIF", HEIC_SETTINGS, HEIC_SWEEP, (0, 100), _check_heic),
}


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unknown classical codec {name!r}; known: {', '.join(CODECS)}") from None


def available_codecs() -> list[str]:
    return [name for name, codec in CODECS.items() if codec.available()]


def _bisect(size: Callable[[int], float], lo: int, hi: int, limit: float) -> tuple[int, int]:
    """Narrow integer qualities to neighbours lo, hi with size(lo) <= limit < size(hi)
    (sizes are close to monotone in quality)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if size(mid) > limit:
            hi = mid
        else:
            lo = mid
    return lo, hi


def encode_to_bpp(codec: Codec, rgb: np.ndarray, target_bpp: float) -> tuple[int, bytes]:
    """The integer quality whose file is closest to ``target_bpp`` (bisection; sizes are close to
    monotone in quality), and that file."""
    pixels = rgb.shape[0] * rgb.shape[1]
    lo, hi = codec.quality_range
    tried: dict[int, bytes] = {}

    def size(q: int) -> float:
        if q not in tried:
            tried[q] = codec.encode(rgb, q)
        return 8 * len(tried[q]) / pixels

    lo, hi = _bisect(size, lo, hi, target_bpp)
    best = min((lo, hi), key=lambda q: abs(size(q) - target_bpp))
    return best, tried[best]


def encode_to_size(codec: Codec, rgb: np.ndarray, max_bytes: int) -> tuple[int, bytes, bool]:
    """The file closest to ``max_bytes`` without exceeding it: (quality, file, True). Bisection over
    the integer qualities; of all the files tried, the largest that fits wins (sizes are only close
    to monotone in quality). When even the lowest quality is larger: (lowest quality, its file, False).
    """
    lo, hi = codec.quality_range
    tried: dict[int, bytes] = {}

    def size(q: int) -> int:
        if q not in tried:
            tried[q] = codec.encode(rgb, q)
        return len(tried[q])

    if size(lo) > max_bytes:
        return lo, tried[lo], False
    if size(hi) > max_bytes:
        _bisect(size, lo, hi, max_bytes)
    best = max((q for q, data in tried.items() if len(data) <= max_bytes), key=lambda q: (len(tried[q]), q))
    return best, tried[best], True


__all__ = ["CODECS", "Codec", "CodecUnavailableError", "available_codecs", "encode_to_bpp", "encode_to_size",
           "get_codec", "library_version"]
