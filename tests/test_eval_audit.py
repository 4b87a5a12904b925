"""A learned-compression researcher's audit of the evaluation's reports, results files and errors.

Each test failed before its fix. None runs a sweep of the module fixtures: synthetic summaries, or
a few rows on 48 x 48 crops.
"""

from __future__ import annotations

import argparse
import json
import math

import pytest
from conftest import SHIPPED
from PIL import Image

from edgecodec.eval import bdrate, report
from edgecodec.eval.compressai_format import read_curves, write_curves

RATES = [0.12, 0.25, 0.5, 0.9, 1.6]
PSNRS = [27.0, 29.6, 32.4, 34.8, 37.5]


def _points(rates, psnrs, lpips=None):
    lpips = lpips or [None] * len(rates)
    return [{"quality": i, "images": 1, "bpp": r, "psnr": p, "ms_ssim": None, "ssim": None, "st_lpips": s,
             "enc_ms": 1.0, "dec_ms": 1.0, "peak_mb": 1.0} for i, (r, p, s) in enumerate(zip(rates, psnrs, lpips))]


def _summary(**external):
    curves = {"mine": {"kind": "learned", "label": "mine", "points": _points(RATES, [p + 1 for p in PSNRS])},
              "jpeg": {"kind": "classical", "label": "JPEG", "points": _points(RATES, PSNRS)}}
    curves.update({name: {"kind": "external", "label": name, "source": str(source), "description": "",
                          "points": _points(RATES, PSNRS)} for name, source in external.items()})
    return {"images": ["a.png"], "image_dir": "/x", "curves": curves, "bd_rate_range": [0.15, 1.0],
            "bd_rates": [{"test": "mine", "anchor": "jpeg", "psnr_pchip": -20.0, "psnr_cubic": -20.1,
                          "ms_ssim_pchip": None, "ms_ssim_cubic": None, "st_lpips_pchip": -31.0,
                          "st_lpips_cubic": -30.0}]}


def test_the_html_bd_table_heads_its_st_lpips_column_as_a_bd_rate():
    """The ST-LPIPS column was headed "bits saved" over BD-rates (negative = fewer bits): -31.0%
    under "bits saved" reads as 31% more bits, the opposite of what it is."""
    table = report._bd_table(_summary())
    assert "bits saved" not in table
    assert "ST-LPIPS BD-rate" in table and "-31.0%" in table


def test_the_charts_say_that_only_the_measured_curves_count_headers(monkeypatch, tmp_path):
    """Every chart's x axis said "file bytes, headers included", under CompressAI's published
    curves and the --compare curves too, whose bpp count bare bitstreams (no container)."""
    from matplotlib.axes import Axes

    labels: list[str] = []
    monkeypatch.setattr(Axes, "set_xlabel", lambda self, text, *a, **k: labels.append(text))
    published = {"bmshj2018-factorized": {"label": "published", "kind": "compressai", "bpp": RATES,
                                          "psnr": PSNRS, "ms_ssim": None}}
    report.plot_rd(_summary(), tmp_path, anchors=published)
    assert labels and "published / compared: their files' figures" in labels[0]
    labels.clear()
    report.plot_rd(_summary(), tmp_path, anchors={})  # measured curves alone: each counts its whole file
    assert labels == ["bits per pixel (file bytes, headers included)"] * len(labels) and labels


def test_the_crops_text_says_how_each_file_was_matched_to_the_rate():
    """The report said every codec's file was "the one closest" to the target and that crops were
    256 x 256; the learned files are the rate search's (at most the target where it can), and an
    image under 256 pixels is cropped to itself."""
    text = report._crops_html([{"image": "a.png", "entries": []}], 0.25)
    assert "every codec's file is the one closest" not in text
    assert "within 3% below the target" in text and "crops are up to 256x256" in text


def test_compare_reads_compressais_published_ms_ssim_in_db(tmp_path):
    """CompressAI publishes its paper curves' MS-SSIM in dB only (``ms-ssim-db-rgb``, e.g.
    results/image/kodak/paper-cheng2020-checkerboard-6M_ms-ssim.json): refused as having no metric."""
    path = tmp_path / "paper-cheng2020-checkerboard-6M_ms-ssim.json"
    results = {"bpp": [0.026, 0.0659, 0.1834], "ms-ssim-db-rgb": [7.059, 10.675, 14.818]}
    path.write_text(json.dumps({"name": "cheng2020-checkerboard-6M", "description": "official results",
                                "meta": {"source": "paper"}, "results": results}))
    (curve,) = read_curves(path).values()
    got = [p["ms_ssim"] for p in curve["points"]]
    assert got == pytest.approx([1 - 10 ** (-db / 10) for db in (7.059, 10.675, 14.818)])
    assert bdrate.quality_axis("ms_ssim", got) == pytest.approx([7.059, 10.675, 14.818])
    assert all(math.isnan(p["psnr"]) for p in curve["points"])


