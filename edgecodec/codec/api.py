"""compress / decompress: images to .edc bytes and back."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import BinaryIO, Callable, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import zoo
from ..errors import FormatError, InputImageError, UsageError
from ..lite.qmap import RegionsOfInterest, coding_quality, file_quality
from ..lite.tiles import Region, check_region, crop_region
from .container import DEFAULT_QUALITY, QUALITY_SCALE, Container, Header, check_quality, read_file, valid_tile
from .extras import decoded_image, source_extras
from .imageio import ImageInput, PreparedImage, load_image, mask_levels
from .limits import check_padded_pixels, check_pixels, is_binary_stream
from .rate_search import (ScoreResult, SearchResult, bpp_to_bytes, parse_size, search_quality,  # noqa: F401
                          search_score, size_to_bytes)
from .refine import encode_refined, refinement_objective
from .tiling import TILE_PIXELS, analyze_tiled, choose_tile, compress_tiled, decompress_tiled, tiling_supported


def _to_tensor(rgb: np.ndarray, stride: int) -> torch.Tensor:
    x = torch.from_numpy(np.array(rgb, copy=not rgb.flags.writeable)).permute(2, 0, 1)[None].float() / 255.0
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % stride, -w % stride
    if pad_h or pad_w:
        # Edge replication costs fewer bits than zeros; the padding is cropped on decode.
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x


def _to_uint8(x: torch.Tensor, height: int, width: int) -> np.ndarray:
    # NaN (a hostile file's latents can overflow the synthesis) becomes 0, as in edgecodec.lite.
    x = x[0, :, :height, :width].nan_to_num(0.0).clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().numpy()


def score_metric(metric: str, target: float, shape: tuple[int, ...]) -> Callable[[np.ndarray, np.ndarray], float]:
    """The function that scores a decoded image for a quality target (``edgecodec.metrics``), after
    checking that the target can be met and that the image suits the metric."""
    from ..metrics import MS_SSIM_MIN_SIDE, ms_ssim, psnr

    if isinstance(target, bool) or not isinstance(target, (int, float, np.floating, np.integer)):
        raise TypeError(f"a target {metric} must be a number, not {type(target).__name__}")
    if metric == "psnr":
        if not (math.isfinite(target) and target > 0):
            raise UsageError(f"target PSNR must be a positive number of dB, not {target}")
        return psnr
    if metric == "ms-ssim":
        if not 0 < target <= 1:
            raise UsageError(f"target MS-SSIM must be in (0, 1], not {target}")
        if min(shape[:2]) < MS_SSIM_MIN_SIDE:
            raise InputImageError(f"MS-SSIM needs both sides of at least {MS_SSIM_MIN_SIDE} pixels; this image is "
                                  f"{shape[1]}x{shape[0]}: target PSNR instead")
        return ms_ssim
    raise UsageError(f"unknown quality metric {metric!r}: use 'psnr' or 'ms-ssim'")


class Encoder:
    """One prepared image and model: the analysis transform runs once, any quality is then cheap.

    ``tile``: latent pixels per tile side (a multiple of 16), 0 for one piece, or None to tile only
    images above ``tiling.TILE_PIXELS`` padded pixels (with ``tiling.TILE_LATENT``).

    ``refine_steps`` > 0 optimises the latent for this image at each quality it is encoded at
    (``refine.py``: slower encoding, fewer bytes, the same decoders); untiled images only.

    ``roi``: regions of interest (rectangles or a mask, ``lite.qmap.region_mask``) coded at
    ``roi_quality`` (never below the background's) while the quality given to ``encode`` is the
    background's: the file carries a quality map, one quality per 16 x 16 pixels (format version 7)
    or per 64 x 64 (version 5, when the map is constant over such cells)."""

    def __init__(self, prepared: PreparedImage, model_name: str, tile: int | None = None,
                 refine_steps: int = 0, roi: Sequence[Region] | np.ndarray | None = None,
                 roi_quality: float = 1.0) -> None:
        if not isinstance(prepared, PreparedImage):  # an array's .rgb was an AttributeError
            raise TypeError(f"Encoder takes a prepared image (load_image(image)), not {type(prepared).__name__}")
        self.prepared = prepared
        self.model_name = model_name
        self.model, self.weights_hash = zoo.load_model(model_name)
        h, w = prepared.rgb.shape[:2]
        if tile is None:
            tile = choose_tile(self.model, h, w)
        elif tile and (not valid_tile(tile) or not tiling_supported(self.model)):
            raise UsageError(f"cannot tile by {tile} latent pixels with model {model_name!r}")
        if isinstance(refine_steps, bool) or not isinstance(refine_steps, (int, np.integer)):
            raise TypeError(f"refinement steps must be a whole number, not {refine_steps!r}")
        if refine_steps < 0:
            raise UsageError(f"refinement steps must be 0 or more, got {refine_steps}")
        self.refine_steps = refine_steps
        if refine_steps:
            self.objective = refinement_objective(model_name)
            if tile:
                raise UsageError(f"encoder refinement works on images of up to {TILE_PIXELS:,} padded pixels "
                                 f"(coded in one piece); this one is {w}x{h}")
        self.tile = tile
        self.extras = source_extras(prepared)  # alpha plane, kept metadata: the same at every quality
        self.roi: RegionsOfInterest | None = None
        if roi is not None:
            if refine_steps:
                raise UsageError("encoder refinement does not take regions of interest (it optimises one quality)")
            if getattr(self.model, "config", None) is None or self.model.config.prior == "factorized":
                raise UsageError(f"model {model_name!r} cannot code regions of interest: they need a hyperprior model")
            self.roi = RegionsOfInterest.of(roi, w, h, roi_quality)
        self.x: torch.Tensor | None = None
        with torch.no_grad():
            if tile:  # window by window: the full-resolution float image is never built
                self.y = analyze_tiled(self.model, prepared.rgb, tile)
            else:
                x = _to_tensor(prepared.rgb, self.model.stride)
                self.y = self.model.analyze(x)
                if refine_steps:  # only refinement needs the float image again
                    self.x = x

    @property
    def num_pixels(self) -> int:
        return self.prepared.rgb.shape[0] * self.prepared.rgb.shape[1]

    def encode(self, quality_q16: int) -> bytes:
        """The .edc file at a quality given as the header's 16-bit integer, 0 to 65535
        (``quality_to_q16(q)`` for a quality q in [0, 1]), so that searches over it are exact."""
        if isinstance(quality_q16, bool) or not isinstance(quality_q16, (int, np.integer)):
            raise TypeError(f"Encoder.encode takes the 16-bit quality, 0 to 65535 (quality_to_q16({quality_q16!r}) "
                            f"for a quality in [0, 1]), not {type(quality_q16).__name__}")
        if not 0 <= quality_q16 <= QUALITY_SCALE:
            raise UsageError(f"Encoder.encode takes the 16-bit quality, 0 to {QUALITY_SCALE}, got {quality_q16}")
        return self._encode(int(quality_q16), refine=bool(self.refine_steps))

    def _encode(self, quality_q16: int, refine: bool) -> bytes:
        quality_q16, quality, qmap = coding_quality(self.roi, quality_q16)  # with regions: the background's q16
        extras = {**self.extras, **qmap}
        if self.tile:
            strings = compress_tiled(self.model, self.y, quality, self.tile)
        elif refine:
            strings = encode_refined(self.model, self.objective, self.x, self.y, self.prepared.rgb,
                                     quality, self.refine_steps).strings
        else:
            strings = self.model.compress_latent(self.y, quality)["strings"]
        p = self.prepared
        header = Header(self.model_name, self.weights_hash, quality_q16, p.rgb.shape[1], p.rgb.shape[0],
                        p.channels, p.bit_depth, p.conversions, tile=self.tile)
        return Container(header, strings, extras).to_bytes()

    def encode_to_score(self, metric: str, target: float) -> ScoreResult:
        """The smallest file whose decoded image scores at least ``target`` in ``metric`` ("psnr" in
        dB or "ms-ssim", against the prepared RGB image): about 10 encodes and decodes."""
        measure = score_metric(metric, target, self.prepared.rgb.shape)
        return search_score(self.encode, lambda data: measure(self.prepared.rgb, decode_array(data)[0]), target)

    def encode_to_size(self, target_bytes: int) -> SearchResult:
        """With refinement, the unrefined stream's size (one entropy-coding pass) guides the
        search, so it refines at a few qualities instead of one per halving."""
        estimate = (lambda q: len(self._encode(q, refine=False))) if self.refine_steps else None
        return search_quality(self.encode, target_bytes, estimate=estimate)


def quality_to_q16(quality: float) -> int:
    """A quality in [0, 1] as the header's 16-bit integer."""
    return int(round(check_quality(quality) * QUALITY_SCALE))


def compress(image: ImageInput, quality: float | None = None, model: str | None = None, *,
             target_bpp: float | None = None, target_size: int | str | None = None,
             target_psnr: float | None = None, target_ms_ssim: float | None = None,
             alpha: str = "keep", metadata: str = "strip", icc: str = "keep", max_pixels: int | None = None,
             refine_steps: int = 0, roi: Sequence[Region] | np.ndarray | Image.Image | None = None,
             roi_quality: float = 1.0) -> bytes:
    """Compress an image (path, an image file's bytes or binary file object, PIL image or HxWx3 /
    HxWx4 uint8 array) into .edc bytes, at ``quality`` in [0, 1] (default ``DEFAULT_QUALITY``) or
    at a target (below: a quality given with a target is refused, as it would not be used).

    ``alpha``: "keep" codes an alpha channel losslessly beside the picture (its bytes count in the
    file's rate), "drop" discards it, "refuse" raises InputImageError. ``metadata``: "keep" stores
    the source's EXIF and XMP, "strip" (the default) does not. ``icc``: an RGB source's colour
    profile other than sRGB is kept with its numbers ("keep", the default: the decoded image carries
    it) or the image is converted to sRGB ("convert"); CMYK sources are always converted.

    ``target_bpp`` or ``target_size`` (bytes, or a string like "40KB") searches the quality
    instead; the result is the largest quality whose file fits, within 3% of the target when
    reachable (when no file below lands within 3%, the closest one up to 3% above it; when even
    quality 0's file is larger than the target, that file).
    ``target_psnr`` (dB) or ``target_ms_ssim`` searches the lowest quality whose decoded image
    scores at least that against the source's RGB (about 10 encodes and decodes); the best quality
    when the model cannot reach it.
    ``refine_steps`` > 0 optimises the latent for this image (codec/refine.py; fidelity models,
    images up to 2 MP): fewer bytes for the same quality, any decoder; with a target, every quality
    the search tries is refined.
    ``roi``: regions of interest, a list of (left, top, width, height) rectangles or a mask of the
    image's size (an (H, W) uint8 or bool array, or a PIL image: 0 background, 255 region, values
    between grade it), in the image's displayed orientation. They are coded at ``roi_quality``
    and the rest at ``quality`` (or the quality a target search finds, which then searches the
    background's), in cells of 16 x 16 pixels (one latent pixel): every cell in a region gets its
    quality, and every cell within 8 pixels of one three quarters of the way from the background's
    to it (``lite.qmap.MARGIN_WEIGHT``). The file carries the map (format version 7, or 5 when the map
    holds one quality per 64 x 64 pixels; hyperprior models).
    """
    targets = {"target_bpp": target_bpp, "target_size": target_size, "target_psnr": target_psnr,
               "target_ms_ssim": target_ms_ssim}
    given = [name for name, value in targets.items() if value is not None]
    if len(given) > 1:
        raise UsageError(f"give one of {', '.join(targets)}, not several")
    if given and quality is not None:  # it was ignored in silence
        raise UsageError(f"give quality or {given[0]}, not both (the target search chooses the quality)")
    prepared = load_image(image, alpha=alpha, max_pixels=max_pixels, metadata=metadata, icc=icc)
    if isinstance(roi, Image.Image):
        roi = mask_levels(roi, max_pixels)
    encoder = Encoder(prepared, zoo.DEFAULT_MODEL if model is None else model, refine_steps=refine_steps,
                      roi=roi, roi_quality=roi_quality)
    if target_psnr is not None or target_ms_ssim is not None:
        metric, target = ("psnr", target_psnr) if target_psnr is not None else ("ms-ssim", target_ms_ssim)
        return encoder.encode_to_score(metric, target).data
    if target_bpp is not None:
        target_size = bpp_to_bytes(target_bpp, encoder.num_pixels)
    if target_size is not None:
        return encoder.encode_to_size(size_to_bytes(target_size)).data
    return encoder.encode(quality_to_q16(DEFAULT_QUALITY if quality is None else quality))


EdcInput = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]


