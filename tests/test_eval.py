"""Evaluation: classical codecs, BD-rate, the sweep runner and its cache, the report, `eval` CLI."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math

import numpy as np
import pytest
from conftest import REPO, SHIPPED
from PIL import Image

from edgecodec.eval import bdrate, classical, runner
from edgecodec.eval import summary as summaries
from edgecodec.metrics import psnr

MAGIC = {"jpeg": (0, b"\xff\xd8\xff"), "webp": (8, b"WEBP"), "avif": (4, b"ftypavif"), "jxl": (0, b"\xff\x0a"),
         "heic": (4, b"ftypheic")}


# --- classical codecs ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(classical.CODECS))
def test_classical_round_trip(name, kodim23_rgb):
    codec = classical.get_codec(name)
    if not codec.available():
        pytest.skip(f"{name} not available in this Pillow build")
    rgb = np.ascontiguousarray(kodim23_rgb[100:196, 200:328])
    settings = codec.settings_id()
    data = codec.encode(rgb, 60)
    assert codec.settings_id() == settings  # encoding leaves the settings (a cache key) as they were
    offset, magic = MAGIC[name]
    assert data[offset:offset + len(magic)] == magic  # a complete file, container/header included
    decoded = codec.decode(data)
    assert decoded.shape == rgb.shape and decoded.dtype == np.uint8
    assert psnr(rgb, decoded) > 25
    # Lower quality, fewer bytes.
    assert len(codec.encode(rgb, codec.sweep[0])) < len(data)
    with pytest.raises(ValueError):
        codec.encode(rgb, 101)
    # Every quality of the declared range encodes: the size searches (web page, report crops) may
    # try either end. JPEG XL at 100 failed inside libjxl ("The encoder API is used in an incorrect way").
    lo, hi = codec.quality_range
    assert len(codec.encode(rgb, lo)) < len(codec.encode(rgb, hi))
    quality, data, fits = classical.encode_to_size(codec, rgb, 10**7)  # more than any quality needs
    assert (quality, fits) == (hi, True)


def test_classical_registry_and_encode_to_bpp(kodim23_rgb):
    assert set(classical.CODECS) == {"jpeg", "webp", "avif", "jxl", "heic"}
    assert set(runner.DEFAULT_CODECS) == {"jpeg", "webp", "avif", "jxl"}  # the anchors' codecs
    assert classical.HEIC_SETTINGS["enc_params"]["x265:pools"] == "1"
    assert classical.JPEG_SETTINGS["subsampling"] == "4:2:0" and classical.JPEG_SETTINGS["optimize"]
    assert classical.WEBP_SETTINGS["method"] == 6
    assert classical.AVIF_SETTINGS["speed"] == 6 and classical.AVIF_SETTINGS["max_threads"] == 1
    assert classical.JXL_SETTINGS["effort"] == 7
    with pytest.raises(ValueError, match="unknown classical codec"):
        classical.get_codec("bpg")
    rgb = np.ascontiguousarray(kodim23_rgb[:128, :128])
    jpeg = classical.get_codec("jpeg")
    quality, data = classical.encode_to_bpp(jpeg, rgb, 1.0)
    assert data == jpeg.encode(rgb, quality)
    bpp = 8 * len(data) / rgb.shape[0] / rgb.shape[1]
    assert abs(bpp - 1.0) < 0.25


# --- BD-rate -------------------------------------------------------------------------------------
RATES = np.array([0.12, 0.25, 0.5, 0.9, 1.6])
PSNRS = np.array([27.0, 29.6, 32.4, 34.8, 37.5])


@pytest.mark.parametrize("method", bdrate.METHODS)
def test_bd_rate_known_answer(method):
    assert bdrate.bd_rate(RATES, PSNRS, 0.8 * RATES, PSNRS, method) == pytest.approx(-20, abs=0.5)
    assert bdrate.bd_rate(RATES, PSNRS, 1.25 * RATES, PSNRS, method) == pytest.approx(25, abs=0.5)
    assert bdrate.bd_rate(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0, abs=1e-9)
    # A quality shift at equal rate: BD-quality recovers it, BD-rate turns negative.
    assert bdrate.bd_quality(RATES, PSNRS, RATES, PSNRS + 0.5, method) == pytest.approx(0.5, abs=1e-6)
    assert bdrate.bd_rate(RATES, PSNRS, RATES, PSNRS + 0.5, method) < 0
    # Same answer on the transformed axes, with a point order that needs sorting.
    msssim = 1 - 10 ** (-PSNRS / 20)
    lpips = 10 ** (-PSNRS / 25)
    order = [3, 0, 4, 1, 2]
    for metric, values in (("ms_ssim", msssim), ("st_lpips", lpips)):
        got = bdrate.bd_rate_metric(metric, RATES, values, (0.8 * RATES)[order], values[order], method)
        assert got == pytest.approx(-20, abs=0.5)


def test_bd_rate_errors_and_axes():
    with pytest.raises(bdrate.BDRateError, match="share no quality range"):
        bdrate.bd_rate(RATES, PSNRS, RATES, PSNRS + 20)
    with pytest.raises(bdrate.BDRateError, match="at least 4"):
        bdrate.bd_rate(RATES[:3], PSNRS[:3], RATES[:3], PSNRS[:3], "cubic")
    assert math.isnan(bdrate.bd_rate_or_nan("psnr", RATES, PSNRS, RATES, PSNRS + 20))
    # Higher is better on every axis.
    assert bdrate.quality_axis("ms_ssim", [0.9])[0] == pytest.approx(10)
    assert bdrate.quality_axis("st_lpips", [0.01])[0] == pytest.approx(20)
    with pytest.raises(ValueError):
        bdrate.quality_axis("vmaf", [1])


def test_bd_rates_between_points_per_metric():
    msssim, lpips = 1 - 10 ** (-PSNRS / 20), 10 ** (-PSNRS / 25)
    anchor = [{"bpp": r, "psnr": p, "ms_ssim": m, "st_lpips": s} for r, p, m, s in zip(RATES, PSNRS, msssim, lpips)]
    cheaper = [dict(p, bpp=0.8 * p["bpp"]) for p in anchor]
    got = bdrate.bd_rates_between(anchor, cheaper)
    assert list(got) == list(bdrate.METRICS)
    assert all(v == pytest.approx(-20, abs=0.5) for v in got.values())
    # A curve that shares no quality range with the anchor gives NaN, not an exception.
    better = [dict(p, psnr=p["psnr"] + 20) for p in anchor]
    assert math.isnan(bdrate.bd_rates_between(anchor, better, ["psnr"])["psnr"])


# --- runner, cache, report, command ----------------------------------------------------------------
QUALITIES = [0.0, 1.0]
SWEEPS = {"jpeg": [10, 50], "webp": [50]}


@pytest.fixture(scope="module")
def crops_dir(tmp_path_factory, kodim23_rgb, kodak):
    folder = tmp_path_factory.mktemp("eval_images")
    Image.fromarray(kodim23_rgb[64:240, 160:336]).save(folder / "a_kodim23.png")  # 176x176: MS-SSIM defined
    with Image.open(kodak / "kodim05.png") as img:
        img.convert("RGB").crop((300, 200, 476, 376)).save(folder / "b_kodim05.png")
    return folder


@pytest.fixture(scope="module")
def sweep(crops_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_out")
    result = runner.run_sweep(crops_dir, out, models=[SHIPPED], qualities=QUALITIES, codecs=list(SWEEPS),
                              codec_qualities=SWEEPS, progress=False)
    return result


def test_runner_writes_csv_and_json(sweep):
    assert sweep.computed == 2 * (2 + 3) and sweep.cached == 0
    with open(sweep.csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10
    assert set(runner.CSV_FIELDS) <= set(rows[0])
    for row in rows:
        assert float(row["bpp"]) == pytest.approx(8 * int(row["bytes"]) / (int(row["width"]) * int(row["height"])),
                                                  rel=1e-5)
        assert float(row["enc_ms"]) > 0 and float(row["dec_ms"]) > 0
        assert 0 < float(row["ms_ssim"]) <= 1 and 0 <= float(row["st_lpips"])
        assert float(row["peak_mb"]) >= 0
    jpeg = [r for r in rows if r["codec"] == "jpeg"]
    assert all(float(r["psnr"]) > 20 for r in jpeg)
    summary = json.loads(sweep.summary_path.read_text())
    assert summary["images"] == ["a_kodim23.png", "b_kodim05.png"]
    assert set(summary["curves"]) == {SHIPPED, "jpeg", "webp"}
    learned = summary["curves"][SHIPPED]
    assert learned["kind"] == "learned" and [p["quality"] for p in learned["points"]] == QUALITIES
    assert all(p["images"] == 2 for p in learned["points"])
    assert {(r["test"], r["anchor"]) for r in summary["bd_rates"]} == {(SHIPPED, "jpeg"), (SHIPPED, "webp")}
    assert summary["models"][SHIPPED] == rows[0]["version"]
    # matched-rate table: the learned curve at 0.3 bpp lies between its two measured points
    at = {e["bpp"]: e for e in summary["matched_rates"][SHIPPED]}
    lo, hi = learned["points"][0], learned["points"][-1]
    assert lo["bpp"] < 0.3 < hi["bpp"] and lo["psnr"] < at[0.3]["psnr"] < hi["psnr"]
    assert at[0.3]["st_lpips"] < lo["st_lpips"]
    assert summary["bd_rate_range"] == [0.15, 1.0] and len(summary["bd_rates_in_range"]) == 2


def test_runner_second_run_uses_cache(sweep, crops_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a codec ran although every row is cached")

    monkeypatch.setattr(classical.Codec, "encode", refuse)
    monkeypatch.setattr("edgecodec.codec.api.Encoder.__init__", refuse)
    before = sweep.csv_path.read_text()
    again = runner.run_sweep(crops_dir, sweep.out, models=[SHIPPED], qualities=QUALITIES, codecs=list(SWEEPS),
                             codec_qualities=SWEEPS, progress=False)
    assert again.computed == 0 and again.cached == 10
    assert again.csv_path.read_text() == before


def test_runner_cache_key_follows_the_content(sweep, crops_dir, tmp_path):
    # A copy of the folder (new times) reuses the rows; editing one image redoes only its rows.
    import shutil

    folder = tmp_path / "imgs"
    shutil.copytree(crops_dir, folder, copy_function=shutil.copy)  # copy: new modification times
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(sweep.out / "cache.jsonl", out / "cache.jsonl")
    result = runner.run_sweep(folder, out, models=[], codecs=["jpeg"], codec_qualities={"jpeg": [10]},
                              st_lpips=False, progress=False)
    assert result.computed == 0 and result.cached == 2
    edited = folder / "b_kodim05.png"
    rgb = np.asarray(Image.open(edited).convert("RGB")).copy()
    rgb[0, 0] ^= 1
    Image.fromarray(rgb).save(edited)
    result = runner.run_sweep(folder, out, models=[], codecs=["jpeg"], codec_qualities={"jpeg": [10]},
                              st_lpips=False, progress=False)
    assert result.computed == 1 and result.cached == 1


def test_runner_reuses_rows_of_the_folders_csv_without_a_cache(sweep, crops_dir, tmp_path, monkeypatch):
    # A fresh clone has the committed per_image.csv but not the (git-ignored) cache.jsonl.
    out = tmp_path / "out"
    out.mkdir()
    (out / "per_image.csv").write_text(sweep.csv_path.read_text())
    monkeypatch.setattr(classical.Codec, "encode", lambda *a, **k: pytest.fail("a codec ran for a row in the CSV"))
    monkeypatch.setattr("edgecodec.codec.api.Encoder.__init__", lambda *a, **k: pytest.fail("a model ran"))
    again = runner.run_sweep(crops_dir, out, models=[SHIPPED], qualities=QUALITIES, codecs=list(SWEEPS),
                             codec_qualities=SWEEPS, progress=False)
    assert again.computed == 0 and again.cached == again.from_csv == 10
    assert again.csv_path.read_text() == sweep.csv_path.read_text()
    curves = json.loads(again.summary_path.read_text())["curves"]
    for name, curve in json.loads(sweep.summary_path.read_text())["curves"].items():  # the CSV keeps 6 digits
        for metric in summaries.METRIC_FIELDS:
            assert [p[metric] for p in curves[name]["points"]] == pytest.approx([p[metric] for p in curve["points"]],
                                                                                rel=1e-5)


def test_runner_csv_rows_follow_the_content_and_need_the_hash_column(sweep, crops_dir, tmp_path):
    import shutil

    with open(sweep.csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    folder = tmp_path / "imgs"
    shutil.copytree(crops_dir, folder)
    edited = folder / "b_kodim05.png"
    rgb = np.asarray(Image.open(edited).convert("RGB")).copy()
    rgb[0, 0] ^= 1
    Image.fromarray(rgb).save(edited)

    def run(csv_rows, fields):
        out = tmp_path / f"out{len(fields)}"
        out.mkdir()
        with open(out / "per_image.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(csv_rows)
        return runner.run_sweep(folder, out, models=[], codecs=["jpeg"], codec_qualities={"jpeg": [10]},
                                progress=False)

    result = run(rows, list(runner.CSV_FIELDS))  # the edited image's row no longer matches
    assert result.computed == 1 and result.from_csv == 1
    result = run(rows, [k for k in runner.CSV_FIELDS if k != "image_hash"])  # an old CSV: nothing to match
    assert result.computed == 2 and result.from_csv == 0


@pytest.mark.parametrize("backend", ["stlpips-alex", "stlpips-vgg"])
def test_st_lpips_split_matches_module(kodim23_rgb, backend):
    import torch

    metric = runner.STLPIPS(backend)
    assert metric.module.name == backend and metric._split  # the cached-reference path, not the fallback
    ref = np.ascontiguousarray(kodim23_rgb[:96, :128])
    noisy = np.clip(ref + np.random.RandomState(0).normal(0, 12, ref.shape), 0, 255).astype(np.uint8)
    with torch.no_grad():
        full = float(metric.module(metric._tensor(ref), metric._tensor(noisy))[0])
    assert metric(ref, noisy) == pytest.approx(full, rel=1e-5)
    assert metric(ref, ref) == pytest.approx(0, abs=1e-7)


def test_peak_rss_sees_native_allocations():
    with runner.PeakRSS() as mem:
        block = np.ones(48 * 2**20 // 8)
        block[::512] = 2.0
        del block
    assert mem.mb >= 40


def test_report_writes_html_and_pngs(sweep):
    from edgecodec.eval.report import write_report

    html_path = write_report(sweep.out, crops=1, crop_bpp=0.5, st_lpips=False)
    html = html_path.read_text()
    for name in ("rd_psnr.png", "rd_ms_ssim.png", "rd_st_lpips.png"):
        assert (sweep.out / name).stat().st_size > 5000
        assert f"<a href='{name}'><img src='{name}'" in html  # a link to the chart at its full size
    assert "max-width:32%" not in html  # the charts were drawn at a third of the page: legends unreadable
    assert "not measured" not in html  # every metric measured
    assert "<a href='crops/a_kodim23_strip.png'>" in html  # linked, so that remove_report finds it
    crops = sorted(c for c in (sweep.out / "crops").glob("a_kodim23_*.png") if not c.stem.endswith("_strip"))
    assert {c.stem for c in crops} == {"a_kodim23_original", f"a_kodim23_learned_{SHIPPED}", "a_kodim23_jpeg",
                                       "a_kodim23_webp"}
    from PIL import Image

    with Image.open(crops[0]) as one, Image.open(sweep.out / "crops" / "a_kodim23_strip.png") as strip:
        assert strip.width == 4 * one.width + 3 * 4 and strip.height > one.height  # the 4 crops, labelled
    assert all(f"src='crops/{c.name}'" in html for c in crops)
    assert "BD-rate" in html and "<table>" in html
    assert html.count(" bpp, ") == 3  # each coded crop labelled with its bpp: learned, JPEG, WebP
    table = (sweep.out / "table.md").read_text()
    assert f"| 0.3 | {SHIPPED} |" in table and "BD-rate over the anchor's 0.15 to 1 bpp" in table
    assert "Reference curves are published 24-image Kodak means (CompressAI) and this project&#x27;s classical" in html


def test_the_data_folder_of_a_checkout_and_of_an_installed_package(tmp_path, monkeypatch):
    """Installed, the default data folder was shared/data beside lib/python3.X (the checkout's
    rule applied to site-packages), which reports named as where reference curves were sought."""
    from edgecodec.eval.runner import data_root

    monkeypatch.delenv("EDGECODEC_DATA", raising=False)
    assert data_root() == REPO.parent / "shared" / "data"
    installed = tmp_path / "lib" / "python3.11" / "site-packages" / "edgecodec"
    installed.mkdir(parents=True)
    monkeypatch.chdir(installed)
    assert data_root(installed) == installed.parent / "shared" / "data"  # ../shared/data from here
    monkeypatch.setenv("EDGECODEC_DATA", str(tmp_path / "mine"))
    assert data_root(installed) == data_root() == tmp_path / "mine"


def test_a_report_without_anchors_says_so(sweep, tmp_path, monkeypatch):
    """Installed from a wheel (no ../shared/data beside it) the charts had no reference curves while
    the report said they were the published Kodak means and the classical anchors."""
    from edgecodec.eval.report import write_report

    monkeypatch.setenv("EDGECODEC_DATA", str(tmp_path / "nowhere"))
    html = write_report(sweep.out, crops=0, st_lpips=False).read_text()
    assert "Reference curves are" not in html
    assert f"No reference curves: none in {tmp_path / 'nowhere' / 'anchors'} (EDGECODEC_DATA" in html


def test_eval_command(sweep, crops_dir, capsys):
    from edgecodec.errors import UsageError
    from edgecodec.eval.command import add_eval_parser

    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", str(crops_dir), "--out", str(sweep.out), "--models", SHIPPED,
                              "--codecs", "jpeg,webp", "--qualities", "0,1", "--sweep", "jpeg=10,50",
                              "--sweep", "webp=50", "--no-report", "-q"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "0 rows measured, 10 from the cache" in out and "BD-rate" in out
    bad = parser.parse_args(["eval", str(crops_dir), "--out", str(sweep.out), "--codecs", "jpeg",
                             "--sweep", "avif=10"])
    with pytest.raises(UsageError, match="avif"):
        args.func(bad)
    fresh = crops_dir.parent / "fresh-out"  # a quality outside the codec's range: refused before --out is made
    bad = parser.parse_args(["eval", str(crops_dir), "--out", str(fresh), "--codecs", "jpeg", "--models", "none",
                             "--sweep", "jpeg=500"])
    with pytest.raises(UsageError, match="jpeg's qualities are integers from 1 to 100"):
        args.func(bad)
    assert not fresh.exists()
    for wrong in (["--sweep", "jpeg"], ["--sweep", "jpeg=nan"], ["--qualities", "0,inf"], ["--crop-bpp", "nan"],
                  ["--crop-bpp", "0"], ["--crops", "-1"]):  # refused before anything is measured
        with pytest.raises(SystemExit):
            parser.parse_args(["eval", str(crops_dir), "--out", "x", *wrong])


@pytest.mark.parametrize("method", bdrate.METHODS)
def test_bd_rate_in_a_rate_range(method):
    half = bdrate.bd_rate(RATES, PSNRS, 0.5 * RATES, PSNRS, method, rate_range=(0.2, 0.8))
    assert half == pytest.approx(-50, abs=0.5)
    # a test curve that is better only at high rates: the range decides the sign
    better_high = PSNRS + np.where(RATES > 0.5, 1.0, -1.0)
    low = bdrate.bd_rate(RATES, PSNRS, RATES, better_high, method, rate_range=(RATES[0], 0.3))
    high = bdrate.bd_rate(RATES, PSNRS, RATES, better_high, method, rate_range=(0.8, RATES[-1]))
    assert low > 0 > high
    with pytest.raises(ValueError):
        bdrate.bd_rate(RATES, PSNRS, RATES, PSNRS, method, rate_range=(0.5, 0.2))


def test_value_at_rate_interpolates_on_the_metric_axis():
    bpp = [0.1, 0.2, 0.4, 0.8]
    assert bdrate.value_at_rate("psnr", bpp, [25.0, 28.0, 31.0, 34.0], 0.4) == pytest.approx(31.0)
    # linear in log-rate between neighbours on the PSNR axis
    assert 28.0 < bdrate.value_at_rate("psnr", bpp, [25.0, 28.0, 31.0, 34.0], 0.3) < 31.0
    for rate in (0, -0.1, math.nan):  # outside the curve, as below it (0 was math.log's "math domain error")
        assert math.isnan(bdrate.value_at_rate("psnr", bpp, [25.0, 28.0, 31.0, 34.0], rate))
    lpips = [0.4, 0.2, 0.1, 0.05]
    assert bdrate.value_at_rate("st_lpips", bpp, lpips, 0.2) == pytest.approx(0.2)
    assert bdrate.value_at_rate("ms_ssim", bpp, [0.9, 0.95, 0.975, 0.99], 0.8) == pytest.approx(0.99)
    assert math.isnan(bdrate.value_at_rate("psnr", bpp, [25.0, 28.0, 31.0, 34.0], 1.5))
    assert math.isnan(bdrate.value_at_rate("psnr", bpp, [25.0, 28.0, 31.0, 34.0], 0.05))


def test_markdown_table_with_a_curve_that_reaches_only_some_metrics():
    from edgecodec.eval.report import markdown_tables

    # an untrained model: PSNR rises with the rate, SSIM falls (so it has no SSIM curve), no ST-LPIPS
    points = [{"quality": q, "images": 1, "bpp": b, "psnr": p, "ms_ssim": 0.4, "ssim": s, "st_lpips": None}
              for q, b, p, s in ((0.0, 0.1, 11.0, 0.56), (1.0, 0.4, 11.5, 0.55))]
    curves = {"junk": {"kind": "learned", "label": "junk", "points": points}}
    summary = {"images": ["a.png"], "image_dir": "/x/kodak", "curves": curves,
               "matched_rates": summaries.matched_rate_table(curves, (0.2, 1.0)), "bd_rates": []}
    table = markdown_tables(summary)
    row = next(line for line in table.splitlines() if line.startswith("| 0.2 | junk |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[2]) == pytest.approx(11.25, abs=0.2) and cells[4:] == ["-", "-"]
    assert "| 1 | junk |" not in table  # beyond the curve: no row


# --- CompressAI's results format -----------------------------------------------------------------
def _sweep_copy(sweep, tmp_path):
    import shutil

    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(sweep.out / "cache.jsonl", out / "cache.jsonl")
    return out


def test_sweep_writes_each_curve_in_compressais_format_and_reads_it_back(sweep, crops_dir, tmp_path):
    from compressai.utils.plot.__main__ import parse_json_file

    from edgecodec.eval.compressai_format import read_curves

    out = _sweep_copy(sweep, tmp_path)
    (out / "compressai").mkdir()
    (out / "compressai" / "gone.json").write_text("{}")  # a curve this sweep no longer has
    result = runner.run_sweep(crops_dir, out, models=[SHIPPED], qualities=QUALITIES, codecs=list(SWEEPS),
                              codec_qualities=SWEEPS, progress=False)
    files = sorted(p.name for p in (out / "compressai").glob("*.json"))
    assert files == sorted(f"{name}.json" for name in (SHIPPED, "jpeg", "webp"))
    measured = result.summary["curves"][SHIPPED]["points"]
    doc = json.loads((out / "compressai" / f"{SHIPPED}.json").read_text())
    assert doc["name"] == SHIPPED and "2 image(s)" in doc["description"]
    assert doc["results"]["bpp"] == pytest.approx([p["bpp"] for p in measured])
    assert doc["results"]["decoding_time"] == pytest.approx([p["dec_ms"] / 1000 for p in measured])
    # CompressAI's own plot tool reads the files (MS-SSIM as -10 log10(1 - x), as it plots it)
    plotted = parse_json_file(str(out / "compressai" / f"{SHIPPED}.json"), "ms-ssim")
    assert plotted["xs"] == pytest.approx([p["bpp"] for p in measured])
    assert plotted["ys"] == pytest.approx([-10 * math.log10(1 - p["ms_ssim"]) for p in measured])
    back = read_curves(out / "compressai" / f"{SHIPPED}.json", name="again")["again"]
    assert back["kind"] == "external" and [p["quality"] for p in back["points"]] == QUALITIES
    for field in ("bpp", "psnr", "ms_ssim", "ssim", "st_lpips", "dec_ms"):
        assert [p[field] for p in back["points"]] == pytest.approx([p[field] for p in measured]), field


def test_eval_compare_gives_the_bd_rates_of_the_measured_curve(sweep, crops_dir, tmp_path, capsys):
    from edgecodec.eval.command import add_eval_parser
    from edgecodec.eval.report import markdown_tables, write_report

    out = _sweep_copy(sweep, tmp_path)
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    base = ["eval", str(crops_dir), "--out", str(out), "--models", SHIPPED, "--codecs", "jpeg,webp", "--qualities",
            "0,1", "--sweep", "jpeg=10,50", "--sweep", "webp=50", "--no-report", "-q"]
    args = parser.parse_args(base)
    assert args.func(args) == 0
    jpeg_file = tmp_path / "jpeg-elsewhere.json"  # the JPEG curve as another tool would hand it over
    jpeg_file.write_text((out / "compressai" / "jpeg.json").read_text())
    args = parser.parse_args(base + ["--compare", f"theirs={jpeg_file}"])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert "theirs" in captured.out and "--limit" not in captured.err
    limited = parser.parse_args(base + ["--compare", f"theirs={jpeg_file}", "--limit", "1"])
    assert limited.func(limited) == 0  # fewer images than the file's curves: said so
    assert "this run measured 1 (--limit)" in capsys.readouterr().err
    assert args.func(args) == 0  # the whole folder again, for the checks below
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["curves"]["theirs"]["kind"] == "external" and "external" in summary["notes"]
    assert "theirs.json" not in {p.name for p in (out / "compressai").iterdir()}  # not ours to re-publish
    rows = {(r["test"], r["anchor"]): r for r in summary["bd_rates"]}
    for key in ("psnr_pchip", "ms_ssim_pchip", "st_lpips_pchip", "psnr_cubic"):
        assert rows[(SHIPPED, "theirs")][key] == pytest.approx(rows[(SHIPPED, "jpeg")][key], abs=1e-4), key
    table = markdown_tables(summary)
    assert "| theirs |" in table and "| 0.3 | theirs |" not in table  # its own BD table, no matched rows
    html = write_report(out, crops=0, st_lpips=False).read_text()
    assert "theirs" in html and str(jpeg_file) in html
    # at matched rates its published numbers are marked as such, after the measured curves (they sat
    # unmarked among them, in the order of the summary)
    matched = html[html.index("<h2>At matched rates"):html.index("<h2>Crops")]
    assert "<td>theirs</td>" not in matched and "<td>theirs (compared, from its file)</td>" in matched
    assert matched.index(f"<td>{SHIPPED}</td>") < matched.index("<td>JPEG</td>") < matched.index("<td>theirs (")


@pytest.mark.parametrize("content, message", [
    (None, "no such file"), ("{not json", "not a JSON file"), ("[1, 2]", "expected a JSON object"),
    ('{"results": {"psnr-rgb": [30, 32]}}', "no 'bpp' list"),
    ('{"results": {"bpp": [0.2, -0.4], "psnr-rgb": [30, 32]}}', "at least two positive"),
    ('{"results": {"bpp": [0.2, 0.4], "lpips": [0.2, 0.1]}}', "none of psnr-rgb"),
    ('{"results": {"bpp": [0.2, 0.4], "psnr-rgb": [30, 32, 34]}}', "3 psnr values for 2 bpp"),
    ('{"results": {"bpp": [0.2, 0.4], "psnr-rgb": ["30", 32]}}', "not a list of numbers"),
])
def test_eval_compare_refuses_unreadable_files(sweep, crops_dir, tmp_path, content, message):
    from edgecodec.errors import UsageError
    from edgecodec.eval.command import add_eval_parser

    path = tmp_path / "theirs.json"
    if content is not None:
        path.write_text(content)
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", str(crops_dir), "--out", str(tmp_path / "out"), "--codecs", "jpeg",
                              "--models", "none", "--compare", str(path)])
    with pytest.raises(UsageError, match=message):
        args.func(args)
    assert not (tmp_path / "out").exists()  # refused before anything is measured


def test_eval_compare_names(tmp_path, crops_dir):
    from edgecodec.errors import UsageError
    from edgecodec.eval.command import _compared_curves

    flat = tmp_path / "run.json"
    flat.write_text('{"bpp": [0.2, 0.4], "psnr": [30, 32]}')  # bare lists, as CompressAI's plot also reads
    named = tmp_path / "named.json"
    named.write_text('{"name": "mine", "results": {"bpp": [0.4, 0.2], "ms-ssim-rgb": [0.97, 0.95]}}')
    several = tmp_path / "several.json"
    several.write_text('{"curves": {"a": {"bpp": [0.2, 0.4], "psnr_rgb": [30, 32]}, '
                       '"b": {"bpp": [0.2, 0.4], "psnr_rgb": [31, 33]}}}')
    curves = _compared_curves([str(flat), str(named), str(several)], {"jpeg"})
    assert list(curves) == ["run", "mine", "a", "b"]
    assert [p["bpp"] for p in curves["mine"]["points"]] == [0.2, 0.4]  # sorted by rate
    assert [p["ms_ssim"] for p in curves["mine"]["points"]] == [0.95, 0.97]
    assert math.isnan(curves["run"]["points"][0]["ms_ssim"])
    with pytest.raises(UsageError, match="'run' is already"):
        _compared_curves([str(flat), str(flat)], set())
    with pytest.raises(UsageError, match="'jpeg' is already"):
        _compared_curves([f"jpeg={flat}"], {"jpeg"})
    assert list(_compared_curves([str(flat), f"other={flat}"], set())) == ["run", "other"]
    with pytest.raises(UsageError, match="cannot take one name"):
        _compared_curves([f"x={several}"], set())


def test_eval_refuses_the_image_folder_as_its_output(crops_dir, tmp_path):
    """`eval DIR --out DIR` measured its own figures (rd_psnr.png, ...) as images on the next run
    and wrote them over any image of the same name."""
    import shutil

    from edgecodec.errors import UsageError
    from edgecodec.eval.command import add_eval_parser

    images = tmp_path / "images"
    shutil.copytree(crops_dir, images)
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    for out in (images, images / "." / "", tmp_path / "link"):
        if out.name == "link":
            out.symlink_to(images)
        args = parser.parse_args(["eval", str(images), "--out", str(out), "--models", SHIPPED, "--codecs", "none",
                                  "--qualities", "0.5", "-q", "--no-st-lpips"])
        with pytest.raises(UsageError, match="is the image folder"):
            args.func(args)
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before


def test_eval_refuses_a_model_with_no_quality_to_measure(crops_dir, tmp_path):
    """`--qualities ""` with a model and no --sweep for it measured nothing, exited 0 and wrote
    empty tables and an empty report over OUT's earlier ones."""
    from edgecodec.errors import UsageError
    from edgecodec.eval.command import add_eval_parser

    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "out"
    args = parser.parse_args(["eval", str(crops_dir), "--out", str(out), "--models", SHIPPED, "--codecs", "none",
                              "--qualities", "", "-q", "--no-st-lpips"])
    with pytest.raises(UsageError, match=f"--qualities: no quality to measure {SHIPPED} at"):
        args.func(args)
    assert not out.exists()


