"""Tiled coding of large images: bounded memory, no seams.

Above ``TILE_PIXELS`` (padded) pixels an image is coded in tiles of ``TILE_LATENT`` x
``TILE_LATENT`` latent pixels (512 x 512 image pixels), recorded in the container's tile field
(format version 2 and later, docs/format.md). The tiles change the entropy coding only, not the picture:

- Encoder: the analysis transform g_a runs over each tile's image window widened by a halo at least
  as large as g_a's receptive field, in whole latent pixels (so the convolution grids line up with
  the whole image's), and only the tile's own latent pixels are kept. The stitched latent y is the
  whole image's y up to float rounding: tiling creates no seam. The hyper-latent z (1/64 of the
  image's side, 64 channels) is computed and coded whole.
- Entropy coding: each tile's part of y is its own rANS stream, with Gaussian parameters from the
  hyper-synthesis h_s over the tile's z window widened by ``HYPER_HALO`` z pixels. That window is
  part of the format: encoder and decoder compute the parameters from the same z symbols with the
  integer h_s (version 3, ``ExactEntropyModel.side``; version 2: the float h_s on one thread),
  so the rANS tables agree bit for bit.
- Decoder: z_hat whole, then per tile the parameters and y_hat (the whole latent is kept: 2 bytes
  an image pixel for 128 latent channels); then g_s runs over each tile's latent window widened by
  g_s's receptive field, and the tile's centre is written into the preallocated uint8 output. The
  full-resolution float image never exists.

Peak memory is then the uint8 image, the latent (y while encoding, y_hat while decoding) and one
window's activations per thread, instead of ~215 bytes an image pixel for a whole-image pass.
Windows run one per thread, each on one torch thread: the latent and the pixels do not depend on
the thread count, and a 12 MP image on 2 threads decoded in 3.4 s instead of 5.9 s with the
windows one after another (encoded in 2.6 s instead of 3.4 s with each window on both threads).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from compressai.layers import GDN
from torch import nn

from ..errors import FormatError
from ..lite.entropy import HYPER_HALO
from ..lite.qmap import Quality, gains_matched
from ..lite.rans import pad_stream
from ..lite.tiles import (LATENT_STRIDE, TILE_LATENT, TILE_PIXELS, Region, analysis_window, latent_span,  # noqa: F401
                          num_tiles, pack_tiles, synthesis_windows, tile_grid, unpack_tiles)
from ..models import EdgeCodecModel
from ..models.codec_model import single_thread


# Layers that act on each pixel alone (no spatial extent).
_POINTWISE = (GDN, nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Identity)


# --- receptive fields ----------------------------------------------------------------------------
def _layers(module: nn.Module):
    """Spatial layers in order; pointwise layers are skipped. Parallel branches (a residual
    block's skip) are counted as if in sequence: an over-estimate, which is safe."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise NotImplementedError(f"cannot tile through {module}")
        yield module
    elif isinstance(module, _POINTWISE):
        return
    elif any(True for _ in module.children()):
        for child in module.children():
            yield from _layers(child)
    else:
        raise NotImplementedError(f"cannot tile through {type(module).__name__}: unknown receptive field")


def _reach(layer: nn.Module) -> int:
    """Farthest input pixel (either side) a stride-1 output pixel of this layer sees."""
    k, d, p = layer.kernel_size[0], layer.dilation[0], layer.padding[0]
    return max(p, (k - 1) * d - p)


def analysis_halo(model: EdgeCodecModel) -> int:
    """Latent pixels of halo that make a g_a window's centre equal the whole image's."""
    radius, jump = 0, 1  # image pixels; image pixels per feature pixel
    for layer in _layers(model.g_a):
        if isinstance(layer, nn.ConvTranspose2d):
            raise NotImplementedError("upsampling in the analysis transform")
        radius += _reach(layer) * jump
        jump *= layer.stride[0]
    if jump != LATENT_STRIDE:
        raise NotImplementedError(f"analysis stride {jump}, expected {LATENT_STRIDE}")
    # latent pixel i sees image pixels 16 i - radius .. 16 i + radius: a window starting h latent
    # pixels before the tile (and ending h after it) covers that when 16 h >= radius.
    return math.ceil(radius / LATENT_STRIDE)


def synthesis_halo(model: EdgeCodecModel) -> int:
    """Latent pixels of halo that make a g_s window's centre equal the whole image's."""
    radius, scale = 0.0, 1  # latent pixels; feature pixels per latent pixel
    for layer in _layers(model.g_s):
        s = layer.stride[0]
        if isinstance(layer, nn.ConvTranspose2d):
            k, d, p = layer.kernel_size[0], layer.dilation[0], layer.padding[0]
            radius += max((s - 1 + p) // s, ((k - 1) * d - p) // s) / scale
            scale *= s
        elif s == 1:
            radius += _reach(layer) / scale
        else:
            raise NotImplementedError("strided convolution in the synthesis transform")
    return math.ceil(radius) + 1  # + 1: an output pixel's position within its latent pixel


def tiling_supported(model: object) -> bool:
    if not isinstance(model, EdgeCodecModel):
        return False
    try:
        analysis_halo(model)
        synthesis_halo(model)
    except NotImplementedError:
        return False
    return True


def choose_tile(model: object, height: int, width: int) -> int:
    """The tile size the encoder uses for an image: 0 (one piece) up to TILE_PIXELS padded pixels."""
    s = model.stride
    padded = (height + (-height % s)) * (width + (-width % s))
    return TILE_LATENT if padded > TILE_PIXELS and tiling_supported(model) else 0


# --- encoder -------------------------------------------------------------------------------------
def analyze_tiled(model: EdgeCodecModel, rgb: np.ndarray, tile: int, workers: int | None = None) -> torch.Tensor:
    """The latent y (1, M, H'/16, W'/16) of an (H, W, 3) uint8 image padded on the right and bottom
    by edge replication to the model's stride, computed window by window.

    ``workers`` windows run at once (default: torch's thread count on entry), each on one thread,
    as in ``synthesize_tiled``: a window per core scales better than one window on every core,
    and the latent, so the file, does not depend on the thread count."""
    h, w = rgb.shape[:2]
    s = model.stride
    lh, lw = (h + (-h % s)) // LATENT_STRIDE, (w + (-w % s)) // LATENT_STRIDE
    halo = analysis_halo(model)
    y = torch.empty(1, model.config.latent_channels, lh, lw)
    tiles = tile_grid(lh, lw, tile)
    workers = min(workers or torch.get_num_threads(), len(tiles))

    def analyze(rows: slice, cols: slice) -> None:
        window, own = analysis_window(rgb, rows, cols, halo, lh, lw)
        x = torch.from_numpy(window).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():  # grad mode is per thread
            y[..., rows, cols] = model.analyze(x)[..., own[0], own[1]]

    _run_windows(analyze, tiles, workers)
    return y


def _run_windows(fn, windows: list, workers: int) -> None:
    """``fn(*window)`` for every window, ``workers`` at once, each on one torch thread. Torch's
    operators release the GIL, so the threads run in parallel; the windows write disjoint parts
    of one output. One thread per window fixes each window's float order (single_thread)."""
    with single_thread():
        if workers <= 1:
            for window in windows:
                fn(*window)
            return
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(lambda window: fn(*window), windows):  # re-raises a window's error
                pass


def _tile_params(model: EdgeCodecModel, z_hat: torch.Tensor, rows: slice, cols: slice):
    """Format versions 1-2: rANS table indexes and means (or None) of one tile, from the float h_s
    over its z window (version 3: ``ExactEntropyModel.side``)."""
    hyper, lc = model.latent_codec["hyper"], model.latent_codec["y"]
    zh, zw = z_hat.shape[-2:]
    r0, r1 = max(0, rows.start // 4 - HYPER_HALO), min(zh, -(-rows.stop // 4) + HYPER_HALO)
    c0, c1 = max(0, cols.start // 4 - HYPER_HALO), min(zw, -(-cols.stop // 4) + HYPER_HALO)
    params = hyper.h_s(z_hat[..., r0:r1, c0:c1])
    params = params[..., rows.start - 4 * r0: rows.stop - 4 * r0, cols.start - 4 * c0: cols.stop - 4 * c0]
    scales, means = lc._chunk(lc.entropy_parameters(params))
    return lc.gaussian_conditional.build_indexes(scales), means


@torch.no_grad()
def compress_tiled(model: EdgeCodecModel, y: torch.Tensor, quality: Quality, tile: int) -> list[bytes]:
    """The streams of a tiled file: [tile table of y, z] (hyperprior) or [tile table of y].
    ``quality``: one, or a quality map (lite/qmap.py)."""
    y_gain, z_gain = model.encoder_gains(quality)
    is_map = isinstance(quality, np.ndarray)  # y_gain is then a map over y's pixels
    tiles = tile_grid(y.shape[-2], y.shape[-1], tile)
    if model.config.prior == "factorized":
        strings = [model.latent_codec.compress(y[..., r, c] * y_gain)["strings"][0][0] for r, c in tiles]
        return [pack_tiles(strings)]
    z_string, z_symbols = model.compress_hyper(y, z_gain)
    exact = model.exact_entropy()
    strings = []
    for rows, cols in tiles:
        strings.append(model.code_y(y[..., rows, cols], y_gain[..., rows, cols] if is_map else y_gain,
                                    exact.side(z_symbols, quality, rows, cols)))
    return [pack_tiles(strings), z_string]


# --- decoder -------------------------------------------------------------------------------------
@torch.no_grad()
def decompress_tiled(model: EdgeCodecModel, streams: list[bytes], height: int, width: int, quality: Quality,
                     tile: int, version: int = 3, region: Region | None = None) -> np.ndarray:
    """Decode the streams of a tiled file into an (height, width, 3) uint8 array, or only the
    ``region`` (left, top, width, height; checked by the caller): the tiles it needs, the same
    pixels as the whole image's crop. ``quality``: the file's, or (versions 5 to 7) its quality map."""
    s = model.stride
    lh, lw = (height + (-height % s)) // LATENT_STRIDE, (width + (-width % s)) // LATENT_STRIDE
    if model.config.prior != "factorized" and version >= 3:  # the shared format-3 path (lite.entropy)
        span = latent_span(list(synthesis_windows(lh, lw, height, width, tile, synthesis_halo(model), region)))
        y_hat = torch.from_numpy(model.exact_entropy().decode(streams, (lh, lw), quality, tile, span,
                                                              gains_matched(version)))[None]
        return synthesize_tiled(model, y_hat, height, width, tile, region=region)
    if isinstance(quality, np.ndarray):
        raise FormatError("corrupted .edc file: a quality map for a model or version without an exact hyperprior")
    tiles = tile_grid(lh, lw, tile)
    tile_streams = unpack_tiles(streams[0], len(tiles))
    g = model.gains(torch.tensor([quality]))
    m = model.config.latent_channels
    y_hat = torch.empty(1, m, lh, lw)
    with single_thread():
        if model.config.prior == "factorized":
            for (rows, cols), data in zip(tiles, tile_streams):
                shape = (rows.stop - rows.start, cols.stop - cols.start)
                data = pad_stream(data, m * shape[0] * shape[1])
                y_hat[..., rows, cols] = model.latent_codec.decompress([[data]], shape)["y_hat"] * g["y_gain_inv"]
        else:
            hyper, gc = model.latent_codec["hyper"], model.latent_codec["y"].gaussian_conditional
            z_shape = (lh // 4, lw // 4)
            z_data = pad_stream(streams[1], model.config.hyper_channels * z_shape[0] * z_shape[1])
            z_hat = hyper.entropy_bottleneck.decompress([z_data], z_shape) * g["z_gain_inv"]
            del z_data
            for (rows, cols), data in zip(tiles, tile_streams):
                indexes, means = _tile_params(model, z_hat, rows, cols)
                data = pad_stream(data, indexes.numel())
                y_hat[..., rows, cols] = gc.decompress([data], indexes, means=means) * g["y_gain_inv"]
    del tile_streams
    return synthesize_tiled(model, y_hat, height, width, tile, region=region)


def synthesize_tiled(model: EdgeCodecModel, y_hat: torch.Tensor, height: int, width: int,
                     tile: int, workers: int | None = None, region: Region | None = None) -> np.ndarray:
    """g_s window by window into a preallocated uint8 image, cropped to height x width (or to the
    ``region``: only the windows that cover it).

    ``workers`` windows run at once (default: torch's thread count on entry), each on one thread,
    so the pixels do not depend on the thread count (as in EdgeCodecModel.decompress) while a
    large image still uses every core. Each thread holds a window's activations and its own
    allocator arena: a 4K and an 8K encode + decode peaked 476 and 408 MiB higher on 2 threads
    than on 1 (``benchmarks/large.py --threads 2``)."""
    lh, lw = y_hat.shape[-2:]
    out = np.empty((height, width, 3) if region is None else (region[3], region[2], 3), dtype=np.uint8)
    windows = list(synthesis_windows(lh, lw, height, width, tile, synthesis_halo(model), region))
    workers = min(workers or torch.get_num_threads(), len(windows))

    def synthesize(latent: tuple[slice, slice], crop: tuple[slice, slice], place: tuple[slice, slice]) -> None:
        with torch.no_grad():  # grad mode is per thread
            x = model._image(y_hat[..., latent[0], latent[1]])[0, :, crop[0], crop[1]]
        x = x.nan_to_num(0.0).clamp(0, 1).mul(255).round().to(torch.uint8)  # NaN: 0, as in _to_uint8
        out[place[0], place[1]] = x.permute(1, 2, 0).numpy()

    _run_windows(synthesize, windows, workers)
    return out
