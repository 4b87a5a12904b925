"""scripts/compare_cards.py: a candidate card's Kodak points against the shipped card's."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import compare_cards  # noqa: E402


def _card(path, bpp_scale: float) -> str:
    points = [{"quality": q, "bpp": bpp_scale * (0.1 + q), "psnr": 25 + 8 * q, "ms_ssim": 0.85 + 0.1 * q,
               "st_lpips": 0.3 - 0.25 * q} for q in (0.0, 0.25, 0.5, 0.75, 1.0)]
    path.write_text(json.dumps({"name": "m", "kodak": {"points": points}}))
    return str(path)


def test_same_quality_with_fewer_bytes_is_a_negative_bd_rate(tmp_path, capsys):
    shipped, candidate = _card(tmp_path / "a.json", 1.0), _card(tmp_path / "b.json", 0.9)
    assert compare_cards.main([shipped, candidate]) == 0
    out = capsys.readouterr().out
    bd = dict(re.findall(r"BD-rate on (\w+) vs shipped: ([-+0-9.]+)%", out))
    assert set(bd) == {"psnr", "ms_ssim", "st_lpips"}
    assert all(abs(float(v) + 10.0) < 0.01 for v in bd.values()), out
    assert out.count("-10.00%  +0.000") == 5  # each quality: 10% fewer bytes, the same PSNR


def test_a_card_without_kodak_points_is_refused(tmp_path, capsys):
    (tmp_path / "bare.json").write_text(json.dumps({"name": "m"}))
    assert compare_cards.main([_card(tmp_path / "a.json", 1.0), str(tmp_path / "bare.json")]) == 2
    assert "no Kodak points" in capsys.readouterr().err


def test_a_missing_or_damaged_card_is_one_line_not_a_traceback(tmp_path, capsys):
    good = _card(tmp_path / "a.json", 1.0)
    (tmp_path / "text.json").write_text("not json")
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "points.json").write_text(json.dumps({"kodak": {"points": [1, 2]}}))
    (tmp_path / "no_psnr.json").write_text(json.dumps({"kodak": {"points": [{"quality": 0.5, "bpp": 0.3}]}}))
    for bad in ("missing.json", "text.json", "list.json", "points.json", "no_psnr.json"):
        assert compare_cards.main([good, str(tmp_path / bad)]) == 2
        err = capsys.readouterr().err
        assert bad in err and err.count("\n") == 1, err


def test_a_card_measured_without_st_lpips_compares_the_other_metrics(tmp_path, capsys):
    shipped, candidate = _card(tmp_path / "a.json", 1.0), tmp_path / "b.json"
    card = json.loads(Path(_card(candidate, 0.9)).read_text())
    for point in card["kodak"]["points"]:
        point["st_lpips"] = None
    candidate.write_text(json.dumps(card))
    assert compare_cards.main([shipped, str(candidate)]) == 0
    out = capsys.readouterr().out
    assert out.count("n/a") >= 5 and "BD-rate on psnr vs shipped: -10.00%" in out