def _edc_bytes(data: EdcInput, max_pixels: int | None = None) -> bytes:
    """The bytes of an .edc stream given as bytes, as the path of an .edc file, or as a binary file
    object (both read no further than the header allows: ``container.read_file``)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if is_binary_stream(data):
        return read_file(data, str(getattr(data, "name", "the .edc stream")), max_pixels)
    if isinstance(data, (str, os.PathLike)):
        if not os.fspath(data):  # open("") said "cannot read : No such file or directory"
            raise UsageError("the .edc path is empty")
        if "\0" in os.fsdecode(data):  # open() would raise ValueError: embedded null byte
            raise InputImageError("the .edc path contains a NUL character: pass the file's bytes as bytes, not str")
        try:
            with open(data, "rb") as f:
                return read_file(f, str(data), max_pixels)
        except OSError as exc:
            raise InputImageError(f"cannot read {data}: {exc.strerror or exc}") from None
    raise TypeError(f"expected .edc bytes, the path of an .edc file or a binary file object, not {type(data).__name__}")


def read_header(data: EdcInput) -> Header:
    """The header of an .edc stream (bytes, a path or a binary file object): model, size, quality,
    format version, ... (what ``edgecodec info`` prints); FormatError for a damaged stream."""
    return Container.from_bytes(_edc_bytes(data)).header


def decode_array(data: EdcInput, max_pixels: int | None = None,
                 region: Region | None = None) -> tuple[np.ndarray, Header]:
    """Decode .edc bytes into an (H, W, 3) uint8 array (the coded picture; ``decompress`` adds a
    kept alpha plane) and the header. ``region``: (left, top, width, height) in pixels, only that
    part of the image (tiled files decode only the tiles it needs), the same pixels as the whole
    image's crop."""
    rgb, container, _ = _decode(data, max_pixels, region)
    return rgb, container.header


