"""Checkerboard context (models/context.py) in exact integer arithmetic, shared by both coders.

A context model's non-anchor parameters depend on decoded latents, so they must be computed
identically on both sides for the same reason as the hyper-synthesis's (see ``hyper``): the
context convolution and the entropy-parameters network run in the same fixed point. The
decoded anchors enter as symbols + means, integers with ACT_BITS fractional bits, exactly the
y_hat that training saw. The coding pass itself is a callback, so the encoder (which codes
symbols it computes) and the decoder (which reads them) share every other step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from .hyper import ACT_BITS, ACT_LIMIT_FIXED, WEIGHT_BITS, IntegerLayer, exact_matmul, quantize_layers, run_layers

# code(selected (h, w) bool, table indexes (M, N) int32, means (M, N) float32) -> symbols (M, N)
# int32 of the selected positions (N of them, raster order), channel by channel
CodePass = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def anchor_mask(height: int, width: int) -> np.ndarray:
    """True where row + column is even: the half of y coded first (CompressAI's "even" parity)."""
    rows, cols = np.indices((height, width))
    return (rows + cols) % 2 == 0


@dataclass(frozen=True)
class IntegerCheckerboard:
    """The context convolution and the residual entropy-parameters network in fixed point."""

    context: IntegerLayer  # masked 5x5 convolution of the decoded anchors
    parameters: tuple[IntegerLayer, ...]  # 1x1 layers: [context, side] -> correction of side

    @classmethod
    def from_layers(cls, layer_specs: Callable[[str], list[dict]]) -> "IntegerCheckerboard":
        """Quantize the float layers that ``layer_specs`` reads from the tables ("ctx", "ep")."""
        (context,) = quantize_layers(layer_specs("ctx"), "context convolution")
        return cls(context, quantize_layers(layer_specs("ep"), "entropy parameters"))

    @cached_property
    def _taps(self) -> tuple[np.ndarray, np.ndarray]:
        """The context convolution's unmasked taps (T, 2) as (ky, kx), and its weight over them
        as one matrix (Cc, M*T): computed once per model, not per pass."""
        weight = self.context.weight
        taps = np.argwhere(np.any(weight != 0, axis=(0, 1)))
        return taps, np.ascontiguousarray(weight[:, :, taps[:, 0], taps[:, 1]].reshape(weight.shape[0], -1))

    def context_at(self, y_hat: np.ndarray, selected: np.ndarray) -> np.ndarray:
        """The context convolution of ``y_hat`` (M, h, w) at the selected positions only (Cc, N),
        over the taps the mask keeps (12 of 25): the same integers as ``run_layers`` over the whole
        latent (every sum is exact, so leaving out zero products changes nothing), 4x fewer products."""
        taps, weight = self._taps
        p = self.context.padding
        padded = np.pad(y_hat, ((0, 0), (p, p), (p, p)))
        rows, cols = np.nonzero(selected)
        columns = np.stack([padded[:, rows + ky, cols + kx] for ky, kx in taps], axis=1)  # (M, T, N)
        out = exact_matmul(weight, columns.reshape(-1, len(rows))) + self.context.bias[:, None]
        return np.clip(np.floor(out / 2.0**WEIGHT_BITS), -ACT_LIMIT_FIXED, ACT_LIMIT_FIXED)

    def _corrected(self, side: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Parameters (2M, N) of N positions: side + network([context, side])."""
        x = np.concatenate([context, side])[:, :, None]  # (C, N, 1): a 1-pixel-wide image
        return np.clip(side + run_layers(x, self.parameters)[:, :, 0], -ACT_LIMIT_FIXED, ACT_LIMIT_FIXED)

    def run(self, side: np.ndarray, table_indexes: Callable[[np.ndarray], np.ndarray],
            code: CodePass) -> tuple[np.ndarray, np.ndarray]:
        """Both passes over one latent (or tile) whose hyper-synthesis output is ``side`` (2M, h, w):
        returns the symbols (M, h, w) int32 and means (M, h, w) float32 of y."""
        m, (h, w) = side.shape[0] // 2, side.shape[1:]
        anchors = anchor_mask(h, w)
        y_hat = np.zeros((m, h, w))  # decoded values in fixed point, zero where not decoded yet
        symbols, means = np.zeros((m, h, w), dtype=np.int32), np.zeros((m, h, w), dtype=np.float32)
        for selected in (anchors, ~anchors):
            side_sel = side[:, selected]
            if selected is anchors:  # nothing decoded yet: the context is zero, not the bias
                context = np.zeros((self.context.weight.shape[0], side_sel.shape[1]))
            else:
                context = self.context_at(y_hat, selected)
            params = self._corrected(side_sel, context)
            indexes, means_fixed = table_indexes(params[:m]), params[m:]
            means_sel = (means_fixed / 2.0**ACT_BITS).astype(np.float32)
            symbols_sel = code(selected, indexes, means_sel)
            symbols[:, selected], means[:, selected] = symbols_sel, means_sel
            # symbols + means in fixed point; float32 means times 2^ACT_BITS are integers
            y_hat[:, selected] = np.clip(symbols_sel * 2.0**ACT_BITS + means_sel.astype(np.float64) * 2.0**ACT_BITS,
                                         -ACT_LIMIT_FIXED, ACT_LIMIT_FIXED)
        return symbols, means