# --- a researcher's audit of the evaluation (each test failed before its fix) --------------------
def _eval_args(*argv: str) -> argparse.Namespace:
    from edgecodec.eval.command import add_eval_parser

    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["eval", *argv])


def _cached_copy(sweep, tmp_path):
    """A sweep folder holding the module sweep's cache: runs over its rows measure nothing."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "cache.jsonl").write_bytes((sweep.out / "cache.jsonl").read_bytes())
    return out


def test_a_point_averages_a_metric_only_over_every_image():
    """A row without a metric (ST-LPIPS not measured, MS-SSIM of an image under 161 px) was left
    out of that metric's mean while bpp averaged every image: a point of no curve."""
    rows = [{"codec": "m", "kind": "learned", "quality": 0.5, "bpp": 0.2, "psnr": 30.0, "ms_ssim": 0.95,
             "ssim": 0.9, "st_lpips": 0.1, "enc_ms": 1.0, "dec_ms": 1.0, "peak_mb": 1.0},
            {"codec": "m", "kind": "learned", "quality": 0.5, "bpp": 0.4, "psnr": 32.0, "ms_ssim": math.nan,
             "ssim": 0.92, "st_lpips": None, "enc_ms": 1.0, "dec_ms": 1.0, "peak_mb": 1.0}]
    (point,) = summaries.summarize_rows(rows)["m"]["points"]
    assert point["images"] == 2 and point["bpp"] == pytest.approx(0.3) and point["psnr"] == pytest.approx(31)
    assert math.isnan(point["ms_ssim"]) and math.isnan(point["st_lpips"])
    from edgecodec.eval.report import _unmeasured_note  # says why (it said "not measured in this run" only)
    note = _unmeasured_note({"curves": {"m": {"kind": "learned", "points": [point]}}})
    assert "MS-SSIM and ST-LPIPS: not measured in this run (MS-SSIM needs images of at least 161 x 161" in note