def _decode(data: EdcInput, max_pixels: int | None,
            region: Region | None = None) -> tuple[np.ndarray, Container, Region | None]:
    container = Container.from_bytes(_edc_bytes(data, max_pixels))
    h = container.header
    check_pixels(h.width, h.height, max_pixels)
    if region is not None:
        region = check_region(region, h.width, h.height)
    model, _ = zoo.load_model(h.model, h.weights_hash)  # WeightsMismatchError unless some such model has them
    if len(container.streams) != model.num_streams:
        raise FormatError(f"corrupted .edc file: {len(container.streams)} streams, model needs {model.num_streams}")
    padded = check_padded_pixels(h.width, h.height, model.stride, max_pixels)  # decoding works on it
    if h.tile and not tiling_supported(model):
        raise FormatError(f"corrupted .edc file: tiled stream for model {h.model!r}, which cannot decode tiles")
    shape = (padded[0] // 16, padded[1] // 16)
    quality = file_quality(container, shape)
    try:
        if h.tile:  # tile by tile into the uint8 image (edgecodec/codec/tiling.py)
            return decompress_tiled(model, container.streams, h.height, h.width, quality, h.tile,
                                    h.version, region), container, region
        x_hat = model.decompress(container.streams, shape, quality, h.version)
    except (RuntimeError, ValueError, IndexError) as exc:  # the rANS decoder rejecting garbage
        raise FormatError(f"corrupted .edc file: entropy decoding failed ({exc})") from None
    # One piece: the whole synthesis, then the crop, so that a region has the whole image's pixels.
    return crop_region(_to_uint8(x_hat, h.height, h.width), region), container, region


def decompress(data: EdcInput, max_pixels: int | None = None, region: Region | None = None) -> Image.Image:
    """Decode .edc bytes (or an .edc file's path or binary file object) into a PIL image: mode L or
    RGB, LA or RGBA when the file kept the source's alpha; the file's model and quality in
    ``info["edc_model"]`` and ``info["edc_quality"]`` (as the Pillow plugin gives); a kept ICC profile in
    ``info["icc_profile"]``, kept metadata in ``info["exif"]`` and ``info["xmp"]`` (pass them to
    ``save``). ``region``: (left, top, width, height), as in ``decode_array``."""
    rgb, container, region = _decode(data, max_pixels, region)
    return decoded_image(rgb, container, region)
