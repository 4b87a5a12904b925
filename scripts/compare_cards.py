"""Compare two model cards' Kodak points: is a candidate better than what is shipped?

    git show HEAD:edgecodec/weights/fidelity.json > /tmp/shipped.json
    edgecodec export-model RUN --name fidelity --out /tmp/cand --kodak ../shared/data/kodak ...
    .venv/bin/python scripts/compare_cards.py /tmp/shipped.json /tmp/cand/fidelity.json

Prints, per quality both cards measured, the candidate's change in bytes and in each metric, then
its BD-rate against the shipped card on PSNR, MS-SSIM and ST-LPIPS (``edgecodec.eval.bdrate``, the
evaluation's PCHIP rule; negative: the candidate needs fewer bits at equal quality). The card
points are 24-image Kodak means written by ``export-model --kodak``; nothing is measured here.
Exit status 2 when a card cannot be read or lacks Kodak points.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgecodec.eval.bdrate import bd_rates_between  # noqa: E402


def kodak_points(path: str) -> dict[float, dict]:
    try:
        card = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:  # missing, unreadable, not JSON
        raise ValueError(f"{path}: cannot read the card: {exc}") from None
    points = (card.get("kodak") or {}).get("points") if isinstance(card, dict) else None
    if not points:
        raise ValueError(f"{path}: no Kodak points (export the model with --kodak)")
    try:
        by_quality = {p["quality"]: p for p in points}
    except (KeyError, TypeError):
        raise ValueError(f"{path}: its Kodak points are not a list of points with a quality") from None
    for q, p in by_quality.items():  # a point lacking one was a KeyError when the table was printed
        lacking = [m for m in METRICS if not isinstance(p.get(m), (int, float))
                   and not (m == "st_lpips" and p.get(m, 0) is None)]
        if lacking:
            raise ValueError(f"{path}: its Kodak point at quality {q} has no {', '.join(lacking)}")
    return by_quality


METRICS = ("bpp", "psnr", "ms_ssim", "st_lpips")  # st_lpips may be null: a card measured without it


def _change(new: float | None, old: float | None, width: int, digits: int) -> str:
    return f"{'n/a':>{width}}" if new is None or old is None else f"{new - old:>+{width}.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("shipped", help="the shipped model's card (JSON)")
    parser.add_argument("candidate", help="the candidate's card (JSON)")
    args = parser.parse_args(argv)
    try:
        old, new = kodak_points(args.shipped), kodak_points(args.candidate)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    shared = sorted(set(old) & set(new))
    print(f"{'quality':>7} {'bpp':>8} {'bytes':>7} {'dPSNR':>7} {'dMS-SSIM':>9} {'dST-LPIPS':>9}")
    for q in shared:
        a, b = old[q], new[q]
        print(f"{q:>7g} {b['bpp']:>8.4f} {100 * (b['bpp'] / a['bpp'] - 1):>+6.2f}% {b['psnr'] - a['psnr']:>+7.3f} "
              f"{b['ms_ssim'] - a['ms_ssim']:>+9.5f} {_change(b['st_lpips'], a['st_lpips'], 9, 5)}")
    for metric, value in bd_rates_between(list(old.values()), list(new.values())).items():
        shown = "n/a (the curves cannot be compared)" if math.isnan(value) else f"{value:+.2f}%"
        print(f"BD-rate on {metric} vs shipped: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