def test_a_run_without_st_lpips_reports_none(sweep, crops_dir, tmp_path):
    """With --no-st-lpips the notes said "not computed" while the tables, BD-rates and charts
    carried the cache's ST-LPIPS, and a chart of the anchors alone was linked as this run's."""
    from edgecodec.eval.report import write_report

    out = _cached_copy(sweep, tmp_path)
    (out / "rd_st_lpips.png").write_bytes(b"an earlier run's chart")
    result = runner.run_sweep(crops_dir, out, models=[SHIPPED], qualities=QUALITIES, codecs=list(SWEEPS),
                              codec_qualities=SWEEPS, st_lpips=False, progress=False)
    assert result.computed == 0
    with open(result.csv_path) as f:
        assert {row["st_lpips"] for row in csv.DictReader(f)} == {""}
    summary = json.loads(result.summary_path.read_text())
    assert summary["notes"]["st_lpips"] == "not computed"
    assert all(p["st_lpips"] is None for c in summary["curves"].values() for p in c["points"])
    assert all(r["st_lpips_pchip"] is None for r in summary["bd_rates"])
    html = write_report(out, crops=0, st_lpips=False).read_text()
    assert not (out / "rd_st_lpips.png").exists() and "rd_st_lpips.png" not in html
    assert (out / "rd_psnr.png").is_file()
    # its blanks and n/a say why: not measured (they said "does not reach it" and "no overlap")
    assert "(n/a: no overlap, or not measured: ST-LPIPS)" in html and "ST-LPIPS: not measured in this run." in html
    from edgecodec.eval.report import markdown_tables

    table = markdown_tables(summary)
    assert "ST-LPIPS: not measured in this run." in table and "n/a = no common range, or not measured: ST-LPIPS" in table
    # the cache keeps what it measured: a later run with ST-LPIPS measures nothing again
    again = runner.run_sweep(crops_dir, out, models=[SHIPPED], qualities=QUALITIES, codecs=list(SWEEPS),
                             codec_qualities=SWEEPS, progress=False)
    assert again.computed == 0
    assert all(p["st_lpips"] > 0 for p in json.loads(again.summary_path.read_text())["curves"][SHIPPED]["points"])


