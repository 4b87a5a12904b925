"""Encode images to .edc files without PyTorch or Pillow: numpy, onnxruntime and CompressAI's rANS
extension, from the same export as ``LiteDecoder`` (``edgecodec export onnx``).

For cameras that code what they capture (drones, phones, IoT): the analysis graphs of the export
(``encoder.onnx``, ``hyper_encoder.onnx``) give y and z, the gains come from the export's tables,
and the entropy coding is the decoders' own (``lite.entropy``: the integer hyper-synthesis, and the
checkerboard context's two passes, which the encoder must run exactly as the decoders will). The
files are format 3 (4 with an alpha plane or kept metadata, 7 or 5 with regions of interest, as
the PyTorch encoder writes them) and decode with both decoders. They are mostly the
PyTorch encoder's files byte for byte; onnxruntime's float analysis can differ from PyTorch's in
the last bits, and a latent value that lands on a rounding boundary then rounds the other way. On
the 24 Kodak images at qualities 0, 0.5 and 1, 67 of 72 files were identical with ``perceptual``
(5 latent values of 983,040 differed in the other 5) and 66 of 72 with ``fidelity`` (1,868 of
1,179,648: its context passes a changed anchor on to its neighbours), at the same sizes
(``python benchmarks/lite_encoder.py``). Above ``TILE_PIXELS`` padded pixels (Full HD) images
are coded in tiles of ``TILE_LATENT`` latent pixels, as the PyTorch encoder codes them
(codec/tiling.py): the analysis runs window by window (each window widened by the export's
``analysis_halo``, its centre kept), so memory stays bounded, and each tile's y is its own stream.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..codec.container import ALPHA, DEFAULT_QUALITY, QUALITY_SCALE, Container, Header, check_quality
from ..codec.limits import check_pixels
from ..errors import UsageError
from ..codec.rate_search import search_quality
from .alpha import encode_alpha
from .decoder import onnx_session, read_export
from .entropy import HYPER_STRIDE, ExactEntropyModel
from .qmap import Quality, RegionsOfInterest, coding_quality, gains_over, hyper_quality
from .tiles import LATENT_STRIDE, TILE_LATENT, TILE_PIXELS, Region, analysis_window, pack_tiles, tile_grid

STRIDE = LATENT_STRIDE * HYPER_STRIDE  # image sides are padded to a multiple of this (64)
ALPHA_DROPPED = 8  # container.CONVERSIONS bit


class LiteEncoder:
    """One exported model: encodes uint8 RGB / RGBA arrays into .edc bytes.

    ``threads``: onnxruntime intra-op threads (None: its default, all cores)."""

    def __init__(self, model_dir: str | os.PathLike, threads: int | None = None) -> None:
        self.model_dir = Path(model_dir)
        manifest, tables = read_export(self.model_dir, ["encoder.onnx", "hyper_encoder.onnx"])
        self.model_name: str = manifest["model"]
        self.analysis_halo: int | None = manifest.get("analysis_halo")  # exports before 2026-12-05 lack it
        self.weights_hash = bytes.fromhex(manifest["weights_hash"])
        self.entropy = ExactEntropyModel.from_tables(tables)
        self.log_y_gain = tables["gain.log_y_gain"].astype(np.float64)
        self.log_z_gain = tables["gain.log_z_gain"].astype(np.float64)
        self.z_medians = tables["z.medians"].astype(np.float32).reshape(-1, 1, 1)
        self.analysis = onnx_session(self.model_dir / "encoder.onnx", threads)
        self.hyper_analysis = onnx_session(self.model_dir / "hyper_encoder.onnx", threads)

    def encode(self, image: np.ndarray, quality: float | None = None, alpha: str = "keep",
               max_pixels: int | None = None, target_bytes: int | None = None,
               roi: Sequence[Region] | np.ndarray | None = None, roi_quality: float = 1.0) -> bytes:
        """An (H, W, 3) RGB or (H, W, 4) RGBA uint8 array at ``quality`` in [0, 1] (default 0.5;
        stored, as by ``edgecodec compress``, in 1/65535 steps), or, without a quality, at the
        largest quality whose file fits
        ``target_bytes`` (``codec.rate_search``, as ``compress --target-size``: within 3% of the
        target when the model reaches it, else the closest file up to 3% above it, or quality 0's
        when even that is larger; the analysis runs once). ``alpha``: "keep" codes an
        RGBA image's alpha plane losslessly beside the picture, "drop" discards it. ``roi``:
        regions of interest coded at ``roi_quality``, never below the background's (rectangles or a
        mask, as ``edgecodec.compress`` takes them; ``quality`` or the target's search is then the
        background's)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
                or image.shape[2] not in (3, 4) or 0 in image.shape:
            raise UsageError(f"expected an (H, W, 3) or (H, W, 4) uint8 array, got "
                             f"{getattr(image, 'shape', type(image).__name__)} {getattr(image, 'dtype', '')}")
        if alpha not in ("keep", "drop"):
            raise UsageError(f"alpha must be 'keep' or 'drop', not {alpha!r}")
        channels = image.shape[2]
        extras = {ALPHA: encode_alpha(image[..., 3])} if channels == 4 and alpha == "keep" else {}
        return self.encode_picture(np.ascontiguousarray(image[..., :3]), quality, channels=channels,
                                   conversions=ALPHA_DROPPED if channels == 4 and alpha == "drop" else 0,
                                   extras=extras, max_pixels=max_pixels, target_bytes=target_bytes,
                                   roi=roi, roi_quality=roi_quality)

    def encode_picture(self, rgb: np.ndarray, quality: float | None = None, *, channels: int = 3, bit_depth: int = 8,
                       conversions: int = 0, extras: dict[str, bytes] | None = None,
                       max_pixels: int | None = None, target_bytes: int | None = None,
                       roi: Sequence[Region] | np.ndarray | None = None, roi_quality: float = 1.0) -> bytes:
        """The file of an (H, W, 3) uint8 picture whose source had ``channels``, ``bit_depth`` and
        went through ``conversions`` (container.CONVERSIONS), with the source's ``extras``: what
        edgecodec's image preparation (codec.imageio, codec.extras) reports, for ``compress
        --backend onnx``. ``target_bytes``, ``roi`` and ``roi_quality``: as in ``encode``."""
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 \
                or 0 in rgb.shape:
            raise UsageError(f"expected an (H, W, 3) uint8 array, got {getattr(rgb, 'shape', type(rgb).__name__)} "
                             f"{getattr(rgb, 'dtype', '')}")
        if quality is not None and target_bytes is not None:  # it was ignored in silence
            raise UsageError("give quality or target_bytes, not both (the search chooses the quality)")
        quality = check_quality(DEFAULT_QUALITY if quality is None else quality)  # as edgecodec.compress checks it
        whole = isinstance(target_bytes, (int, np.integer)) and not isinstance(target_bytes, bool)
        if target_bytes is not None and (not whole or target_bytes < 1):
            raise UsageError(f"target_bytes must be a whole number of bytes, 1 or more, not {target_bytes!r}")
        height, width = rgb.shape[:2]
        check_pixels(width, height, max_pixels)
        regions = None if roi is None else RegionsOfInterest.of(roi, width, height, roi_quality)
        padded = (height + (-height % STRIDE), width + (-width % STRIDE))
        tile = TILE_LATENT if padded[0] * padded[1] > TILE_PIXELS else 0
        if tile and self.analysis_halo is None:
            raise ValueError(f"{self.model_dir} predates tiled encoding (no analysis_halo in its manifest): export "
                             "the model again (edgecodec export onnx) to encode images above "
                             f"{TILE_PIXELS:,} padded pixels")
        y = self._analyze(rgb, padded, tile)
        z_raw = self.hyper_analysis.run(None, {"y": y[None]})[0][0]  # h_a(y): the gain scales it per quality

        def file(q16: int) -> bytes:
            q16, quality, qmap = coding_quality(regions, q16)  # with regions: the background's q16
            header = Header(self.model_name, self.weights_hash, q16, width, height, channels, bit_depth,
                            conversions, tile=tile)
            return Container(header, self._code(y, z_raw, quality, tile), {**(extras or {}), **qmap}).to_bytes()

        if target_bytes is not None:
            return search_quality(file, int(target_bytes)).data
        return file(int(round(quality * QUALITY_SCALE)))

    def _analyze(self, rgb: np.ndarray, padded: tuple[int, int], tile: int) -> np.ndarray:
        """y (M, H'/16, W'/16) of the image padded by edge replication, as the PyTorch encoder pads
        (fewer bits than zeros; cropped on decode); tiled: window by window (codec/tiling.py's
        ``analyze_tiled``), so the float image of a large picture never exists whole."""
        height, width = rgb.shape[:2]
        if not tile:
            x = np.pad(rgb, ((0, padded[0] - height), (0, padded[1] - width), (0, 0)), mode="edge")
            return self.analysis.run(None, {"x": (x.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]})[0][0]
        lh, lw = padded[0] // LATENT_STRIDE, padded[1] // LATENT_STRIDE
        y = None
        for rows, cols in tile_grid(lh, lw, tile):
            window, own = analysis_window(rgb, rows, cols, self.analysis_halo, lh, lw)
            x = (window.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
            y_win = self.analysis.run(None, {"x": x})[0][0]
            if y is None:
                y = np.empty((y_win.shape[0], lh, lw), dtype=np.float32)
            y[:, rows, cols] = y_win[:, own[0], own[1]]
        return y

    def _code(self, y: np.ndarray, z_raw: np.ndarray, quality: Quality, tile: int) -> list[bytes]:
        """The y and z streams of y and ``z_raw`` = h_a(y), as ``EdgeCodecModel.compress_latent``
        (one piece) and ``tiling.compress_tiled`` (a tile table of y streams, each tile's parameters
        from its own z window) write them; ``quality``: one, or a quality map (``lite.qmap``)."""
        min_level = self.entropy.min_level
        y_gain = gains_over(self.log_y_gain, quality, min_level)
        z_gain = gains_over(self.log_z_gain, hyper_quality(quality), min_level)
        z = z_raw * z_gain
        z_symbols = np.rint(z - self.z_medians).astype(np.int32)  # EntropyBottleneck's "symbols"
        y_gained = y * y_gain
        if not tile:
            return [self.entropy.encode_y(y_gained, self.entropy.side(z_symbols, quality)),
                    self.entropy.encode_z(z_symbols)]
        tiles = [self.entropy.encode_y(y_gained[:, rows, cols], self.entropy.side(z_symbols, quality, rows, cols))
                 for rows, cols in tile_grid(*y.shape[1:], tile)]
        return [pack_tiles(tiles), self.entropy.encode_z(z_symbols)]
