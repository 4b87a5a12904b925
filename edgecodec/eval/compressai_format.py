"""Rate-distortion curves in CompressAI's results format, both ways.

CompressAI's ``python -m compressai.utils.eval_model`` writes, and ``python -m compressai.utils.plot``
reads, one JSON file per codec: ``{"name", "description", "results": {"bpp": [...], "psnr-rgb": [...],
"ms-ssim-rgb": [...], "encoding_time": [...], "decoding_time": [...]}}``, one list entry per quality
setting, each a mean over the images. Its published Kodak results (``results/image/kodak/*.json`` in
its repository: its models, VTM, BPG, AV1) have the same shape. So:

* :func:`write_curves` gives each curve of an ``edgecodec eval`` folder such a file
  (``OUT/compressai/NAME.json``), for CompressAI's plot tool or any script that reads them;
* :func:`read_curves` reads such files as *external* curves (``eval --compare FILE``), so the BD-rates
  and plots set edgecodec against a model that someone evaluated with CompressAI, or against the
  published points, without measuring that model here.

CompressAI has a writer and a plotter for this format but no reader that returns the curves, hence
these few functions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text

# Each summary field: CompressAI's key for it (written), other names a file may give it (keys are
# read lower-case, "_" as "-"), and its value here per unit there (times: ms here, seconds there).
FIELDS = {"bpp": ("bpp", (), 1), "psnr": ("psnr-rgb", ("psnr",), 1), "ms_ssim": ("ms-ssim-rgb", ("ms-ssim",), 1),
          "ssim": ("ssim-rgb", ("ssim",), 1), "st_lpips": ("st-lpips", (), 1),
          "enc_ms": ("encoding_time", (), 1000), "dec_ms": ("decoding_time", (), 1000)}
QUALITY_METRICS = ("psnr", "ms_ssim", "st_lpips")  # the ones BD-rates use; a curve needs one of them
POINT_FIELDS = ("bpp", "psnr", "ms_ssim", "ssim", "st_lpips", "enc_ms", "dec_ms", "peak_mb")


class ResultsFormatError(ValueError):
    """A ``--compare`` file that is not a readable curve; the message names the file and the fault."""


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def to_results(name: str, curve: dict[str, Any], description: str) -> dict[str, Any]:
    """One summary curve (``{"points": [...]}``) as a CompressAI results document."""
    points = curve["points"]
    results: dict[str, list[Any]] = {}
    for field, (key, _, scale) in FIELDS.items():
        values = [_finite(p.get(field)) for p in points]
        if any(v is not None for v in values):
            results[key] = [None if v is None else v / scale for v in values]
    results["quality"] = [p["quality"] for p in points]
    return {"name": name, "description": description, "results": results}


def write_curves(summary: dict[str, Any], folder: str | Path) -> list[Path]:
    """``folder/NAME.json`` for each measured curve of a sweep summary (not the external ones).

    Other ``.json`` files in ``folder`` (curves of an earlier sweep that this one no longer has) are
    removed, so the folder always matches ``summary.json``; except the files of its external
    curves (``eval --compare OUT/compressai/old.json``), which are its input."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_images = len(summary.get("images", []))
    source = Path(summary.get("image_dir", "")).name
    written = []
    for name, curve in summary["curves"].items():
        if curve["kind"] == "external":
            continue
        what = "edgecodec model" if curve["kind"] == "learned" else f"{curve.get('label', name)} through Pillow"
        description = (f"{what}, measured by edgecodec eval on {n_images} image(s) of {source}: bpp from file bytes "
                       "(headers included), metrics on 8-bit RGB, means over images; times are medians over "
                       "images on one thread; quality is the codec's own setting")
        path = folder / f"{name}.json"
        atomic_write_text(path, json.dumps(to_results(name, curve, description), indent=1) + "\n")
        written.append(path)
    # a --compare file kept there was deleted by the run that read it, leaving summary.json naming a
    # source that no longer existed
    inputs = {Path(c["source"]).resolve() for c in summary["curves"].values()
              if c["kind"] == "external" and c.get("source")}
    for stale in set(folder.glob("*.json")) - set(written):
        if stale.resolve() not in inputs:
            stale.unlink()
    return written