def test_no_report_leaves_no_earlier_report(sweep, crops_dir, tmp_path):
    """--no-report rewrote the tables and left the last report.html, charts and crops, which then
    described other images and codecs than summary.json."""
    out = _cached_copy(sweep, tmp_path)
    (out / "crops").mkdir()
    for name in ("rd_psnr.png", "rd_ms_ssim.png", "crops/a_kodim23_jpeg.png", "crops/a_kodim23_strip.png"):
        (out / name).write_text("earlier run")
    # as the report links them: its crops shown, its strips linked (the strips were left behind)
    (out / "report.html").write_text("<img src='crops/a_kodim23_jpeg.png'><a href='crops/a_kodim23_strip.png'>")
    for name in ("notes.txt", "mine.png"):  # not the report's: kept
        (out / "crops" / name).write_text("the user's")
    args = _eval_args(str(crops_dir), "--out", str(out), "--models", SHIPPED, "--codecs", "jpeg",
                      "--qualities", "0,1", "--sweep", "jpeg=10,50", "--no-report", "-q")
    assert args.func(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cache.jsonl", "compressai", "crops", "per_image.csv",
                                                     "summary.json", "table.md"]
    assert sorted(p.name for p in (out / "crops").iterdir()) == ["mine.png", "notes.txt"]
    # a crops/ that links elsewhere is not followed
    (out / "crops").rename(tmp_path / "photos")
    (out / "crops").symlink_to(tmp_path / "photos")
    (out / "report.html").write_text("<img src='crops/mine.png'>")
    assert args.func(args) == 0
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["mine.png", "notes.txt"]


