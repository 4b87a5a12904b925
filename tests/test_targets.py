"""benchmarks/targets.py reads the issue's targets off an evaluation summary: checked on curves
whose answers are known (a learned curve against anchors it beats at some rates and not others)."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import targets  # noqa: E402


def _curve(points: list[tuple[float, float]]) -> dict:
    """(bpp, ST-LPIPS) points; the other metrics of an evaluation summary rise with the rate."""
    return {"points": [{"bpp": b, "st_lpips": v, "psnr": 25 + 5 * b, "ms_ssim": 0.9 + 0.05 * b,
                        "ssim": 0.7 + 0.1 * b} for b, v in points]}


def _summary() -> dict:
    # ST-LPIPS falls with rate. "mine" is below AVIF at every rate and below JPEG at twice the
    # rate only at 0.5 bpp (about 0.019 against JPEG's 0.024 at 1 bpp; 0.15 and 0.3 lose).
    mine = [(0.1, 0.30), (0.2, 0.20), (0.4, 0.03), (0.8, 0.008)]
    avif = [(0.1, 0.40), (0.2, 0.25), (0.4, 0.10), (0.8, 0.04), (1.2, 0.02)]
    jpeg = [(0.1, 0.60), (0.2, 0.35), (0.4, 0.12), (0.8, 0.035), (1.2, 0.018)]
    return {"curves": {"perceptual": _curve(mine), "avif": _curve(avif), "jpeg": _curve(jpeg)},
            "bd_rate_range": [0.15, 1.0],
            "bd_rates_in_range": [{"test": "fidelity", "anchor": "jpeg", "psnr_pchip": -41.0},
                                  {"test": "fidelity", "anchor": "webp", "psnr_pchip": 3.5}]}


def test_perceptual_targets_compare_at_the_rate_and_twice_the_rate():
    rows = {r["target"]: r for r in targets.perceptual_targets(_summary(), "perceptual")}
    assert len(rows) == 6
    assert all(r["met"] for t, r in rows.items() if "< avif" in t)
    twice = {t.split(" bpp")[0]: r["met"] for t, r in rows.items() if "< jpeg" in t}
    assert twice == {"ST-LPIPS at 0.15": False, "ST-LPIPS at 0.3": False, "ST-LPIPS at 0.5": True}
    at_05 = rows["ST-LPIPS at 0.5 bpp < jpeg at 1 bpp"]
    assert at_05["measured"] < at_05["limit"]


def test_fidelity_targets_use_the_range_bd_rates():
    rows = targets.fidelity_targets(_summary(), "fidelity")
    assert [(r["measured"], r["met"]) for r in rows] == [(-41.0, True), (3.5, False)]


def test_a_missing_curve_is_an_error_not_a_pass():
    summary = _summary()
    del summary["curves"]["avif"]
    with pytest.raises(KeyError):
        targets.perceptual_targets(summary, "perceptual")