def _curve(name: str, results: Any, source: Path, description: str = "") -> dict[str, Any]:
    where = f"{source}: curve {name!r}"
    if not isinstance(results, dict):
        raise ResultsFormatError(f"{where}: expected an object of metric lists")
    results = {str(k).lower().replace("_", "-"): v for k, v in results.items()}
    columns: dict[str, list[float]] = {}
    for field, (key, aliases, scale) in FIELDS.items():
        values = next((results[k] for k in (key.replace("_", "-"), *aliases) if k in results), None)
        if values is None:
            continue
        if not isinstance(values, list) or not all(v is None or isinstance(v, (int, float)) for v in values):
            raise ResultsFormatError(f"{where}: {field} is not a list of numbers")
        columns[field] = [math.nan if v is None else float(v) * scale for v in values]
    # CompressAI's published paper curves (results/image/kodak/paper-*_ms-ssim.json) give MS-SSIM only
    # in dB, as "ms-ssim-db-rgb": read as MS-SSIM (they were refused as having no quality metric)
    db = next((results[k] for k in ("ms-ssim-db-rgb", "ms-ssim-db") if k in results), None)
    if "ms_ssim" not in columns and db is not None:
        if not isinstance(db, list) or not all(v is None or isinstance(v, (int, float)) for v in db):
            raise ResultsFormatError(f"{where}: ms-ssim-db is not a list of numbers")
        columns["ms_ssim"] = [math.nan if v is None else 1 - 10 ** (-float(v) / 10) for v in db]
    bpp = columns.get("bpp")
    if bpp is None:
        hint = " (an edgecodec summary.json? give its compressai/NAME.json files)" if "points" in results else ""
        raise ResultsFormatError(f"{where}: no 'bpp' list{hint}")
    if len(bpp) < 2 or not all(math.isfinite(b) and b > 0 for b in bpp):
        raise ResultsFormatError(f"{where}: 'bpp' needs at least two positive numbers")
    if not any(m in columns for m in QUALITY_METRICS):
        raise ResultsFormatError(f"{where}: none of psnr-rgb, ms-ssim-rgb (or ms-ssim-db-rgb), st-lpips")
    for field, values in columns.items():
        if len(values) != len(bpp):
            raise ResultsFormatError(f"{where}: {len(values)} {field} values for {len(bpp)} bpp values")
    qualities = results.get("quality")
    if not (isinstance(qualities, list) and len(qualities) == len(bpp)
            and all(isinstance(q, (int, float)) for q in qualities)):
        qualities = list(range(1, len(bpp) + 1))
    points = [{"quality": q, "images": None, **{f: columns.get(f, [math.nan] * len(bpp))[i] for f in POINT_FIELDS}}
              for i, q in enumerate(qualities)]
    return {"kind": "external", "label": name, "source": str(source), "description": description,
            "points": sorted(points, key=lambda p: p["bpp"])}


def read_curves(path: str | Path, name: str | None = None) -> dict[str, dict[str, Any]]:
    """The curves of a results file, as summary curves of kind ``"external"``.

    Accepts CompressAI's format (``{"name", "results": {...}}``, or the bare metric lists), and files
    holding several such curves under ``"curves"`` (``../shared/data/anchors/compressai_kodak.json``).
    A one-curve file is named ``name``, else by its ``"name"``, else by the file's stem; curves of a
    several-curve file by their keys. Raises :class:`ResultsFormatError` with the reason."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsFormatError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsFormatError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise ResultsFormatError(f"{path}: expected a JSON object")
    if isinstance(data.get("curves"), dict):
        if name is not None:
            raise ResultsFormatError(f"{path}: holds {len(data['curves'])} curves, so it cannot take one name")
        if not data["curves"]:
            raise ResultsFormatError(f"{path}: 'curves' is empty")
        return {str(key): _curve(str(key), results, path, str(results.get("file", "")) if isinstance(results, dict)
                                 else "") for key, results in data["curves"].items()}
    results = data.get("results", data)
    label = name or (data["name"] if isinstance(data.get("name"), str) and data["name"] else path.stem)
    return {label: _curve(label, results, path, str(data.get("description", "")))}


__all__ = ["ResultsFormatError", "read_curves", "to_results", "write_curves"]