@pytest.mark.parametrize("blocked, flags", [("per_image.csv/", ["--no-report"]), ("summary.json/", ["--no-report"]),
                                            ("table.md/", ["--no-report"]), ("report.html/", []),
                                            ("rd_psnr.png/", []), ("crops", []), ("compressai", ["--no-report"]),
                                            ("compressai@", ["--no-report"]),
                                            (f"compressai/{SHIPPED}.json/", ["--no-report"])])
def test_an_output_that_cannot_be_written_is_refused_before_measuring(crops_dir, tmp_path, blocked, flags):
    """A folder where per_image.csv goes, or a file named crops, was an internal error after the
    sweep, with summary.json new beside an old report."""
    from edgecodec.errors import OutputWriteError

    out = tmp_path / "out"
    out.mkdir()
    name = blocked.rstrip("/@")
    if blocked.endswith("/"):
        (out / name).mkdir(parents=True)
    elif blocked.endswith("@"):  # a dangling link
        (out / name).symlink_to(tmp_path / "gone")
    else:
        (out / name).write_text("a file")
    args = _eval_args(str(crops_dir), "--out", str(out), "--models", SHIPPED, "--codecs", "none",
                      "--qualities", "0.5", "--no-st-lpips", "-q", *flags)
    with pytest.raises(OutputWriteError, match=f"cannot write .*{name}"):
        args.func(args)
    assert [p.name for p in out.iterdir()] == [name.split("/")[0]]  # nothing measured, nothing written


