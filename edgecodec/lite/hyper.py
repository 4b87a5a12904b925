"""The hyper-synthesis in exact integer arithmetic, and the gain vectors of a quality.

The hyperprior's output picks, for every latent element, which rANS table codes it. Encoder and
decoder must pick the same tables, but float convolutions differ in their last bits between
backends (PyTorch, onnxruntime), thread counts and CPUs, and one scale on a table boundary then
desynchronises the decoder. Following Balle et al., "Integer networks for data compression with
latent-variable models" (ICLR 2019), the codec (format version 3) computes the Gaussian
parameters with integer arithmetic, so every backend gets the same bits:

- the trained float weights are rounded to fixed point (WEIGHT_BITS fractional bits), activations
  are fixed point with ACT_BITS fractional bits, rescaled by a floor shift after each layer and
  clamped to +-ACT_LIMIT (the clamps bound every sum, whatever a file contains);
- the convolutions run in float64 on integer values; every product and partial sum is an integer
  below 2^53 (checked when the weights are quantized), so the result is exact in any order, on
  any BLAS, and matches integer arithmetic;
- the input is z_hat * z_gain_inv in fixed point, with z_gain_inv rounded to GAIN_BITS
  fractional bits (``fixed_gain``), and table indexes compare the exact scales with the table.

This is post-training quantization of the trained h_s, not retraining: the parameters differ
from the float ones by about 2^-12, far below the scale table's 12% steps. No library computes
convolutions in exact integer arithmetic on both torch and numpy, hence this module.

The matrix products run in onnxruntime's float64 MatMul where onnxruntime is installed (the lite
decoder's own runtime): numpy's bundled OpenBLAS 0.3.23 does not recognise some current CPUs (on
this project's machines, AVX-512 Xeons, it reports "Prescott") and falls back to SSE3 kernels,
4-6x slower. Exactness makes the two interchangeable: every product is an integer below 2^53.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

WEIGHT_BITS = 14
ACT_BITS = 12
ACT_LIMIT = 2.0**15  # activations and inputs are clamped to +- this (real units)
ACT_LIMIT_FIXED = ACT_LIMIT * 2.0**ACT_BITS  # the same bound in fixed point
GAIN_BITS = 16
EXACT_LIMIT = 2.0**53  # integers up to this are exact in float64


def interpolate_levels(table: np.ndarray, quality, min_level: float) -> np.ndarray:
    """Row(s) of a per-level table (K, C) at quality (a float, or an array of them) in [0, 1], linear
    in the level position, in float64.

    The same rule as models.codec_model.interpolate_levels (quality 0 at ``min_level``, 1 at K-1),
    in float64 with IEEE operations only, so every platform computes the same bits."""
    table = np.asarray(table, dtype=np.float64)
    k = table.shape[0]
    pos = min_level + np.clip(np.asarray(quality, dtype=np.float64), 0.0, 1.0) * (k - 1 - min_level)
    lower = np.clip(np.floor(pos), 0, k - 2).astype(np.int64)
    t = (pos - lower)[..., None]
    return (1 - t) * table[lower] + t * table[lower + 1]


def gain(log_table: np.ndarray, quality: float, min_level: float) -> np.ndarray:
    """Gain vector (float64) of a quality from a table of log gains."""
    return np.exp(interpolate_levels(log_table, quality, min_level))


def fixed_gain(log_table: np.ndarray, quality: float, min_level: float) -> np.ndarray:
    """The gain in GAIN_BITS fixed point (int64): the only float-to-integer step of the hyper path.

    ``np.exp`` may differ by an ulp between platforms; ``gain_margin`` checks that no quality of a
    model lands within GAIN_MARGIN of a rounding boundary (``clear_of_rounding_boundaries``, done
    when a model is saved), so such a difference cannot change the result."""
    return np.round(gain(log_table, quality, min_level) * 2.0**GAIN_BITS).astype(np.int64)


GAIN_MARGIN = 1e-9  # in units of 2^-GAIN_BITS: dozens of ulps of np.exp's result


def gain_margins(log_table: np.ndarray, min_level: float, steps: int = 65535) -> np.ndarray:
    """Per channel (the table's last axis): the smallest distance (in units of 2^-GAIN_BITS)
    between a fixed-point gain's exact value and a rounding boundary, over every quality a file
    can store (q16 / 65535)."""
    qualities = np.arange(steps + 1) / steps
    margins = []
    for start in range(0, log_table.shape[-1], 32):  # 32 channels at a time: 65,536 x C float64s each
        scaled = np.exp(interpolate_levels(log_table[..., start:start + 32], qualities, min_level)) * 2.0**GAIN_BITS
        margins.append(np.min(np.abs(scaled - np.floor(scaled) - 0.5), axis=0))
    return np.concatenate(margins)


def gain_margin(log_table: np.ndarray, min_level: float, steps: int = 65535) -> float:
    """The smallest of ``gain_margins``: above GAIN_MARGIN, every platform's fixed gains agree."""
    return float(gain_margins(log_table, min_level, steps).min())


def clear_of_rounding_boundaries(log_table: np.ndarray, min_level: float) -> np.ndarray:
    """The float32 table with every channel whose fixed-point gain comes within GAIN_MARGIN of a
    rounding boundary, at some quality, moved up one float32 step (about 1e-7 of the gain, far
    below what training resolves) until none does. Trained weights land there by chance (stage 46
    of fidelity did, 1.3e-10 from one), and a platform whose exp() differed by an ulp would then
    decode such a file with another integer gain, so model files are saved with their tables
    cleared (zoo.save_model)."""
    table = np.array(log_table, dtype=np.float32)
    for _ in range(64):
        close = np.flatnonzero(gain_margins(table, min_level) <= GAIN_MARGIN)
        if close.size == 0:
            return table
        table[:, close] = np.nextafter(table[:, close], np.float32(np.inf))
    raise RuntimeError("gain table: channels still at a rounding boundary after 64 float32 steps")


# A one-node graph: c = a @ b in float64 with dynamic shapes (tests/test_lite.py rebuilds it with
# onnx.helper and checks it is this file).
MATMUL_GRAPH = Path(__file__).with_name("matmul_f64.onnx")


@lru_cache(maxsize=None)
def _onnxruntime_matmul_in(pid: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """onnxruntime's float64 MatMul, or None where onnxruntime is not installed (cached either way)."""
    from .runtime import import_onnxruntime

    try:
        ort = import_onnxruntime()
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # small products
    session = ort.InferenceSession(str(MATMUL_GRAPH), options, providers=["CPUExecutionProvider"])
    return lambda a, b: session.run(None, {"a": a, "b": b})[0]


def _onnxruntime_matmul() -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """This process's MatMul session (keyed by process id: sessions do not survive a fork)."""
    return _onnxruntime_matmul_in(os.getpid())


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b of integer-valued float64 matrices whose products and sums stay below 2^53: exact in
    any summation order, so onnxruntime's and numpy's kernels give the same bits."""
    matmul = _onnxruntime_matmul()
    a, b = np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64)
    return matmul(a, b) if matmul is not None else a @ b


@dataclass(frozen=True)
class IntegerLayer:
    weight: np.ndarray  # integers (float64), WEIGHT_BITS fractional bits; PyTorch layout:
    # (out, in, k, k) for a convolution, (in, out, k, k) for a transposed one
    bias: np.ndarray  # (out,) integers (float64), ACT_BITS + WEIGHT_BITS fractional bits
    stride: int
    padding: int
    transposed: bool
    output_padding: int = 0
    relu: bool = False

    @cached_property
    def matrix(self) -> np.ndarray:
        """The weight as the left factor of one matrix product: (k*k*out, in) rows ordered (ky, kx,
        out) for a transposed convolution, (out, in*k*k) for a convolution."""
        if self.transposed:
            return np.ascontiguousarray(self.weight.transpose(2, 3, 1, 0).reshape(-1, self.weight.shape[0]))
        return np.ascontiguousarray(self.weight.reshape(self.weight.shape[0], -1))


def _conv(x: np.ndarray, layer: IntegerLayer) -> np.ndarray:
    """Integer-valued (transposed) convolution (C, H, W) -> (out, H', W') in float64, as PyTorch
    defines it; exact (see module doc), so any summation order gives the same result."""
    k, s, p = layer.weight.shape[-1], layer.stride, layer.padding
    c, h, w = x.shape
    if layer.transposed:
        # Each input pixel adds weight x value to a k x k patch of the output, s pixels apart:
        # products for every tap in one matrix product, then k * k strided adds (no
        # multiplications by zeros).
        out_channels = layer.weight.shape[1]
        taps = exact_matmul(layer.matrix, x.reshape(c, h * w)).reshape(k, k, out_channels, h, w)
        full = np.zeros((out_channels, (h - 1) * s + k + layer.output_padding, (w - 1) * s + k + layer.output_padding))
        for ky in range(k):
            for kx in range(k):
                full[:, ky: ky + (h - 1) * s + 1: s, kx: kx + (w - 1) * s + 1: s] += taps[ky, kx]
        out_h, out_w = (h - 1) * s - 2 * p + k + layer.output_padding, (w - 1) * s - 2 * p + k + layer.output_padding
        out = full[:, p: p + out_h, p: p + out_w]
    else:
        x = np.pad(x, ((0, 0), (p, p), (p, p))) if p else x
        windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]
        out_h, out_w = windows.shape[1:3]
        # im2col: (C, k, k, H', W') rows in the weight matrix's (in, ky, kx) order
        columns = windows.transpose(0, 3, 4, 1, 2).reshape(c * k * k, out_h * out_w)
        out = exact_matmul(layer.matrix, columns).reshape(-1, out_h, out_w)
    return out + layer.bias[:, None, None]


def quantize_layers(layers: list[dict], name: str) -> tuple[IntegerLayer, ...]:
    """Float layers (dicts: weight in PyTorch layout, bias, stride, padding, transposed,
    output_padding, relu) in fixed point, checked so that no sum can exceed 2^53."""
    out, bound = [], ACT_LIMIT_FIXED  # largest |input| in fixed point
    for spec in layers:
        w_int = np.round(np.asarray(spec["weight"], dtype=np.float64) * 2.0**WEIGHT_BITS)
        b_int = np.round(np.asarray(spec["bias"], dtype=np.float64) * 2.0**(WEIGHT_BITS + ACT_BITS))
        # Largest |sum| per output channel: every weight of the channel times the largest input
        # (a transposed convolution uses only some taps per output pixel: an over-estimate).
        per_output = np.abs(w_int).sum(axis=(0, 2, 3) if spec["transposed"] else (1, 2, 3))
        worst = float(np.max(per_output * bound + np.abs(b_int)))
        if worst >= EXACT_LIMIT:
            raise ValueError(f"{name} sums could reach {worst:.3g} >= 2^53: not exact in float64")
        out.append(IntegerLayer(w_int, b_int, int(spec["stride"]), int(spec["padding"]),
                                bool(spec["transposed"]), int(spec.get("output_padding", 0)),
                                bool(spec["relu"])))
    return tuple(out)


def run_layers(x: np.ndarray, layers: tuple[IntegerLayer, ...]) -> np.ndarray:
    """Fixed-point input (C, H, W) through integer layers: each output floored back to ACT_BITS
    fractional bits, ReLU where the layer has one, clamped to +-ACT_LIMIT."""
    limit = ACT_LIMIT_FIXED
    for layer in layers:
        x = np.floor(_conv(x, layer) / 2.0**WEIGHT_BITS)
        if layer.relu:
            x = np.maximum(x, 0.0)
        x = np.clip(x, -limit, limit)
    return x


@dataclass(frozen=True)
class IntegerHyperSynthesis:
    """h_s in fixed point: z symbols -> rANS table indexes (and means) of y."""

    layers: tuple[IntegerLayer, ...]
    medians: np.ndarray  # (C,) integers, ACT_BITS fractional bits: z_hat = symbols + median
    scale_table: np.ndarray  # float64 (exact float32 values)
    mean_scale: bool

    @classmethod
    def from_float(cls, layers: list[dict], medians: np.ndarray, scale_table: np.ndarray,
                   mean_scale: bool) -> "IntegerHyperSynthesis":
        """Quantize float layers (``quantize_layers``) and the z medians."""
        medians_int = np.round(np.asarray(medians, dtype=np.float64) * 2.0**ACT_BITS)
        return cls(quantize_layers(layers, "hyper-synthesis"), medians_int,
                   np.asarray(scale_table, dtype=np.float32).astype(np.float64), mean_scale)

    def raw(self, z_symbols: np.ndarray, z_gain_fixed: np.ndarray) -> np.ndarray:
        """h_s output (channels, 4h, 4w) as integers with ACT_BITS fractional bits (float64).

        z_symbols: (C, h, w) integers; z_gain_fixed: (C,) from ``fixed_gain``, or (C, h, w), a
        gain per pixel (a quality map)."""
        limit = ACT_LIMIT_FIXED
        z = z_symbols.astype(np.int64) * (1 << ACT_BITS) + self.medians.astype(np.int64)[:, None, None]
        z = np.clip(z, -limit, limit).astype(np.int64)  # bounds the product below 2^63
        g = z_gain_fixed if z_gain_fixed.ndim == 3 else z_gain_fixed[:, None, None]
        x = ((z * g) >> GAIN_BITS).astype(np.float64)
        return run_layers(x, self.layers)

    def rescaled(self, raw: np.ndarray, ratio: np.ndarray) -> np.ndarray:
        """An output of ``raw`` (or a crop of one) with each latent pixel's scales (and means)
        multiplied by ``ratio`` (M, h, w), GAIN_BITS fixed point (format version 7,
        ``qmap.matched_ratio``): floor(raw * ratio / 2^GAIN_BITS) in int64, clamped as activations.
        The ratio's own clamp keeps the product below 2^63 for any model; trained gains stay far
        below it (the shipped models' ratios are below 21)."""
        ratio = np.minimum(ratio, 2**62 // (int(ACT_LIMIT_FIXED) + 1))
        factor = np.concatenate([ratio, ratio]) if self.mean_scale else ratio
        out = (raw.astype(np.int64) * factor) >> GAIN_BITS
        return np.clip(out, -ACT_LIMIT_FIXED, ACT_LIMIT_FIXED).astype(np.float64)

    def params(self, z_symbols: np.ndarray, z_gain_fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """rANS table indexes (int32) and means (float32, or None) of y, each (M, 4h, 4w)."""
        return self.params_from_raw(self.raw(z_symbols, z_gain_fixed))

    def params_from_raw(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Table indexes and means of an output of ``raw`` (or a crop of one)."""
        scales, means = (raw[: raw.shape[0] // 2], raw[raw.shape[0] // 2:]) if self.mean_scale else (raw, None)
        # means: exact, a power-of-two scaling
        return self.table_indexes(scales), None if means is None else (means / 2.0**ACT_BITS).astype(np.float32)

    def table_indexes(self, scales: np.ndarray) -> np.ndarray:
        """rANS table indexes (int32) of fixed-point scales (integers, ACT_BITS fractional bits)."""
        lowest, lookup = self.index_lookup
        return lookup[np.clip(scales, lowest, lowest + len(lookup) - 1).astype(np.int64) - lowest].astype(np.int32)

    @cached_property
    def index_lookup(self) -> tuple[int, np.ndarray]:
        """(lowest, table): the rANS table index of a fixed-point scale v is table[v - lowest],
        v clipped to the table's range.

        CompressAI's GaussianConditional.build_indexes counts the scale table's entries (but the
        last) below the scale (the lower bound it applies first cannot change the count). For an
        integer v, t < v / 2^ACT_BITS exactly when floor(t * 2^ACT_BITS) < v, so the count is a
        function of the integer v alone; tabulated once, it is a lookup per element instead of a
        binary search (4x faster here: 1.3 against 5.5 ms for a Kodak latent)."""
        thresholds = np.floor(self.scale_table[:-1] * 2.0**ACT_BITS).astype(np.int64)
        lowest = int(thresholds[0])
        if thresholds[-1] - lowest > 2**24:  # CompressAI's table spans 0.11 to 256: 2^20 entries
            raise ValueError("scale table too wide for the index lookup")
        values = np.arange(lowest, int(thresholds[-1]) + 2)
        return lowest, np.searchsorted(thresholds, values, side="left").astype(np.min_scalar_type(len(thresholds)))
