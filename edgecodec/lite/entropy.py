"""Entropy coding of format-3 streams, shared by the PyTorch codec and the lite coders.

Everything here is numpy plus CompressAI's rANS extension: the hyper-latent z, the Gaussian
parameters from the integer hyper-synthesis, then y. Both encoders (PyTorch's and
``LiteEncoder``) code z and y through this module with the tables of CompressAI's entropy models
(``EdgeCodecModel.entropy_tables`` exports them), and both decoders decode through it: one coding
path, which the lite coders run without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .context import IntegerCheckerboard
from .hyper import IntegerHyperSynthesis, fixed_gain
from .rans import CdfTable
from .qmap import Quality, gains_over, hyper_quality, map_under, matched_ratio, per_pixel
from .tiles import HYPER_STRIDE, pack_tiles, tile_grid, unpack_tiles

# z pixels added on each side of a tile's hyper-latent window before h_s computes the tile's
# Gaussian parameters. Part of the format: both sides must compute the parameters from the same
# windows. h_s reaches 1.75 z pixels, so with 2 the parameters equal the whole-image ones.
HYPER_HALO = 2


@dataclass(frozen=True)
class ExactEntropyModel:
    """A hyperprior model's decoding side: rANS tables, the integer h_s and the gain tables."""

    z_table: CdfTable
    y_table: CdfTable
    hyper: IntegerHyperSynthesis
    log_y_gain_inv: np.ndarray  # (levels, M)
    log_z_gain_inv: np.ndarray  # (levels, C)
    min_level: float
    context: IntegerCheckerboard | None = None  # checkerboard context models

    @classmethod
    def from_tables(cls, t: dict[str, np.ndarray]) -> "ExactEntropyModel":
        """Build from the arrays of ``EdgeCodecModel.entropy_tables`` (or an exported tables file)."""
        def layer_specs(prefix: str) -> list[dict]:
            layers, i = [], 0
            while f"{prefix}.{i}.weight" in t:
                stride, padding, transposed, output_padding, relu = (int(v) for v in t[f"{prefix}.{i}.geometry"])
                layers.append({"weight": t[f"{prefix}.{i}.weight"], "bias": t[f"{prefix}.{i}.bias"],
                               "stride": stride, "padding": padding, "transposed": bool(transposed),
                               "output_padding": output_padding, "relu": bool(relu)})
                i += 1
            return layers

        hyper = IntegerHyperSynthesis.from_float(layer_specs("hs"), t["z.medians"], t["y.scale_table"],
                                                 bool(t["mean_scale"].item()))
        context = IntegerCheckerboard.from_layers(layer_specs) if "ctx.0.weight" in t else None
        table = lambda p: CdfTable(t[f"{p}.quantized_cdf"].astype(np.int32), t[f"{p}.cdf_length"].astype(np.int32),
                                   t[f"{p}.offset"].astype(np.int32))  # noqa: E731
        return cls(table("z"), table("y"), hyper, t["gain.log_y_gain_inv"].astype(np.float64),
                   t["gain.log_z_gain_inv"].astype(np.float64), float(t["gain.min_level"].item()), context)

    @property
    def hyper_channels(self) -> int:
        return len(self.z_table.cdf_length)

    def y_gain_inv(self, quality: Quality) -> np.ndarray:
        """y's inverse gain (float32): (M, 1, 1), or (M, h, w) per latent pixel of a quality map."""
        return gains_over(self.log_y_gain_inv, quality, self.min_level)

    def z_gain_fixed(self, quality: Quality) -> np.ndarray:
        """z's inverse gain in fixed point (int64): (C,), or (C, rows, cols) per z pixel of a quality
        map (``hyper_quality``)."""
        return per_pixel(lambda q: fixed_gain(self.log_z_gain_inv, q, self.min_level), hyper_quality(quality))

    def decode_z(self, stream: bytes, z_shape: tuple[int, int]) -> np.ndarray:
        """z symbols (C, h, w): channel c uses table c (CompressAI's EntropyBottleneck layout)."""
        c = self.hyper_channels
        indexes = np.broadcast_to(np.arange(c, dtype=np.int32)[:, None, None], (c, *z_shape))
        return self.z_table.decode(stream, indexes)

    def side(self, z_symbols: np.ndarray, quality: Quality, rows: slice | None = None,
             cols: slice | None = None, matched: bool = True) -> np.ndarray:
        """The integer hyper-synthesis output over the whole latent or one tile (latent rows /
        cols), computed from the tile's z window widened by HYPER_HALO (and, with a quality map,
        the z gains of that window's pixels). ``matched`` (format version 7, what the encoders
        write; False for version 6's maps): rescaled to each latent pixel's quality where a z
        pixel's 4 x 4 latent pixels mix qualities (``qmap.matched_ratio``)."""
        g = self.z_gain_fixed(quality)
        if rows is None:
            raw = self.hyper.raw(z_symbols, g)
        else:
            zh, zw = z_symbols.shape[-2:]
            s = HYPER_STRIDE
            r0, r1 = max(0, rows.start // s - HYPER_HALO), min(zh, -(-rows.stop // s) + HYPER_HALO)
            c0, c1 = max(0, cols.start // s - HYPER_HALO), min(zw, -(-cols.stop // s) + HYPER_HALO)
            raw = self.hyper.raw(z_symbols[:, r0:r1, c0:c1], g[:, r0:r1, c0:c1] if g.ndim == 3 else g)
            raw = raw[:, rows.start - s * r0: rows.stop - s * r0, cols.start - s * c0: cols.stop - s * c0]
            quality = map_under(quality, rows, cols)
        ratio = matched_ratio(self.log_y_gain_inv, quality, self.min_level) if matched else None
        return raw if ratio is None else self.hyper.rescaled(raw, ratio)

    def encode_z(self, z_symbols: np.ndarray) -> bytes:
        """The stream of z's symbols (C, h, w) (CompressAI's EntropyBottleneck: round(z - medians)),
        channel c coded with table c: what ``decode_z`` reads back."""
        c = self.hyper_channels
        return self.z_table.encode(z_symbols, np.broadcast_to(np.arange(c, dtype=np.int32)[:, None, None],
                                                              z_symbols.shape))

    def encode_y(self, y_gained: np.ndarray, side: np.ndarray) -> bytes:
        """One stream of (a tile of) y times its gain (M, h, w, float32), whose hyper-synthesis
        output is ``side``: symbols rounded as CompressAI's GaussianConditional rounds them (half to
        even, y - means in float32); with the checkerboard context, the anchors' and the other
        half's streams packed as two tiles. What ``decode_y`` reads back; both encoders (PyTorch's
        ``EdgeCodecModel.code_y`` and ``LiteEncoder``) code y with it."""
        if self.context is None:
            indexes, means = self.hyper.params_from_raw(side)
            return self.y_table.encode(np.rint(y_gained if means is None else y_gained - means), indexes)
        passes: list[bytes] = []

        def code(selected: np.ndarray, indexes: np.ndarray, means: np.ndarray) -> np.ndarray:
            symbols = np.rint(y_gained[:, selected] - means).astype(np.int32)
            passes.append(self.y_table.encode(symbols, indexes))
            return symbols

        self.context.run(side, self.hyper.table_indexes, code)
        return pack_tiles(passes)

    def decode_y(self, stream: bytes, side: np.ndarray, quality: Quality) -> np.ndarray:
        """y_hat of one stream (whole latent or tile) whose hyper-synthesis output is ``side``
        (``quality``: the tile's, or the part of the map under it)."""
        if self.context is None:
            indexes, means = self.hyper.params_from_raw(side)
            return self.dequantize(self.y_table.decode(stream, indexes), means, quality)
        passes = iter(unpack_tiles(stream, 2, "checkerboard half"))  # anchors, then the other half
        symbols, means = self.context.run(side, self.hyper.table_indexes,
                                          lambda selected, indexes, _: self.y_table.decode(next(passes), indexes))
        return self.dequantize(symbols, means, quality)

    def dequantize(self, symbols: np.ndarray, means: np.ndarray | None, quality: Quality) -> np.ndarray:
        """y_hat = (symbols + means) * y_gain_inv, in float32 as CompressAI computes it."""
        y = symbols.astype(np.float32)
        if means is not None:
            y += means
        return y * self.y_gain_inv(quality)

    def decode(self, streams: list[bytes], shape: tuple[int, int], quality: Quality, tile: int = 0,
               span: tuple[slice, slice] | None = None, matched: bool = True) -> np.ndarray:
        """y_hat (M, h, w) of a stream pair [y, z]; tiled (``tile`` latent pixels a side): stream 1
        is the tile table, each tile's parameters come from its own z window. ``quality``: the
        file's, or its quality map (``lite.qmap``). ``span`` (latent rows, cols; tiled streams):
        decode only the tiles that meet it, the rest of y_hat is 0. ``matched``: as ``side`` (False
        for format version 6)."""
        tiles = tile_grid(*shape, tile) if tile else None
        tile_streams = unpack_tiles(streams[0], len(tiles)) if tile else None
        z = self.decode_z(streams[1], (shape[0] // HYPER_STRIDE, shape[1] // HYPER_STRIDE))
        if not tile:
            return self.decode_y(streams[0], self.side(z, quality, matched=matched), quality)
        y_hat = np.zeros((self.log_y_gain_inv.shape[1], *shape), dtype=np.float32)
        for (rows, cols), stream in zip(tiles, tile_streams):
            if span is None or (rows.start < span[0].stop and span[0].start < rows.stop
                                and cols.start < span[1].stop and span[1].start < cols.stop):
                y_hat[:, rows, cols] = self.decode_y(stream, self.side(z, quality, rows, cols, matched),
                                                     map_under(quality, rows, cols))
        return y_hat