def test_a_summary_json_given_as_a_results_file_says_what_to_give(tmp_path):
    from edgecodec.eval.compressai_format import ResultsFormatError

    path = tmp_path / "summary.json"
    path.write_text(json.dumps(_summary()))
    with pytest.raises(ResultsFormatError, match="an edgecodec summary.json\\? give its compressai/NAME.json"):
        read_curves(path)


def test_a_compared_file_in_the_output_folder_is_not_deleted(tmp_path):
    """`eval --out OUT --compare old=OUT/compressai/old.json`: the run removed old.json as a stale
    curve of an earlier sweep, and summary.json named a source that was gone."""
    folder = tmp_path / "compressai"
    folder.mkdir()
    kept, stale = folder / "old.json", folder / "webp.json"
    for path in (kept, stale):
        path.write_text("{}")
    written = write_curves(_summary(old=kept), folder)
    assert sorted(p.name for p in written) == ["jpeg.json", "mine.json"]
    assert kept.is_file() and not stale.exists()


def test_the_report_command_refuses_a_folder_without_a_summary(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        report.main([str(tmp_path / "nowhere")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "not a summary that edgecodec eval wrote" in err


def test_a_rate_range_that_leaves_no_quality_is_named():
    with pytest.raises(bdrate.BDRateError, match="within the anchor's 5-6 bpp"):
        bdrate.bd_rate(RATES, PSNRS, [0.8 * r for r in RATES], PSNRS, rate_range=(5, 6))


# --- the command, on two 48 x 48 crops -----------------------------------------------------------
@pytest.fixture
def small_images(tmp_path, kodim23_rgb):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(kodim23_rgb[100:148, 300:348]).save(folder / "a.png")
    Image.fromarray(kodim23_rgb[300:348, 500:548]).save(folder / "b.png")
    return folder


def _eval(*argv: str):
    from edgecodec.eval.command import add_eval_parser

    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["eval", *argv])


def test_a_damaged_anchors_file_is_refused_before_measuring(small_images, tmp_path, monkeypatch):
    """A reference-curve file that lost a field stopped the run after the whole sweep with an
    internal error (KeyError: 'bpp'), the report not drawn."""
    from edgecodec.errors import UsageError

    anchors = tmp_path / "data" / "anchors"
    anchors.mkdir(parents=True)
    (anchors / "compressai_kodak.json").write_text('{"curves": {"bmshj2018-factorized": {"psnr_rgb": [30, 32]}}}')
    monkeypatch.setenv("EDGECODEC_DATA", str(tmp_path / "data"))
    out = tmp_path / "out"
    args = _eval(str(small_images), "--out", str(out), "--models", "none", "--codecs", "jpeg", "--sweep",
                 "jpeg=50,90", "--no-st-lpips", "--crops", "0", "-q")
    with pytest.raises(UsageError, match="compressai_kodak.json is not readable as an anchors file"):
        args.func(args)
    assert not out.exists()  # nothing measured
    assert report.load_anchors(tmp_path / "elsewhere") == {}  # a missing folder is still no anchors, no error


def test_the_console_says_which_range_its_bd_rates_cover(small_images, tmp_path, capsys):
    """The console's BD-rates are summary.json's bd_rates (every shared quality), while the README
    and table.md lead with bd_rates_in_range (0.15-1 bpp); the line did not say which they were."""
    args = _eval(str(small_images), "--out", str(tmp_path / "out"), "--models", SHIPPED, "--qualities", "0.2,0.6,1",
                 "--codecs", "jpeg", "--sweep", "jpeg=30,60,90", "--no-st-lpips", "--no-report", "-q")
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "BD-rate over all qualities both curves reach (PCHIP" in out
    assert "over the anchor's 0.15-1 bpp" in out


def test_a_compared_file_that_this_run_would_write_is_refused(small_images, tmp_path):
    """`eval --out OUT --compare old=OUT/compressai/jpeg.json --codecs jpeg`: the run wrote its own
    jpeg curve over the file it compared with, and summary.json named it as the compared source."""
    from edgecodec.errors import UsageError

    out = tmp_path / "out"
    (out / "compressai").mkdir(parents=True)
    old = out / "compressai" / "jpeg.json"
    write_curves(_summary(), out / "compressai")
    before = old.read_bytes()
    args = _eval(str(small_images), "--out", str(out), "--models", "none", "--codecs", "jpeg", "--sweep",
                 "jpeg=50,90", "--compare", f"old={old}", "--no-st-lpips", "--no-report", "-q")
    with pytest.raises(UsageError, match="jpeg.json this run writes: copy it out of"):
        args.func(args)
    assert old.read_bytes() == before
