"""The shipped models' quality targets (the train-and-ship issue), read from a Kodak evaluation.

    edgecodec eval ../shared/data/kodak --out results/kodak --jobs 2   # measures (cached rows reused)
    python benchmarks/targets.py [--summary results/kodak/summary.json] [--fidelity fidelity] [--perceptual perceptual]

No measuring here: every figure comes from the evaluation's ``summary.json`` (24-image means per
quality) and the models' cards, with the same curve rules as the evaluation's own tables
(``edgecodec.eval.bdrate``: BD-rate over 0.15-1 bpp, values at a rate by PCHIP on log-rate).

- fidelity: BD-rate on PSNR <= -40% against JPEG and <= 0% against WebP over 0.15-1 bpp;
- perceptual: at 0.15, 0.3 and 0.5 bpp, ST-LPIPS below AVIF's at the same rate and below JPEG's
  at twice the rate;
- both: decoder <= 2 M parameters.

Prints each target with the measured figures and writes ``benchmarks/results/targets.json``.
Exit status 0 whatever the outcome (a target not met is a finding, not an error); 2 when the
summary lacks a curve the targets need.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from common import run_main, write_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgecodec.eval.runner import parse_model_label  # noqa: E402
from edgecodec.eval.summary import matched_rate_table  # noqa: E402
from edgecodec.zoo import find_model  # noqa: E402

PERCEPTUAL_RATES = (0.15, 0.3, 0.5)
DECODER_LIMIT = 2_000_000


def _bd_rate(summary: dict[str, Any], test: str, anchor: str) -> float:
    for row in summary["bd_rates_in_range"]:
        if row["test"] == test and row["anchor"] == anchor:
            return float(row["psnr_pchip"])
    raise KeyError(f"no BD-rate of {test} against {anchor} in the summary")


def fidelity_targets(summary: dict[str, Any], model: str) -> list[dict[str, Any]]:
    rows = []
    for anchor, limit in (("jpeg", -40.0), ("webp", 0.0)):
        value = _bd_rate(summary, model, anchor)
        rows.append({"model": model, "target": f"BD-rate PSNR vs {anchor} over "
                     f"{summary['bd_rate_range'][0]}-{summary['bd_rate_range'][1]} bpp <= {limit:g}%",
                     "measured": round(value, 2), "limit": limit, "met": value <= limit})
    return rows


def perceptual_targets(summary: dict[str, Any], model: str) -> list[dict[str, Any]]:
    rows = []
    rates = sorted({*PERCEPTUAL_RATES, *(2 * r for r in PERCEPTUAL_RATES)})
    # The evaluation's own matched-rate interpolation, at every rate a target reads.
    table = matched_rate_table({n: summary["curves"][n] for n in (model, "avif", "jpeg")}, rates)

    def st_lpips(name: str, rate: float) -> float:
        return table[name][rates.index(rate)]["st_lpips"]

    for rate in PERCEPTUAL_RATES:
        mine = st_lpips(model, rate)
        for anchor, anchor_rate in (("avif", rate), ("jpeg", 2 * rate)):
            theirs = st_lpips(anchor, anchor_rate)
            met = not (math.isnan(mine) or math.isnan(theirs)) and mine < theirs
            rows.append({"model": model, "target": f"ST-LPIPS at {rate} bpp < {anchor} at {anchor_rate:g} bpp",
                         "measured": round(mine, 4), "limit": round(theirs, 4), "met": met})
    return rows


def decoder_targets(models: list[str], measured: dict[str, str]) -> list[dict[str, Any]]:
    """From the installed cards; ``measured``: the summary's weights (first 16 hex digits of the
    SHA-256) per model, to warn when the evaluation measured other weights than these."""
    rows = []
    for name in models:
        entry = find_model(name)
        if measured.get(name) and not entry.card["weights_sha256"].startswith(measured[name]):
            print(f"warning: the summary measured other {name} weights than the installed ones", file=sys.stderr)
        decoder = int(entry.card["parameters"]["decoder"])
        rows.append({"model": name, "target": f"decoder parameters <= {DECODER_LIMIT:,}", "measured": decoder,
                     "limit": DECODER_LIMIT, "met": decoder <= DECODER_LIMIT})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", default=str(REPO / "results" / "kodak" / "summary.json"),
                        help="the Kodak evaluation's summary.json (default results/kodak/summary.json)")
    parser.add_argument("--fidelity", default="fidelity",
                        help="fidelity model label(s), comma-separated: e.g. fidelity,fidelity+refine50 (the "
                             "model with encoder refinement, evaluated under that label)")
    parser.add_argument("--perceptual", default="perceptual", help="perceptual model label (default %(default)s)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "targets.json"),
                        help="results file (default benchmarks/results/targets.json)")
    args = parser.parse_args()
    try:
        summary = json.loads(Path(args.summary).read_text())
    except ValueError as exc:  # not JSON, or not text (a damaged or wrong file): a traceback before
        print(f"error: {args.summary} is not an evaluation summary (JSON): {exc}", file=sys.stderr)
        return 2
    if not isinstance(summary, dict):
        print(f"error: {args.summary} is not an evaluation summary (a JSON object)", file=sys.stderr)
        return 2
    measured = summary.get("models", {})
    try:
        fidelity = [label.strip() for label in args.fidelity.split(",") if label.strip()]
        models = dict.fromkeys(parse_model_label(label)[0] for label in [args.perceptual, *fidelity])
        rows = ([row for label in fidelity for row in fidelity_targets(summary, label)]
                + perceptual_targets(summary, args.perceptual) + decoder_targets(list(models), measured))
    except KeyError as exc:
        print(f"error: {args.summary} lacks what the targets need: {exc}", file=sys.stderr)
        return 2
    width = max(len(r["model"]) for r in rows)
    for r in rows:
        print(f"{r['model']:<{width}}  {r['target']:<48} {r['measured']!s:>10} vs {r['limit']!s:<10} "
              f"{'met' if r['met'] else 'NOT met'}")
    print(f"{sum(r['met'] for r in rows)} of {len(rows)} targets met")
    summary_path = Path(args.summary).resolve()  # recorded relative to the repository when inside it
    shown = summary_path.relative_to(REPO) if summary_path.is_relative_to(REPO) else summary_path
    out = write_results(args.out, {"summary": str(shown), "summary_created": summary.get("created"),
                                   "models": measured, "targets": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
