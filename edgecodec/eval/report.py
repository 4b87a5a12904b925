"""Rate-distortion plots and an HTML report from a sweep's ``summary.json`` (see :mod:`.runner`).

Writes into the sweep's folder:

``rd_psnr.png``, ``rd_ms_ssim.png``, ``rd_st_lpips.png``
    bpp against PSNR, MS-SSIM (as -10 log10(1 - MS-SSIM) dB) and ST-LPIPS (log scale, lower is
    better) for every measured curve, with CompressAI's published bmshj2018-factorized and
    bmshj2018-hyperprior Kodak points (``anchors/compressai_kodak.json``) and the classical anchors
    (``anchors/classical_kodak.csv``, faint) as references. The anchors are 24-image Kodak means:
    they compare directly only with a full Kodak sweep.
``crops/*.png``
    for a few images, the same crop of the original and of each learned model and classical codec
    re-encoded at a matched rate (learned: its rate search; classical: the integer quality whose
    file is closest to the target), each labelled with the whole image's bpp and metrics.
``report.html``
    the plots, the BD-rate table and the crops, referring to the PNGs by relative path.
``table.md``
    the matched-rate table and the BD-rates as Markdown (what the README's Kodak section shows).

The anchor folder is ``$EDGECODEC_DATA/anchors``, else ``runner.data_root()``'s (``<repo>/../shared/data/anchors`` in a checkout).
"""

from __future__ import annotations

import contextlib
import csv
import html
import json
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, atomic_write_text
from .runner import data_root

COMPRESSAI_CURVES = ("bmshj2018-factorized", "bmshj2018-hyperprior")
CROP_SIZE = 256
DEFAULT_CROP_BPP = 0.25
PLOT_MAX_BPP = 2.0
METRIC_TITLES = {"psnr": "PSNR (dB, 8-bit RGB)", "ms_ssim": "MS-SSIM (dB: -10 log10(1 - MS-SSIM))",
                 "st_lpips": "ST-LPIPS (AlexNet, shift-tolerant; lower is better)"}
CLASSICAL_COLORS = {"jpeg": "#d62728", "webp": "#2ca02c", "avif": "#9467bd", "jxl": "#8c564b"}
LEARNED_COLORS = ("#1f77b4", "#ff7f0e", "#17becf", "#e377c2", "#bcbd22", "#7f7f7f")
EXTERNAL_COLORS = ("#393b79", "#5254a3", "#637939", "#8c6d31", "#843c39", "#7b4173", "#a55194", "#6b6ecf")


# What write_report writes in a sweep folder (besides table.md): checked before a sweep and removed
# before each report, so no report describes other rows than the folder's summary.json.
REPORT_FILES = ("report.html", *(f"rd_{metric}.png" for metric in METRIC_TITLES))
CROPS_FOLDER = "crops"


def remove_report(out: str | Path) -> None:
    """Remove the report an earlier run wrote in ``out``: report.html, the charts, and the crop PNGs
    that report.html shows or links (its strips; nothing else in crops/, and nothing through a crops/
    that is a link)."""
    out = Path(out)
    crops = out / CROPS_FOLDER
    shown: list[Path] = []
    if (out / "report.html").is_file() and crops.is_dir() and not crops.is_symlink():
        names = {html.unescape(name) for name in re.findall(r"(?:src|href)='crops/([^'/]+\.png)'",
                                                             (out / "report.html").read_text(errors="replace"))}
        shown = [crops / name for name in sorted(names)]
    for path in [out / name for name in REPORT_FILES] + shown:
        if path.is_file() or path.is_symlink():
            path.unlink()
    if shown:
        with contextlib.suppress(OSError):  # kept when it holds anything else
            crops.rmdir()


def _metric_axis(metric: str, values: list[float]) -> list[float]:
    if metric == "ms_ssim":
        return [-10 * math.log10(max(1 - v, 1e-12)) if v is not None else math.nan for v in values]
    return [v if v is not None else math.nan for v in values]


