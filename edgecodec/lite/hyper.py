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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHT_BITS = 14
ACT_BITS = 12
ACT_LIMIT = 2.0**15  # activations and inputs are clamped to +- this (real units)
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
    model lands within 1e-9 (dozens of ulps) of a rounding boundary, so such a difference cannot change the result."""
    return np.round(gain(log_table, quality, min_level) * 2.0**GAIN_BITS).astype(np.int64)


def gain_margin(log_table: np.ndarray, min_level: float, steps: int = 65535) -> float:
    """Smallest distance (in units of 2^-GAIN_BITS) between a fixed-point gain's exact value and
    a rounding boundary, over every quality a file can store (q16 / 65535)."""
    qualities = np.arange(steps + 1) / steps
    scaled = np.exp(interpolate_levels(log_table, qualities, min_level)) * 2.0**GAIN_BITS
    return float(np.min(np.abs(scaled - np.floor(scaled) - 0.5)))


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


def _conv(x: np.ndarray, layer: IntegerLayer) -> np.ndarray:
    """Integer-valued (transposed) convolution (C, H, W) -> (out, H', W') in float64, as PyTorch
    defines it; exact (see module doc), so any summation order gives the same result."""
    k, s, p = layer.weight.shape[-1], layer.stride, layer.padding
    if layer.transposed:
        # Each input pixel adds weight x value to a k x k patch of the output, s pixels apart:
        # products for every tap at once, then k * k strided adds (no multiplications by zeros).
        c, h, w = x.shape
        taps = np.tensordot(layer.weight, x, axes=([0], [0]))  # (out, k, k, h, w)
        full = np.zeros((taps.shape[0], (h - 1) * s + k + layer.output_padding,
                         (w - 1) * s + k + layer.output_padding))
        for ky in range(k):
            for kx in range(k):
                full[:, ky: ky + (h - 1) * s + 1: s, kx: kx + (w - 1) * s + 1: s] += taps[:, ky, kx]
        out_h, out_w = (h - 1) * s - 2 * p + k + layer.output_padding, (w - 1) * s - 2 * p + k + layer.output_padding
        out = full[:, p: p + out_h, p: p + out_w]
    else:
        x = np.pad(x, ((0, 0), (p, p), (p, p)))
        windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]
        # (C, H', W', k, k) x (out, C, k, k) -> (out, H', W')
        out = np.tensordot(layer.weight, windows, axes=([1, 2, 3], [0, 3, 4]))
    return out + layer.bias[:, None, None]


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
        """Quantize float layers (dicts: weight in PyTorch layout, bias, stride, padding,
        transposed, output_padding, relu) and check that no sum can exceed 2^53."""
        out, bound = [], ACT_LIMIT * 2.0**ACT_BITS  # largest |input| in fixed point
        for spec in layers:
            w_int = np.round(np.asarray(spec["weight"], dtype=np.float64) * 2.0**WEIGHT_BITS)
            b_int = np.round(np.asarray(spec["bias"], dtype=np.float64) * 2.0**(WEIGHT_BITS + ACT_BITS))
            # Largest |sum| per output channel: every weight of the channel times the largest input
            # (a transposed convolution uses only some taps per output pixel: an over-estimate).
            per_output = np.abs(w_int).sum(axis=(0, 2, 3) if spec["transposed"] else (1, 2, 3))
            worst = float(np.max(per_output * bound + np.abs(b_int)))
            if worst >= EXACT_LIMIT:
                raise ValueError(f"hyper-synthesis sums could reach {worst:.3g} >= 2^53: not exact in float64")
            out.append(IntegerLayer(w_int, b_int, int(spec["stride"]), int(spec["padding"]),
                                    bool(spec["transposed"]), int(spec.get("output_padding", 0)),
                                    bool(spec["relu"])))
        medians_int = np.round(np.asarray(medians, dtype=np.float64) * 2.0**ACT_BITS)
        return cls(tuple(out), medians_int, np.asarray(scale_table, dtype=np.float32).astype(np.float64),
                   mean_scale)

    def raw(self, z_symbols: np.ndarray, z_gain_fixed: np.ndarray) -> np.ndarray:
        """h_s output (channels, 4h, 4w) as integers with ACT_BITS fractional bits (float64).

        z_symbols: (C, h, w) integers; z_gain_fixed: (C,) from ``fixed_gain``."""
        limit = ACT_LIMIT * 2.0**ACT_BITS
        z = z_symbols.astype(np.int64) * (1 << ACT_BITS) + self.medians.astype(np.int64)[:, None, None]
        z = np.clip(z, -limit, limit).astype(np.int64)  # bounds the product below 2^63
        x = ((z * z_gain_fixed[:, None, None]) >> GAIN_BITS).astype(np.float64)
        for layer in self.layers:
            x = np.floor(_conv(x, layer) / 2.0**WEIGHT_BITS)
            if layer.relu:
                x = np.maximum(x, 0.0)
            x = np.clip(x, -limit, limit)
        return x

    def params(self, z_symbols: np.ndarray, z_gain_fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """rANS table indexes (int32) and means (float32, or None) of y, each (M, 4h, 4w)."""
        raw = self.raw(z_symbols, z_gain_fixed) / 2.0**ACT_BITS  # exact: a power-of-two scaling
        scales, means = (raw[: raw.shape[0] // 2], raw[raw.shape[0] // 2:]) if self.mean_scale else (raw, None)
        # CompressAI's GaussianConditional.build_indexes: the number of table entries (but the
        # last) below the scale, after the lower bound (which cannot change the count).
        indexes = np.searchsorted(self.scale_table[:-1], scales, side="left").astype(np.int32)
        return indexes, None if means is None else means.astype(np.float32)
