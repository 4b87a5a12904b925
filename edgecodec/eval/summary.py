"""A sweep's summary: its rows averaged into curves, the BD-rates and matched-rate table between
them, and summary.json's content (runner.py measures the rows and writes the files).

Kept apart from the measuring code: rows are keyed by :func:`.runner.measuring_code`, which leaves
this module out, so a new table or BD-rate setting re-summarises cached rows instead of measuring
them again.
"""

from __future__ import annotations

import datetime as _dt
import math
import statistics
from pathlib import Path
from typing import Any, Iterable

from .classical import CODECS, library_version

METRIC_FIELDS = ("bpp", "psnr", "ms_ssim", "ssim", "st_lpips")
# The matched-rate table (the README's Kodak table) and the BD-rate range of the targets.
MATCHED_RATES = (0.15, 0.3, 0.6, 1.0)
BD_RATE_RANGE = (0.15, 1.0)
PEAK_MEMORY_NOTE = ("growth of peak RSS (VmHWM reset via /proc/self/clear_refs, after malloc_trim) over "
                    "the RSS before encode+decode of one image at one quality (learned: max with the analysis "
                    "transform); native allocations included; a close lower bound")
ST_LPIPS_NOTE = "stlpips-pytorch, AlexNet trunk, shift-tolerant variant, 8-bit RGB scaled to [-1, 1]"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _mean_of_all(values: Iterable[Any]) -> float:
    """The mean when every image has a value, else NaN: a mean over some of the images, beside a
    bpp over all of them, would be a point of no curve (and a BD-rate of mismatched sets)."""
    vals = list(values)
    return math.nan if not vals or any(_missing(v) for v in vals) else statistics.fmean(float(v) for v in vals)


def _median(values: Iterable[Any]) -> float:
    vals = [float(v) for v in values if not _missing(v)]
    return statistics.median(vals) if vals else math.nan


def summarize_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per codec and quality: metric means over images (NaN where an image lacks the metric), median
    times, max peak memory."""
    groups: dict[str, dict[float, list[dict[str, Any]]]] = {}
    kinds: dict[str, str] = {}
    for row in rows:
        groups.setdefault(row["codec"], {}).setdefault(row["quality"], []).append(row)
        kinds[row["codec"]] = row["kind"]
    curves = {}
    for codec, by_q in groups.items():
        points = []
        for q in sorted(by_q):
            rs = by_q[q]
            point = {"quality": q, "images": len(rs)}
            for key in METRIC_FIELDS:
                point[key] = _mean_of_all(r.get(key) for r in rs)
            point["enc_ms"] = _median(r["enc_ms"] for r in rs)
            point["dec_ms"] = _median(r["dec_ms"] for r in rs)
            peaks = [r["peak_mb"] for r in rs if not _missing(r.get("peak_mb"))]
            point["peak_mb"] = max(peaks) if peaks else math.nan
            points.append(point)
        label = CODECS[codec].label if kinds[codec] == "classical" and codec in CODECS else codec
        curves[codec] = {"kind": kinds[codec], "label": label, "points": points}
    return curves


def bd_rate_table(curves: dict[str, dict[str, Any]],
                  rate_range: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    """BD-rates (percent, PCHIP and cubic) of each learned model against each classical codec and external curve.

    ``rate_range``: only the qualities the anchor codec reaches between those bpp (see bdrate.bd_rate).
    """
    from .bdrate import METHODS, METRICS, bd_rate_or_nan

    table = []
    for test, tc in curves.items():
        if tc["kind"] != "learned":
            continue
        for anchor, ac in curves.items():
            if ac["kind"] not in ("classical", "external"):
                continue
            entry: dict[str, Any] = {"test": test, "anchor": anchor}
            for metric in METRICS:
                for method in METHODS:
                    entry[f"{metric}_{method}"] = bd_rate_or_nan(
                        metric, [p["bpp"] for p in ac["points"]], [p[metric] for p in ac["points"]],
                        [p["bpp"] for p in tc["points"]], [p[metric] for p in tc["points"]], method=method,
                        rate_range=rate_range)
            table.append(entry)
    return table


def matched_rate_table(curves: dict[str, dict[str, Any]],
                       rates: Iterable[float] = MATCHED_RATES) -> dict[str, list[dict[str, Any]]]:
    """Each curve's metrics at the given bpp (PCHIP on log-rate; NaN where the curve does not reach)."""
    from .bdrate import value_at_rate

    table = {}
    for name, curve in curves.items():
        bpp = [p["bpp"] for p in curve["points"]]
        table[name] = [{"bpp": rate, **{m: value_at_rate(m, bpp, [p[m] for p in curve["points"]], rate)
                                         for m in METRIC_FIELDS if m != "bpp"}} for rate in rates]
    return table


def json_safe(obj: Any, digits: int | None = 6) -> Any:
    """``obj`` for strict JSON: floats rounded to ``digits`` decimals (None: as they are), NaN (not
    measured) as null, infinities as "inf" / "-inf" (identical images' PSNR: measured, and not a
    number JSON has)."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj if digits is None else round(obj, digits)
    if isinstance(obj, dict):
        return {k: json_safe(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, digits) for v in obj]
    return obj


def build_summary(rows: list[dict[str, Any]], paths: list[Path], versions: dict[str, str], codecs: list[str],
                  image_dir: str | Path, st_lpips: bool,
                  external: dict[str, dict[str, Any]] | None = None, code: str | None = None) -> dict[str, Any]:
    """``versions``: each learned model label's :func:`model_version`; ``external``: compared curves;
    ``code``: :func:`measuring_code` of the rows."""
    curves = {**summarize_rows(rows), **(external or {})}
    notes = {"external": "curves of kind external come from --compare files (CompressAI's results format): "
                         "their bpp and metrics as the files give them, not measured here; compare them only "
                         "with a sweep of the same images"} if external else {}
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "image_dir": str(Path(image_dir).resolve()),
        "images": [p.name for p in paths],
        "models": versions,
        "code": code,
        "codecs": {c: {"label": CODECS[c].label, "settings": CODECS[c].settings, "library": library_version(c)}
                   for c in codecs},
        "notes": {"bpp": "8 * file bytes (container/headers included) / pixels, averaged over images",
                  "psnr": "8-bit RGB PSNR per image, averaged over images",
                  "times": "enc_ms / dec_ms: medians over images, one thread",
                  "peak_mb": PEAK_MEMORY_NOTE, "st_lpips": ST_LPIPS_NOTE if st_lpips else "not computed",
                  "bd_rates": "percent, negative = the learned model needs fewer bits than the anchor codec at "
                              "equal quality; ms_ssim on -10log10(1-MS-SSIM), st_lpips on -10log10(ST-LPIPS); "
                              "bd_rates over all shared qualities, bd_rates_in_range over the qualities the anchor "
                              "reaches within bd_rate_range bpp",
                  "matched_rates": "each curve's mean metrics interpolated (PCHIP on log bpp) at these bpp; "
                                   "null where the curve does not reach the rate", **notes},
        "curves": curves,
        "bd_rates": bd_rate_table(curves),
        "bd_rate_range": list(BD_RATE_RANGE),
        "bd_rates_in_range": bd_rate_table(curves, BD_RATE_RANGE),
        "matched_rates": matched_rate_table(curves),
    }


__all__ = ["BD_RATE_RANGE", "MATCHED_RATES", "METRIC_FIELDS", "bd_rate_table", "build_summary", "json_safe",
           "matched_rate_table", "summarize_rows"]
