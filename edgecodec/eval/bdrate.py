"""Bjøntegaard delta rate (BD-rate) and delta quality between two rate-quality curves.

Two interpolations of log-rate as a function of quality, both integrated over the quality range
the two curves share:

``pchip``
    Piecewise cubic Hermite interpolation (``scipy.interpolate.PchipInterpolator``), integrated
    exactly. Monotone and free of the overshoot a global polynomial can have; this is what the
    common "bjontegaard" Python package uses (its ``method="pchip"``) and what JVET's recent
    reporting sheets use.
``cubic``
    The original VCEG-M33 method: a least-squares cubic polynomial through the points (at least
    4), integrated analytically.

BD-rate is the average rate difference of ``test`` against ``anchor`` at equal quality, in percent:
-20 means the test codec needs 20% fewer bits. Rates are in any unit (bpp here); only their ratio
matters.

Quality axes (higher is better everywhere, so the same code serves all three):

``psnr``      PSNR in dB as it is.
``ms_ssim``   ``-10 * log10(1 - MS-SSIM)`` dB, the usual way to spread MS-SSIM near 1 (``ssim`` alike).
``st_lpips``  ``-10 * log10(ST-LPIPS)`` dB. ST-LPIPS is a distance (lower is better); its log makes
              log-rate close to linear in quality, as PSNR does, so the cubic and PCHIP fits agree.
              The BD-rate on this axis is the bits saved (negative) at equal ST-LPIPS.

Points are sorted by rate, and points whose quality does not improve on the previous one are
dropped (interpolation needs a strictly increasing quality axis): a codec that spends more bits for
no better quality adds nothing to its curve.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

METHODS = ("pchip", "cubic")
METRICS = ("psnr", "ms_ssim", "st_lpips")


class BDRateError(ValueError):
    """The curves cannot be compared: too few points or no quality range in common."""


def quality_axis(metric: str, values: Sequence[float]) -> np.ndarray:
    """Map metric values to the 'higher is better, roughly linear in log-rate' axis used here."""
    v = np.asarray(values, dtype=np.float64)
    if metric == "psnr":
        return v
    if metric in ("ms_ssim", "ssim"):
        return -10 * np.log10(np.clip(1 - v, 1e-12, None))
    if metric == "st_lpips":
        return -10 * np.log10(np.clip(v, 1e-12, None))
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")


def _curve(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        raise BDRateError("rate and quality must be 1-D sequences of the same length")
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[keep], q[keep]
    order = np.lexsort((-q, r))  # by rate; at equal rate the best quality first
    r, q = r[order], q[order]
    out_r, out_q = [], []
    for ri, qi in zip(r, q):
        if not out_q or qi > out_q[-1]:
            out_r.append(ri)
            out_q.append(qi)
    return np.log(np.array(out_r)), np.array(out_q)


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Integral over [lo, hi] of y(x), interpolated by ``method``."""
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        return float(PchipInterpolator(x, y).integrate(lo, hi))
    if method == "cubic":
        if len(x) < 4:
            raise BDRateError(f"the cubic fit needs at least 4 points, got {len(x)}")
        poly = np.polynomial.Polynomial.fit(x, y, 3)
        antiderivative = poly.integ()
        return float(antiderivative(hi) - antiderivative(lo))
    raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")