def test_a_quality_given_twice_is_measured_once(sweep, crops_dir, tmp_path):
    out = _cached_copy(sweep, tmp_path)
    result = runner.run_sweep(crops_dir, out, models=[SHIPPED], qualities=[0.0, 1.0, 0.0], codecs=["jpeg"],
                              codec_qualities={"jpeg": [10, 10, 50]}, progress=False)
    assert result.computed == 0 and len(result.rows) == 2 * (2 + 2)
    curves = json.loads(result.summary_path.read_text())["curves"]
    assert [p["images"] for c in curves.values() for p in c["points"]] == [2, 2, 2, 2]


@pytest.mark.parametrize("method", bdrate.METHODS)
def test_a_rate_range_ends_where_the_matched_rate_table_reads_the_anchor(method):
    """The range's ends were read off the anchor linearly, the matched-rate table by PCHIP: one
    curve, two qualities at 1 bpp."""
    test_psnr = PSNRS + np.array([-1.0, 0.5, -0.2, 0.4, 1.0])  # covers the range: its ends decide
    lo, hi = (bdrate.value_at_rate("psnr", RATES, PSNRS, r) for r in (0.15, 1.0))
    la, qa = np.log(RATES), PSNRS
    lt, qt = np.log(RATES), test_psnr
    expected = 100 * (math.exp((bdrate._integral(qt, lt, lo, hi, method) - bdrate._integral(qa, la, lo, hi, method))
                               / (hi - lo)) - 1)
    got = bdrate.bd_rate(RATES, PSNRS, RATES, test_psnr, method, rate_range=(0.15, 1.0))
    assert got == pytest.approx(expected, abs=1e-9)