def anchors_sentence(anchors: dict[str, dict[str, Any]]) -> str:
    """What the charts' reference curves are, or where none were found."""
    kinds = {a["kind"] for a in anchors.values()}
    named = [what for kind, what in (("compressai", "published 24-image Kodak means (CompressAI)"),
                                     ("classical-anchor", "this project's classical anchors (faint)")) if kind in kinds]
    if not named:
        return (f"No reference curves: none in {data_root() / 'anchors'} (EDGECODEC_DATA names the folder holding "
                "anchors/compressai_kodak.json and anchors/classical_kodak.csv).")
    return f"Reference curves are {' and '.join(named)}: they compare directly only with a full Kodak run."


def load_anchors(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Reference curves: {name: {"label", "style", "bpp", "psnr", "ms_ssim"[, "st_lpips"]}}; missing files
    skipped, a file that is not as the data folder's README describes refused (UsageError naming it)."""
    from ..errors import UsageError

    folder = (root or data_root()) / "anchors"
    anchors: dict[str, dict[str, Any]] = {}
    path = folder / "compressai_kodak.json"
    try:  # a damaged file was an internal error (KeyError) after the whole sweep, its report not drawn
        if path.is_file():
            curves = json.loads(path.read_text()).get("curves", {})
            for name in COMPRESSAI_CURVES:
                if name in curves:
                    c = curves[name]
                    anchors[name] = {"label": f"{name} (CompressAI, published)", "kind": "compressai",
                                     "bpp": [float(v) for v in c["bpp"]], "psnr": c.get("psnr_rgb"),
                                     "ms_ssim": c.get("ms_ssim_rgb")}
        path = folder / "classical_kodak.csv"
        if path.is_file():
            with open(path) as f:
                for row in csv.DictReader(f):
                    a = anchors.setdefault(f"anchor-{row['codec']}", {
                        "label": f"{row['codec']} (anchor)", "kind": "classical-anchor", "codec": row["codec"],
                        "bpp": [], "psnr": [], "ms_ssim": [], "st_lpips": []})
                    for key in ("bpp", "psnr", "ms_ssim", "st_lpips"):
                        a[key].append(float(row[key]))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"reference curves: {path} is not readable as an anchors file ({type(exc).__name__}: "
                         f"{exc}); fix it, or set EDGECODEC_DATA to another data folder") from None
    return anchors


def _style(name: str, curves: dict[str, dict[str, Any]], learned_index: dict[str, int]) -> dict[str, Any]:
    curve = curves[name]
    if curve["kind"] == "learned":
        color = LEARNED_COLORS[learned_index.setdefault(name, len(learned_index)) % len(LEARNED_COLORS)]
        return {"color": color, "marker": "o", "linestyle": "-", "linewidth": 2.0, "markersize": 4}
    if curve["kind"] == "external":  # thin and muted: context for the measured curves, not the subject
        external = [n for n, c in curves.items() if c["kind"] == "external"]
        color = EXTERNAL_COLORS[external.index(name) % len(EXTERNAL_COLORS)]
        return {"color": color, "marker": "^", "linestyle": ":", "linewidth": 1.1, "markersize": 3, "alpha": 0.75}
    return {"color": CLASSICAL_COLORS.get(name, "#333333"), "marker": "s", "linestyle": "--", "linewidth": 1.4,
            "markersize": 3}


def rate_axis_label(summary: dict[str, Any], anchors: dict[str, dict[str, Any]], metric: str) -> str:
    """The x label of ``metric``'s chart. Only the measured curves' bpp count whole files:
    CompressAI's published points (and most --compare files) count bare bitstreams, so "headers
    included" under them all credited those curves with a container they do not pay for."""
    others = (any(c["kind"] == "external" and any(not _nan(p.get(metric)) for p in c["points"])
                  for c in summary["curves"].values())
              or any(a["kind"] == "compressai" and a.get(metric) is not None and name not in summary["curves"]
                     for name, a in anchors.items()))
    if not others:
        return "bits per pixel (file bytes, headers included)"
    return "bits per pixel (measured: file bytes, headers included; published / compared: their files' figures)"