def _curves(anchor_rate: Sequence[float], anchor_quality: Sequence[float], test_rate: Sequence[float],
            test_quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both curves prepared by _curve (log-rate, quality), each with at least 2 points."""
    la, qa = _curve(anchor_rate, anchor_quality)
    lt, qt = _curve(test_rate, test_quality)
    if len(qa) < 2 or len(qt) < 2:
        raise BDRateError("each curve needs at least 2 points with increasing quality")
    return la, qa, lt, qt


def bd_rate(anchor_rate: Sequence[float], anchor_quality: Sequence[float], test_rate: Sequence[float],
            test_quality: Sequence[float], method: str = "pchip",
            rate_range: tuple[float, float] | None = None) -> float:
    """Average rate difference of test vs anchor at equal quality, in percent (negative: test saves bits).

    ``rate_range`` (lo, hi) narrows the integration to the qualities the *anchor* reaches between
    those rates (PCHIP along its curve on log-rate, as :func:`value_at_rate`), still intersected with
    what both curves cover:
    "BD-rate over 0.15 to 1.0 bpp" against a classical codec.
    """
    la, qa, lt, qt = _curves(anchor_rate, anchor_quality, test_rate, test_quality)
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if rate_range is not None:
        r_lo, r_hi = rate_range
        if not 0 < r_lo < r_hi:
            raise ValueError(f"rate_range must be 0 < lo < hi, got {rate_range}")
        from scipy.interpolate import PchipInterpolator

        # quality as a function of log-rate along the anchor (after _curve both are increasing), read
        # as value_at_rate reads a curve at a rate (PCHIP; beyond its ends, its ends)
        q_at = PchipInterpolator(la, qa)(np.clip(np.log([r_lo, r_hi]), la[0], la[-1]))
        lo, hi = max(lo, float(q_at[0])), min(hi, float(q_at[1]))
    if not hi > lo:  # the rate range named too: it can empty a range the curves share
        within = "" if rate_range is None else f" within the anchor's {rate_range[0]:g}-{rate_range[1]:g} bpp"
        raise BDRateError(f"the curves share no quality range{within} (anchor {qa[0]:.3f}-{qa[-1]:.3f}, "
                          f"test {qt[0]:.3f}-{qt[-1]:.3f})")
    diff = (_integral(qt, lt, lo, hi, method) - _integral(qa, la, lo, hi, method)) / (hi - lo)
    return 100 * (math.exp(diff) - 1)


def bd_quality(anchor_rate: Sequence[float], anchor_quality: Sequence[float], test_rate: Sequence[float],
               test_quality: Sequence[float], method: str = "pchip") -> float:
    """Average quality difference of test vs anchor at equal rate (BD-PSNR for the PSNR axis)."""
    la, qa, lt, qt = _curves(anchor_rate, anchor_quality, test_rate, test_quality)
    # After _curve, log-rate is strictly increasing too, so quality is a function of it.
    lo, hi = max(la[0], lt[0]), min(la[-1], lt[-1])
    if not hi > lo:
        raise BDRateError("the curves share no rate range")
    return (_integral(lt, qt, lo, hi, method) - _integral(la, qa, lo, hi, method)) / (hi - lo)


def bd_rate_metric(metric: str, anchor_bpp: Sequence[float], anchor_values: Sequence[float],
                   test_bpp: Sequence[float], test_values: Sequence[float], method: str = "pchip",
                   rate_range: tuple[float, float] | None = None) -> float:
    """BD-rate on a named metric axis (see the module docstring for each axis)."""
    return bd_rate(anchor_bpp, quality_axis(metric, anchor_values), test_bpp, quality_axis(metric, test_values),
                   method, rate_range)


def bd_rate_or_nan(*args, **kwargs) -> float:
    """``bd_rate_metric`` that gives NaN instead of raising when the curves cannot be compared."""
    try:
        return bd_rate_metric(*args, **kwargs)
    except BDRateError:
        return math.nan


def bd_rates_between(anchor_points: Sequence[Mapping[str, float]], test_points: Sequence[Mapping[str, float]],
                     metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """BD-rate (NaN where not comparable) on each metric of two curves given as points, each a mapping
    with ``bpp`` and the metrics (a model card's Kodak points)."""
    return {metric: bd_rate_or_nan(metric, [p["bpp"] for p in anchor_points], [p[metric] for p in anchor_points],
                                   [p["bpp"] for p in test_points], [p[metric] for p in test_points])
            for metric in metrics}


def value_at_rate(metric: str, bpp: Sequence[float], values: Sequence[float], rate: float) -> float:
    """A curve's metric at ``rate`` bpp, PCHIP-interpolated on log-rate; NaN outside the measured range.

    Same curve preparation as the BD-rate (points that spend more bits for no better quality are
    dropped), interpolated on the metric's BD axis and mapped back, so MS-SSIM and ST-LPIPS
    interpolate in their log domains.
    """
    if not rate > 0:  # outside every curve (math.log raised "math domain error" at 0)
        return math.nan
    try:
        lr, q = _curve(bpp, quality_axis(metric, values))
    except BDRateError:
        return math.nan
    x = math.log(rate)
    if len(lr) == 0 or not lr[0] <= x <= lr[-1]:
        return math.nan
    if len(lr) == 1:
        axis = float(q[0])
    else:
        from scipy.interpolate import PchipInterpolator

        axis = float(PchipInterpolator(lr, q)(x))
    if metric in ("ms_ssim", "ssim"):
        return 1 - 10 ** (-axis / 10)
    if metric == "st_lpips":
        return 10 ** (-axis / 10)
    return axis


__all__ = ["METHODS", "METRICS", "BDRateError", "bd_quality", "bd_rate", "bd_rate_metric", "bd_rate_or_nan",
           "bd_rates_between", "quality_axis", "value_at_rate"]