def test_metrics_json_writes_an_identical_images_psnr_as_inf(crops_dir, capsys):
    """null meant "not measured" elsewhere; summary.json writes an infinite PSNR as "inf"."""
    from edgecodec.cli import main

    image = str(crops_dir / "a_kodim23.png")
    assert main(["metrics", image, image, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["psnr"] == "inf" and row["ms_ssim"] == pytest.approx(1)


def test_rows_are_measured_again_when_the_measuring_code_changes(sweep, crops_dir, tmp_path, monkeypatch):
    """Rows were keyed by weights and codec settings only: a change to the codec's code (its
    quantiser, the quality mapping) reused numbers the code no longer gives."""
    import shutil

    package = tmp_path / "edgecodec"
    shutil.copytree(runner.Path(runner.__file__).resolve().parents[1], package,
                    ignore=shutil.ignore_patterns("__pycache__", "weights", "*.onnx"))
    digest = runner.code_digest(package)
    assert digest == runner.measuring_code()
    for module in ("report.py", "summary.py", "bdrate.py"):  # presenting rows is not measuring them
        (package / "eval" / module).write_text((package / "eval" / module).read_text() + "\n# a new chart\n")
    assert runner.code_digest(package) == digest
    api = package / "codec" / "api.py"
    api.write_text(api.read_text().replace("round(check_quality(quality) * QUALITY_SCALE)",
                                           "round(check_quality(quality) ** 2 * QUALITY_SCALE)"))
    assert runner.code_digest(package) != digest

    out = _cached_copy(sweep, tmp_path)
    (out / "per_image.csv").write_text(sweep.csv_path.read_text())
    monkeypatch.setattr(runner, "measuring_code", lambda: "another code")
    again = runner.run_sweep(crops_dir, out, models=[], codecs=["jpeg"], codec_qualities={"jpeg": [10]},
                             st_lpips=False, progress=False)
    assert again.computed == 2 and again.from_csv == 0
    assert json.loads(again.summary_path.read_text())["code"] == "another code"
    with open(again.csv_path) as f:
        assert {row["code"] for row in csv.DictReader(f)} == {"another code"}


def test_bdrate_command_reads_results_files(tmp_path, capsys):
    """`edgecodec bdrate ANCHOR TEST...`: BD-rates of curves already measured (eval's compressai/*.json,
    CompressAI's eval_model output), as eval's summary computes them; a test spending 0.8 times the
    anchor's bits at every quality is -20%."""
    from edgecodec.cli import main

    anchor, test = tmp_path / "anchor.json", tmp_path / "test.json"
    bpp, psnr = [0.1, 0.2, 0.4, 0.8, 1.6], [27.0, 29.5, 32.0, 34.0, 36.5]
    anchor.write_text(json.dumps({"name": "old", "results": {"bpp": bpp, "psnr-rgb": psnr,
                                                             "ms-ssim-rgb": [0.9, 0.94, 0.96, 0.98, 0.99]}}))
    test.write_text(json.dumps({"name": "new", "results": {"bpp": [0.8 * b for b in bpp], "psnr-rgb": psnr}}))
    assert main(["bdrate", str(anchor), str(test), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["test"], row["anchor"]) == ("new", "old")
    assert row["psnr_pchip"] == pytest.approx(-20, abs=1e-6) and row["psnr_cubic"] == pytest.approx(-20, abs=0.5)
    assert row["ms_ssim_pchip"] is None and row["st_lpips_cubic"] is None  # not in both files: n/a
    assert main(["bdrate", str(anchor), str(test), "--range", "0.2,0.8"]) == 0
    out = capsys.readouterr().out
    assert "0.2-0.8 bpp" in out and "new" in out and "-20.00%" in out and "n/a" in out
    assert main(["bdrate", str(anchor), f"again={anchor}"]) == 0
    assert "+0.00%" in capsys.readouterr().out
    for args, message in [([str(anchor), str(anchor)], "'old' is already given"),
                          ([str(anchor), str(tmp_path / "missing.json")], "no such file")]:
        assert main(["bdrate", *args]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["bdrate", str(anchor), str(test), "--range", "0.8,0.2"])
    assert usage.value.code == 2 and "0 < LO < HI" in capsys.readouterr().err


def test_eval_measures_a_grayscale_image_as_its_file_decodes(tmp_path, kodim23_rgb, capsys):
    """A grayscale source's .edc decodes to gray (decompress, metrics); eval scored decode_array's three
    channels, which differ by the coding error (28.88 dB where metrics said 28.95). And `--threads N
    eval` timed on N threads under notes saying one thread: refused."""
    import edgecodec
    from edgecodec.cli import main
    from edgecodec.metrics import psnr as measured_psnr

    folder = tmp_path / "gray"
    folder.mkdir()
    gray = Image.fromarray(kodim23_rgb[64:240, 160:336]).convert("L")
    gray.save(folder / "g.png")
    result = runner.run_sweep(folder, tmp_path / "out", models=[SHIPPED], qualities=[0.2], codecs=[], progress=False)
    with open(result.csv_path) as f:
        (row,) = list(csv.DictReader(f))
    data = edgecodec.compress(folder / "g.png", quality=0.2, model=SHIPPED)
    assert int(row["bytes"]) == len(data)
    decoded = edgecodec.decompress(data)
    assert decoded.mode == "L"
    expected = measured_psnr(np.array(gray.convert("RGB")), np.array(decoded.convert("RGB")))
    assert float(row["psnr"]) == pytest.approx(expected, abs=1e-4)
    assert main(["--threads", "2", "eval", str(folder), "--out", str(tmp_path / "o2"), "--codecs", "none"]) == 2
    assert "one thread" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    gray.save(folder / "g.jpg")  # no lossless source: not measured, and said so (it was skipped in silence)
    assert main(["eval", str(folder), "--out", str(tmp_path / "out"), "--models", SHIPPED, "--qualities", "0.2",
                 "--codecs", "none", "--no-report", "-q"]) == 0
    assert "left alone: 1 file(s) that are not lossless images by their names (.jpg 1;" in capsys.readouterr().out


def test_jpeg_codes_a_gray_image_with_one_component(kodim23_rgb):
    """A grayscale source was JPEG-coded as three components (17% more bytes at the same PSNR than a
    gray JPEG), which handicapped JPEG against the learned codec on gray folders."""
    jpeg = classical.get_codec("jpeg")
    gray = np.repeat(np.array(Image.fromarray(kodim23_rgb[:128, :128]).convert("L"))[..., None], 3, axis=2)
    data = jpeg.encode(gray, 50)
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "L"
    rgb_coded = io.BytesIO()
    Image.fromarray(gray).save(rgb_coded, format="JPEG", quality=50, **classical.JPEG_SETTINGS)
    assert len(data) < len(rgb_coded.getvalue())
    decoded = jpeg.decode(data)
    assert decoded.shape == gray.shape and psnr(gray, decoded) > 30
    with Image.open(io.BytesIO(jpeg.encode(kodim23_rgb[:64, :64], 50))) as img:
        assert img.mode == "RGB"  # colour stays colour


def test_an_interrupted_report_leaves_the_earlier_one(crops_dir, tmp_path, monkeypatch):
    """Ctrl-C while the report was drawn left charts and crops without a report.html (the earlier
    one removed first), and no later run removed the crops: remove_report finds them through it."""
    from edgecodec.eval import report

    out = tmp_path / "out"
    runner.run_sweep(crops_dir, out, models=[], codecs=["jpeg"], codec_qualities={"jpeg": [10, 50]},
                     st_lpips=False, progress=False)

    def files() -> dict[str, bytes]:
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def interrupted_report() -> None:
        def ctrl_c(*args):
            raise KeyboardInterrupt

        with monkeypatch.context() as m:
            m.setattr(report, "_write_strip", ctrl_c)  # once the crops are written, before report.html
            with pytest.raises(KeyboardInterrupt):
                report.write_report(out, crops=1, st_lpips=False)

    sweep_only = files()
    interrupted_report()
    assert files() == sweep_only  # nothing of the interrupted report
    report.write_report(out, crops=1, st_lpips=False)
    complete = files()
    assert {"report.html", "rd_psnr.png", "crops/a_kodim23_jpeg.png", "crops/a_kodim23_strip.png"} <= set(complete)
    interrupted_report()
    assert files() == complete  # the earlier report, whole
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # nor the folder it was drawn in


def test_a_bad_image_leaves_no_empty_output_folder(crops_dir, tmp_path):
    """A corrupt PNG stops the sweep with its error. It left the OUT it made empty when it came first;
    after other images, OUT keeps their rows for the next run; a folder that was there stays."""
    import shutil

    from edgecodec.errors import InputImageError

    images = tmp_path / "images"
    shutil.copytree(crops_dir, images)
    bad = images / "0_bad.png"  # sorted first: nothing measured before it
    bad.write_bytes(b"not a PNG, garbage bytes")
    out = tmp_path / "out"
    args = _eval_args(str(images), "--out", str(out), "--models", "none", "--codecs", "jpeg", "--sweep", "jpeg=50",
                      "--no-st-lpips", "-q")
    with pytest.raises(InputImageError, match="0_bad.png"):
        args.func(args)
    assert not out.exists()
    out.mkdir()
    with pytest.raises(InputImageError, match="0_bad.png"):
        args.func(args)
    assert out.is_dir() and list(out.iterdir()) == []
    out.rmdir()
    bad.rename(images / "z_bad.png")  # sorted last: the rows before it are kept
    with pytest.raises(InputImageError, match="z_bad.png"):
        args.func(args)
    assert len((out / "cache.jsonl").read_text().splitlines()) == 2