def plot_rd(summary: dict[str, Any], out_dir: Path, anchors: dict[str, dict[str, Any]] | None = None,
            max_bpp: float = PLOT_MAX_BPP) -> dict[str, Path]:
    """One PNG per metric; returns {metric: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    anchors = load_anchors() if anchors is None else anchors
    paths = {}
    n_images = len(summary.get("images", []))
    crowded = any(c["kind"] == "external" for c in summary["curves"].values())
    for metric, title in METRIC_TITLES.items():
        if not any(p.get(metric) is not None for c in summary["curves"].values() if c["kind"] != "external"
                   for p in c["points"]):
            continue  # nothing of this run's on the chart (e.g. --no-st-lpips): the anchors alone mislead
        fig, ax = plt.subplots(figsize=(10.5 if crowded else 7.5, 5.5), dpi=110)
        learned_index: dict[str, int] = {}
        ys_in_range: list[float] = []  # y limits: every curve's points up to max_bpp
        for name, a in anchors.items():
            if a.get(metric) is None or name in summary["curves"]:  # a --compare file may hold the same curve
                continue
            y = _metric_axis(metric, a[metric])
            ys_in_range += [v for xv, v in zip(a["bpp"], y) if xv <= max_bpp and math.isfinite(v)]
            if a["kind"] == "compressai":
                ax.plot(a["bpp"], y, color="#555555", linestyle=":", marker="x", markersize=4, linewidth=1.2,
                        label=a["label"])
            else:
                ax.plot(a["bpp"], y, color=CLASSICAL_COLORS.get(a["codec"], "#999999"), linestyle="-",
                        linewidth=3, alpha=0.18, label=a["label"])
        for name, curve in summary["curves"].items():
            pts = [p for p in curve["points"] if p.get("bpp") is not None and p.get(metric) is not None]
            if not pts:
                continue
            x = [p["bpp"] for p in pts]
            y = _metric_axis(metric, [p[metric] for p in pts])
            ys_in_range += [v for xv, v in zip(x, y) if xv <= max_bpp and math.isfinite(v)]
            label = curve.get("label", name) + {"learned": " (this model)", "external": " (compared)"}.get(
                curve["kind"], "")
            ax.plot(x, y, label=label, **_style(name, summary["curves"], learned_index))
        ax.set_xlim(0, max_bpp)
        if ys_in_range:
            lo, hi = min(ys_in_range), max(ys_in_range)
            if metric == "st_lpips":
                ax.set_yscale("log")
                ax.set_ylim(lo / 1.3, hi * 1.3)
            else:
                pad = 0.05 * (hi - lo or 1)
                ax.set_ylim(lo - pad, hi + pad)
        elif metric == "st_lpips":
            ax.set_yscale("log")
        ax.set_xlabel(rate_axis_label(summary, anchors, metric))
        ax.set_ylabel(title)
        ax.set_title(f"{title.split(' (')[0]} vs rate, {n_images} image(s)")
        ax.grid(True, which="both", alpha=0.3)
        if crowded:  # beside the axes, where it hides no curve
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        else:
            ax.legend(fontsize=7, loc="lower right" if metric != "st_lpips" else "upper right")
        fig.tight_layout()
        path = out_dir / f"rd_{metric}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        paths[metric] = path
    return paths


# --- crops ---------------------------------------------------------------------------------------
def detail_window(rgb: np.ndarray, size: int = CROP_SIZE) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the size x size window with the most gradient energy."""
    h, w = rgb.shape[:2]
    ch, cw = min(size, h), min(size, w)
    g = rgb.astype(np.float32).mean(2)
    energy = np.zeros_like(g)
    energy[:, 1:] += np.abs(np.diff(g, axis=1))
    energy[1:, :] += np.abs(np.diff(g, axis=0))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best, best_pos = -1.0, (0, 0)
    step = max(8, size // 8)
    for top in list(range(0, h - ch + 1, step)) + [h - ch]:
        for left in list(range(0, w - cw + 1, step)) + [w - cw]:
            s = (integral[top + ch, left + cw] - integral[top, left + cw] - integral[top + ch, left]
                 + integral[top, left])
            if s > best:
                best, best_pos = s, (top, left)
    return best_pos[0], best_pos[1], ch, cw


def make_crops(summary: dict[str, Any], out_dir: Path, n_images: int = 3, target_bpp: float = DEFAULT_CROP_BPP,
               st_lpips: bool = True) -> list[dict[str, Any]]:
    """Matched-rate crops for the first ``n_images`` images; returns what the HTML shows."""
    from PIL import Image

    from ..codec.api import Encoder, decode_array
    from ..codec.imageio import load_image
    from .classical import CODECS, encode_to_bpp
    from ..metrics import ms_ssim, psnr
    from .runner import _st_lpips, as_decoded, parse_model_label

    image_dir = Path(summary["image_dir"])
    # Refined labels (NAME+refineN) match the rate with refinement too: the unrefined sizes guide the
    # search (codec/rate_search.py), 2 refinements for kodim23 at 0.14 and 0.33 bpp with 50 steps.
    learned = [n for n, c in summary["curves"].items() if c["kind"] == "learned"]
    classical = [n for n in CODECS if summary["curves"].get(n, {}).get("kind") == "classical"]
    crop_dir = out_dir / CROPS_FOLDER
    crop_dir.mkdir(exist_ok=True)
    lpips = _st_lpips() if st_lpips else None
    sections = []
    for name in summary.get("images", [])[:n_images]:
        path = image_dir / name
        if not path.is_file():
            continue
        prepared = load_image(path, alpha="drop")
        rgb = prepared.rgb
        h, w = rgb.shape[:2]
        top, left, ch, cw = detail_window(rgb)
        stem = Path(name).stem
        entries = []

        def add(label: str, key: str, decoded: np.ndarray, nbytes: int | None, note: str = "") -> None:
            file = crop_dir / f"{stem}_{key}.png"
            with atomic_path(file) as tmp:
                Image.fromarray(decoded[top:top + ch, left:left + cw]).save(tmp, format="PNG")
            info = {"label": label, "file": file.relative_to(out_dir).as_posix(), "note": note}
            if nbytes is not None:
                info.update(bpp=8 * nbytes / (w * h), psnr=psnr(rgb, decoded), ms_ssim=ms_ssim(rgb, decoded),
                            st_lpips=lpips(rgb, decoded) if lpips else math.nan)
            entries.append(info)

        add("original", "original", rgb, None, f"{w}x{h}, crop at ({left}, {top})")
        for model in learned:
            model_name, refine_steps = parse_model_label(model)
            encoder = Encoder(prepared, model_name, refine_steps=refine_steps)
            result = encoder.encode_to_size(max(1, int(target_bpp * w * h / 8)))
            decoded, header = decode_array(result.data)
            add(model, f"learned_{model}", as_decoded(decoded, header), len(result.data),
                f"quality {header.quality:.3f}")
        for codec_name in classical:
            codec = CODECS[codec_name]
            quality, data = encode_to_bpp(codec, rgb, target_bpp)
            add(codec.label, codec_name, codec.decode(data), len(data), f"quality {quality}")
        strip = crop_dir / f"{stem}_strip.png"
        _write_strip(out_dir, entries, strip)
        sections.append({"image": name, "entries": entries, "strip": strip.relative_to(out_dir).as_posix()})
    return sections


def _write_strip(out_dir: Path, entries: list[dict[str, Any]], path: Path) -> None:
    """The crops side by side in one PNG, each labelled with its codec and bpp (for READMEs)."""
    from PIL import Image, ImageDraw

    crops = [Image.open(out_dir / e["file"]).convert("RGB") for e in entries]
    gap, label_h = 4, 18
    w, h = crops[0].size
    strip = Image.new("RGB", (len(crops) * (w + gap) - gap, h + label_h), "white")
    draw = ImageDraw.Draw(strip)
    for i, (crop, e) in enumerate(zip(crops, entries)):
        x = i * (w + gap)
        strip.paste(crop, (x, label_h))
        text = e["label"] if "bpp" not in e else f"{e['label']} {e['bpp']:.3f} bpp"
        draw.text((x + 2, 3), text, fill="black")
    with atomic_path(path) as tmp:
        strip.save(tmp, format="PNG")


# --- HTML ----------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 2, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:+.{digits}f}{suffix}" if suffix == "%" else f"{value:.{digits}f}{suffix}"


def _bd_table(summary: dict[str, Any], key: str = "bd_rates") -> str:
    rows = summary.get(key) or []
    if not rows:
        return ("<p>No BD-rates: the sweep needs at least one learned model and one classical codec or "
                "compared curve.</p>")
    # every column is a BD-rate (negative: fewer bits); ST-LPIPS's was headed "bits saved", which
    # read its -31% (31% of the bits saved) as 31% more bits
    head = ("<tr><th>learned model</th><th>vs</th><th>PSNR BD-rate<br>PCHIP / cubic</th>"
            "<th>MS-SSIM BD-rate<br>PCHIP / cubic</th><th>ST-LPIPS BD-rate<br>PCHIP / cubic</th></tr>")
    body = []
    labels = {n: c.get("label", n) for n, c in summary["curves"].items()}
    for r in rows:
        cells = []
        for metric in ("psnr", "ms_ssim", "st_lpips"):
            p, c = r.get(f"{metric}_pchip"), r.get(f"{metric}_cubic")
            cls = "" if p is None else (' class="good"' if p < 0 else ' class="bad"')
            cells.append(f"<td{cls}>{_fmt(p, 1, '%')} / {_fmt(c, 1, '%')}</td>")
        body.append(f"<tr><td>{html.escape(r['test'])}</td><td>{html.escape(labels.get(r['anchor'], r['anchor']))}</td>"
                    + "".join(cells) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _points_table(summary: dict[str, Any]) -> str:
    out = []
    for name, curve in summary["curves"].items():
        out.append(f"<h3>{html.escape(curve.get('label', name))} ({curve['kind']})</h3><table><tr><th>quality</th>"
                   "<th>images</th><th>bpp</th><th>PSNR</th><th>MS-SSIM</th><th>SSIM</th><th>ST-LPIPS</th>"
                   "<th>enc ms</th><th>dec ms</th><th>peak MiB</th></tr>")
        for p in curve["points"]:
            out.append(f"<tr><td>{p['quality']}</td><td>{p.get('images') or '-'}</td><td>{_fmt(p['bpp'], 4)}</td>"
                       f"<td>{_fmt(p['psnr'], 2)}</td><td>{_fmt(p['ms_ssim'], 4)}</td><td>{_fmt(p['ssim'], 4)}</td>"
                       f"<td>{_fmt(p.get('st_lpips'), 4)}</td><td>{_fmt(p['enc_ms'], 1)}</td>"
                       f"<td>{_fmt(p['dec_ms'], 1)}</td><td>{_fmt(p.get('peak_mb'), 1)}</td></tr>")
        out.append("</table>")
    return "".join(out)


def _crops_html(sections: list[dict[str, Any]], target_bpp: float) -> str:
    if not sections:
        return "<p>No crops (no images found, or crops turned off).</p>"
    # the learned files come from the rate search (compress --target-bpp: at most the target where it
    # can), the classical ones from encode_to_bpp (the closest, above or below): not "closest" for all
    out = [f"<p>Target {target_bpp:g} bpp; each learned model's file is the rate search's (compress --target-bpp: "
           "within 3% below the target where it can), each classical codec's the closest to it of its integer "
           "qualities. Labels give the "
           f"whole image's bpp and metrics; crops are up to {CROP_SIZE}x{CROP_SIZE} pixels at 1:1 (the whole "
           "image when smaller), from the most detailed window.</p>"]
    for s in sections:
        out.append(f"<h3>{html.escape(s['image'])}</h3><div class='crops'>")
        for e in s["entries"]:
            if "bpp" in e:
                caption = (f"<b>{html.escape(e['label'])}</b><br>{e['bpp']:.3f} bpp, {_fmt(e['psnr'])} dB<br>"
                           f"MS-SSIM {_fmt(e['ms_ssim'], 4)}, ST-LPIPS {_fmt(e['st_lpips'], 3)}<br>"
                           f"<small>{html.escape(e['note'])}</small>")
            else:
                caption = f"<b>{html.escape(e['label'])}</b><br><small>{html.escape(e['note'])}</small>"
            out.append(f"<figure><img src='{html.escape(e['file'])}' alt='{html.escape(e['label'])}'>"
                       f"<figcaption>{caption}</figcaption></figure>")
        out.append("</div>")
        if s.get("strip"):  # linked, so that remove_report finds it with the crops it shows
            out.append(f"<p><a href='{html.escape(s['strip'])}'>the crops in one image</a></p>")
    return "".join(out)


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


# The metrics of the matched-rate and BD-rate tables, as the reports name them.
METRIC_NAMES = {"psnr": "PSNR", "ms_ssim": "MS-SSIM", "ssim": "SSIM", "st_lpips": "ST-LPIPS"}


def unmeasured_metrics(summary: dict[str, Any]) -> list[str]:
    """The metrics no measured curve has a value of (``--no-st-lpips``; MS-SSIM of images under 161
    pixels): their blanks and n/a mean "not measured", not "out of range"."""
    measured = [c for c in summary["curves"].values() if c["kind"] != "external"]
    return [name for metric, name in METRIC_NAMES.items()
            if not any(not _nan(p.get(metric)) for c in measured for p in c.get("points", []))]


def _unmeasured_note(summary: dict[str, Any]) -> str:
    missing = unmeasured_metrics(summary)
    if not missing:
        return ""
    small = " (MS-SSIM needs images of at least 161 x 161 pixels)" if "MS-SSIM" in missing else ""
    return f" {' and '.join(missing)}: not measured in this run{small}."


def markdown_tables(summary: dict[str, Any]) -> str:
    """The matched-rate table and the BD-rate tables of a summary, as Markdown."""
    curves, labels = summary["curves"], {n: c.get("label", n) for n, c in summary["curves"].items()}
    matched = summary.get("matched_rates", {})
    # compared curves get their own BD-rate table below, not rows in these (their numbers are not measured here)
    order = [n for kind in ("learned", "classical") for n in curves if curves[n]["kind"] == kind]
    lines = [f"Mean over {len(summary.get('images', []))} image(s) of `{Path(summary.get('image_dir', '')).name}`, "
             "each curve interpolated (PCHIP on log bpp) at the rate; - where the curve does not reach it."
             + _unmeasured_note(summary), "",
             "| bpp | codec | PSNR (dB) | MS-SSIM | SSIM | ST-LPIPS |", "|---|---|---|---|---|---|"]
    rates = sorted({e["bpp"] for rows in matched.values() for e in rows})
    for rate in rates:
        for name in order:
            e = next((e for e in matched.get(name, []) if e["bpp"] == rate), None)
            if e is None or all(_nan(e.get(m)) for m in ("psnr", "ms_ssim", "ssim", "st_lpips")):
                continue
            cells = ["-" if _nan(e.get(m)) else f"{e[m]:.{d}f}"
                     for m, d in (("psnr", 2), ("ms_ssim", 4), ("ssim", 4), ("st_lpips", 4))]
            lines.append(f"| {rate:g} | {labels[name]} | " + " | ".join(cells) + " |")
    for key, title in (("bd_rates_in_range", "BD-rate over the anchor's {lo:g} to {hi:g} bpp"),
                       ("bd_rates", "BD-rate over the whole shared range")):
        rows = [r for r in summary.get(key) or [] if curves.get(r["anchor"], {}).get("kind") != "external"]
        if not rows:
            continue
        lo, hi = (summary.get("bd_rate_range") or [0, 0])[:2]
        lines += ["", f"{title.format(lo=lo, hi=hi)} (%, PCHIP; negative = fewer bits than the codec at equal "
                  f"quality; n/a = no common range{_na_unmeasured(summary)}):", "",
                  "| model | vs | PSNR | MS-SSIM | ST-LPIPS |", "|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['test']} | {labels.get(r['anchor'], r['anchor'])} | "
                         + " | ".join(_fmt(r.get(f"{m}_pchip"), 1, "%") for m in ("psnr", "ms_ssim", "st_lpips"))
                         + " |")
    lines += _compared_markdown(summary)
    return "\n".join(lines) + "\n"


def _compared_markdown(summary: dict[str, Any]) -> list[str]:
    """BD-rates against the ``--compare`` curves: a row per compared curve, a column per learned model."""
    curves = summary["curves"]
    compared = [n for n, c in curves.items() if c["kind"] == "external"]
    rows = {(r["test"], r["anchor"]): r for r in summary.get("bd_rates_in_range") or []}
    models = [n for n, c in curves.items() if c["kind"] == "learned"]
    if not compared or not models:
        return []
    lo, hi = (summary.get("bd_rate_range") or [0, 0])[:2]
    lines = ["", f"BD-rate against the compared curves (`--compare`; their own numbers, not measured here), over each "
             f"curve's {lo:g} to {hi:g} bpp (%, PCHIP; PSNR / MS-SSIM; negative = fewer bits):", "",
             "| vs | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for anchor in compared:
        cells = []
        for model in models:
            r = rows.get((model, anchor), {})
            cells.append(" / ".join(_fmt(r.get(f"{m}_pchip"), 1, "%") for m in ("psnr", "ms_ssim")))
        lines.append(f"| {curves[anchor].get('label', anchor)} | " + " | ".join(cells) + " |")
    return lines


def _na_unmeasured(summary: dict[str, Any]) -> str:
    missing = unmeasured_metrics(summary)
    return f", or not measured: {' and '.join(missing)}" if missing else ""


def write_markdown(out: str | Path) -> Path:
    """``table.md`` of the sweep folder ``out`` from its summary.json."""
    out = Path(out)
    path = out / "table.md"
    atomic_write_text(path, markdown_tables(json.loads((out / "summary.json").read_text())))
    return path


def _matched_html(summary: dict[str, Any]) -> str:
    matched = summary.get("matched_rates") or {}
    if not matched:
        return ""
    curves = summary["curves"]
    # Measured curves first, as table.md; the --compare curves' rows are their files' numbers, marked so.
    labels = {n: c.get("label", n) + (" (compared, from its file)" if c["kind"] == "external" else "")
              for n, c in curves.items()}
    order = [n for kind in ("learned", "classical", "external") for n in matched if curves.get(n, {}).get("kind") == kind]
    out = ["<table><tr><th>bpp</th><th>codec</th><th>PSNR</th><th>MS-SSIM</th><th>SSIM</th><th>ST-LPIPS</th></tr>"]
    rates = sorted({e["bpp"] for rows in matched.values() for e in rows})
    for rate in rates:
        for name in order:
            e = next((e for e in matched[name] if e["bpp"] == rate), None)
            if e is None or all(_nan(e.get(m)) for m in ("psnr", "ms_ssim", "ssim", "st_lpips")):
                continue
            out.append(f"<tr><td>{rate:g}</td><td>{html.escape(labels.get(name, name))}</td><td>{_fmt(e['psnr'])}</td>"
                       f"<td>{_fmt(e['ms_ssim'], 4)}</td><td>{_fmt(e['ssim'], 4)}</td>"
                       f"<td>{_fmt(e.get('st_lpips'), 4)}</td></tr>")
    return ("<h2>At matched rates</h2><p>Mean metrics interpolated (PCHIP on log bpp) at each rate; a curve "
            "that does not reach a rate has no row at it; n/a where it has no value." + html.escape(_unmeasured_note(summary))
            + "</p>" + "".join(out) + "</table>")


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1500px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.good{color:#137a13}td.bad{color:#b01c1c}.plots img{display:block;max-width:100%;margin-bottom:8px}
.crops{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;font-size:12px}
figure img{image-rendering:pixelated;display:block}code{background:#f3f3f3;padding:1px 3px}"""


def write_report(out: str | Path, crops: int = 3, crop_bpp: float = DEFAULT_CROP_BPP, st_lpips: bool = True,
                 anchors: dict[str, dict[str, Any]] | None = None) -> Path:
    """Plots, crops and ``report.html`` in the sweep folder ``out``; returns the HTML path.

    Drawn in a hidden folder in ``out`` and moved into place at the end: an interruption (Ctrl-C)
    while it draws leaves the earlier report as it was. Drawn in place, it left crops without the
    report.html that remove_report finds them through, so no later run removed them."""
    out = Path(out)
    summary = json.loads((out / "summary.json").read_text())
    anchors = load_anchors() if anchors is None else anchors
    for left in out.glob(".report.*.tmp"):  # drawn by a run killed outright (SIGKILL, power loss)
        shutil.rmtree(left, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".report.", suffix=".tmp", dir=out))
    try:
        _draw_report(summary, staging, crops, crop_bpp, st_lpips, anchors)
        _move_report(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_markdown(out)
    return out / "report.html"


def _move_report(staging: Path, out: Path) -> None:
    """Replace ``out``'s report by the one drawn in ``staging``."""
    remove_report(out)
    # report.html first: whatever an interruption here leaves of the rest, it links (remove_report finds it)
    for name in REPORT_FILES:
        if (staging / name).is_file():
            os.replace(staging / name, out / name)
    drawn = sorted((staging / CROPS_FOLDER).glob("*.png")) if (staging / CROPS_FOLDER).is_dir() else []
    if drawn:
        (out / CROPS_FOLDER).mkdir(exist_ok=True)
    for path in drawn:
        shutil.move(path, out / CROPS_FOLDER / path.name)  # a crops/ that links to another disk: copied


def _draw_report(summary: dict[str, Any], out: Path, crops: int, crop_bpp: float, st_lpips: bool,
                 anchors: dict[str, dict[str, Any]]) -> None:
    """Plots, crops and ``report.html`` of ``summary`` in the folder ``out``."""
    plots = plot_rd(summary, out, anchors)
    sections = make_crops(summary, out, crops, crop_bpp, st_lpips) if crops > 0 else []
    notes = summary.get("notes", {})
    codecs = summary.get("codecs", {})
    settings = "".join(f"<li><b>{html.escape(v['label'])}</b>: {html.escape(v.get('library', ''))}; "
                       f"<code>{html.escape(json.dumps(v['settings']))}</code></li>" for v in codecs.values())
    models = "".join(f"<li><b>{html.escape(m)}</b>: weights {h}</li>" for m, h in summary.get("models", {}).items())
    note_items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in notes.items())
    images = summary.get("images", [])
    external = {n: c for n, c in summary["curves"].items() if c["kind"] == "external"}
    compared = "".join(f"<li><b>{html.escape(n)}</b>: <code>{html.escape(c.get('source', ''))}</code> "
                       f"{html.escape(c.get('description', ''))}</li>" for n, c in external.items())
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgecodec evaluation</title><style>{CSS}</style></head><body>
<h1>edgecodec evaluation</h1>
<p>{len(images)} image(s) from <code>{html.escape(summary.get('image_dir', ''))}</code>, written
{html.escape(summary.get('created', ''))}. {html.escape(anchors_sentence(anchors))}</p>
<h2>Rate-distortion</h2>
<div class="plots">{''.join(f"<a href='{p.name}'><img src='{p.name}' alt='{m}'></a>" for m, p in plots.items())}</div>
<h2>BD-rate: learned models against classical codecs{" and compared curves" if external else ""}</h2>
<p>Percent of bits the learned model needs more (+) or fewer (&minus;) than the codec at equal quality,
over the quality range both curves cover (n/a: no overlap{html.escape(_na_unmeasured(summary))}). MS-SSIM on -10&nbsp;log10(1&minus;MS-SSIM);
ST-LPIPS on -10&nbsp;log10(ST-LPIPS), i.e. the bits needed at equal ST-LPIPS.</p>
{_bd_table(summary)}
<p>Restricted to the qualities each codec reaches between {' and '.join(f'{r:g}' for r in summary.get('bd_rate_range', []))} bpp:</p>
{_bd_table(summary, "bd_rates_in_range")}
{_matched_html(summary)}
<h2>Crops at matched rate</h2>
{_crops_html(sections, crop_bpp)}
<h2>Settings</h2><ul>{models}{settings}{compared}</ul><ul>{note_items}</ul>
<h2>All points</h2>
{_points_table(summary)}
</body></html>
"""
    atomic_write_text(out / "report.html", doc)


def main(argv: list[str] | None = None) -> int:
    import argparse

    import torch

    parser = argparse.ArgumentParser(prog="python -m edgecodec.eval.report",
                                     description="Re-draw the report of a finished sweep folder.")
    parser.add_argument("out", help="folder holding summary.json")
    parser.add_argument("--crops", type=int, default=3, help="images with crops (0: none)")
    parser.add_argument("--crop-bpp", type=float, default=DEFAULT_CROP_BPP)
    parser.add_argument("--no-st-lpips", action="store_true")
    args = parser.parse_args(argv)
    summary = Path(args.out) / "summary.json"
    try:  # a folder without a sweep's summary was a traceback
        if not isinstance(json.loads(summary.read_text()).get("curves"), dict):
            raise ValueError("no curves")
    except (OSError, ValueError, AttributeError) as exc:
        parser.error(f"{summary}: not a summary that edgecodec eval wrote ({exc})")
    torch.set_num_threads(1)
    print(write_report(args.out, args.crops, args.crop_bpp, not args.no_st_lpips))
    return 0


if __name__ == "__main__":
    sys.exit(main())
