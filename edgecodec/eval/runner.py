"""The evaluation sweep: learned models and classical codecs over a folder of images.

For every image, every learned model at every quality of ``qualities`` and every classical codec at
every quality of its sweep, one row: file bytes (container and headers included) and bpp from them,
PSNR, MS-SSIM, SSIM and ST-LPIPS against the source, encode and decode time, and peak memory.

Outputs in the ``out`` folder:

``per_image.csv``  one row per image, codec and quality of this run
``summary.json``   per codec: mean curves (bpp, PSNR, MS-SSIM, SSIM and ST-LPIPS averaged over
                   images, the field's convention; times as medians; peak memory as the maximum),
                   the settings and versions, and BD-rates of each learned model against each
                   classical codec and each external curve (see :mod:`.bdrate`)
``compressai/``    each measured curve as CompressAI's results JSON (:mod:`.compressai_format`),
                   for ``python -m compressai.utils.plot`` and other tools that read that format
``cache.jsonl``    every row ever measured, keyed by image file name + content hash, codec, quality,
                   codec version (the weights hash for learned models; library versions and
                   settings for classical ones) and :func:`measuring_code` (a digest of the
                   package's measuring source and the versions of torch, Pillow, CompressAI and the metric
                   packages). A re-run only measures rows missing from it.
                   Where it lacks a row that the folder's ``per_image.csv`` holds under the same key
                   (the CSV records each image's content hash), the CSV's row is reused: a fresh
                   clone, which has the committed CSV but not the ignored cache, re-measures only
                   what changed.

Timing: ``enc_ms`` of a learned model is its analysis transform plus entropy coding at that quality
(the analysis runs once per image, but each quality's time includes it, as for a real encode);
``dec_ms`` is :func:`decode_array` from bytes. Classical codecs time Pillow's save / open+load.
Everything runs on one thread per worker (``torch.set_num_threads(1)``, single-threaded codecs).

Peak memory (``peak_mb``): the growth of the process's peak resident set size (Linux ``VmHWM``,
reset through ``/proc/self/clear_refs`` before each step, after ``malloc_trim`` has returned freed
heap to the system) over the resident size just before encoding and decoding one image at one
quality; for learned models the larger of that and the same measure over the analysis transform.
Unlike ``tracemalloc`` it sees native allocations (libjpeg, libavif, torch). It counts memory the
step needed beyond what the process already held, so it is a close lower bound, not exact. Where
``clear_refs`` is unavailable it falls back to ``ru_maxrss`` growth (only counts new highs).
"""

from __future__ import annotations

import csv
import ctypes
import functools
import hashlib
import json
import math
import os
import re
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .classical import CODECS, get_codec
from .compressai_format import write_curves
from .summary import build_summary, json_safe
from ..atomic import atomic_path, atomic_write_text
from ..errors import OutputWriteError, UsageError
from ..metrics import ms_ssim, psnr, ssim

IMAGE_SUFFIXES = (".png", ".ppm", ".bmp", ".tif", ".tiff")
DEFAULT_QUALITIES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DEFAULT_CODECS = ("jpeg", "webp", "avif", "jxl")
CSV_FIELDS = ("image", "width", "height", "codec", "kind", "quality", "bytes", "bpp", "psnr", "ms_ssim", "ssim",
              "st_lpips", "enc_ms", "dec_ms", "peak_mb", "version", "image_hash", "code")
CSV_INT_FIELDS = ("width", "height", "bytes")
CSV_FLOAT_FIELDS = ("bpp", "psnr", "ms_ssim", "ssim", "st_lpips", "enc_ms", "dec_ms", "peak_mb")
REFINE_LABEL = re.compile(r"(?P<model>[^+]+)\+refine(?P<steps>[1-9][0-9]*)")


def data_root(package: Path = Path(__file__).resolve().parents[1]) -> Path:
    """$EDGECODEC_DATA, else shared/data beside the repository that holds ``package`` (a
    checkout), else ../shared/data from the working folder, as the README's commands name it (an
    installed package has no repository: the folder beside site-packages meant nothing)."""
    env = os.environ.get("EDGECODEC_DATA")
    if env:
        return Path(env)
    repository = package.parent
    if (repository / "pyproject.toml").is_file():
        return repository.parent / "shared" / "data"
    return (Path.cwd() / ".." / "shared" / "data").resolve()  # absolute: reports name it


# --- peak memory ---------------------------------------------------------------------------------
def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


class PeakRSS:
    """``with PeakRSS() as m: ...`` then ``m.mb``: peak RSS growth in MiB during the block."""

    def __enter__(self) -> "PeakRSS":
        libc = _libc()
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
        self._hwm = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self._start = _status_kib("VmRSS")
            self._hwm = self._start is not None
        except OSError:
            pass
        if not self._hwm:
            self._start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.mb = math.nan
        return self

    def __exit__(self, *exc: Any) -> None:
        end = _status_kib("VmHWM") if self._hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if end is not None and self._start is not None:
            self.mb = max(0, end - self._start) / 1024


# --- ST-LPIPS ------------------------------------------------------------------------------------
# The trunks' convolutions and pools need a side of at least 21 pixels (AlexNet; VGG 18): below
# that torch raises, which `metrics --st-lpips` of a thumbnail reported as an internal error.
ST_LPIPS_MIN_SIDE = 21


class STLPIPS:
    """ST-LPIPS (shift-tolerant; AlexNet trunk unless ``backend`` says otherwise) of uint8 RGB
    arrays, with the reference's features cached.

    Built on :func:`edgecodec.losses.perceptual.build_perceptual`; the distance is computed from
    the same module's trunk, calibration layers and normalisation as its ``forward``, split so that
    one image's reference features serve all its decoded versions (it halves the cost). Where the
    module does not have the expected layout, each call runs the whole forward.
    """

    def __init__(self, backend: str = "stlpips-alex") -> None:
        import torch

        from ..losses.perceptual import build_perceptual

        self._torch = torch
        self.module = build_perceptual(backend)
        net = self.module.net
        self._split = (all(hasattr(net, a) for a in ("net", "lins", "scaling_layer", "L", "version"))
                       and getattr(net, "lpips", False) and not getattr(net, "spatial", True))
        self._ref_key: int | None = None
        self._ref: Any = None

    def _tensor(self, rgb: np.ndarray) -> Any:
        from ..codec.api import _to_tensor

        return _to_tensor(rgb, 1)  # the codec's conversion (it copies read-only arrays), no padding

    def _features(self, x: Any) -> list[Any]:
        from stlpips_pytorch import utils

        net = self.module.net
        x = x * 2 - 1
        if net.version == "0.1":
            x = net.scaling_layer(x)
        return [utils.normalize_tensor(o) for o in net.net.forward(x)]

    def __call__(self, reference: np.ndarray, decoded: np.ndarray) -> float:
        """The distance; NaN for images too small for the trunk (as ``metrics.ms_ssim`` does)."""
        if min(reference.shape[:2]) < ST_LPIPS_MIN_SIDE:
            return math.nan
        with self._torch.no_grad():
            if not self._split:
                return float(self.module(self._tensor(reference), self._tensor(decoded))[0])
            if self._ref_key != id(reference) or self._ref is None:
                self._ref = self._features(self._tensor(reference))
                self._ref_key = id(reference)
                self._ref_array = reference  # keeps id(reference) from being reused while cached
            feats = self._features(self._tensor(decoded))
            net = self.module.net
            total = 0.0
            for k in range(net.L):
                total += float(net.lins[k]((self._ref[k] - feats[k]) ** 2).mean())
            return total


# --- rows and cache ------------------------------------------------------------------------------
def list_images(image_dir: str | Path, limit: int | None = None) -> list[Path]:
    folder = Path(image_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return paths[:limit] if limit else paths


def image_id(path: Path) -> str:
    """Name and content hash: a copy of the same images (another clone, a fresh data folder, whose
    times differ) reuses the rows; an edited image gets new ones."""
    return f"{path.name}|{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"


def _image_hash(image_id_: str) -> str:
    return image_id_.rsplit("|", 1)[1]


def parse_model_label(label: str) -> tuple[str, int]:
    """A learned model's label in the sweep: ``NAME`` or ``NAME+refineN`` (the model with N steps of
    encoder refinement, codec/refine.py) -> (NAME, N). Model names cannot contain '+', so any other
    label with one is a misspelt refinement (UsageError, not "unknown model")."""
    match = REFINE_LABEL.fullmatch(label)
    if match:
        return match["model"], int(match["steps"])
    if "+" in label:
        raise UsageError(f"model {label!r}: a refined model is NAME+refineN, N a whole number of "
                         "steps from 1 (e.g. fidelity+refine50)")
    return label, 0


def model_version(label: str) -> str:
    """What a learned model's rows are keyed by: its weights hash, and the refinement settings of a
    ``+refineN`` label (a model that cannot be refined is refused here, before anything runs)."""
    from ..codec.refine import SETTINGS_ID, refinement_objective
    from ..zoo import load_model

    name, steps = parse_model_label(label)
    _, weights_hash = load_model(name)
    if not steps:
        return weights_hash.hex()
    refinement_objective(name)
    return f"{weights_hash.hex()}+refine{steps}-{SETTINGS_ID}"


# Modules no row's numbers come from: they present or compare rows (a new chart or BD-rate keeps
# the cache) or are not run by a sweep. Every other source file of the package is measuring code.
NOT_MEASURING = ("cli.py", "train/", "web/", "export/", "eval/summary.py", "eval/report.py", "eval/bdrate.py",
                 "eval/command.py", "eval/compressai_format.py", "eval/original.py")
MEASURING_PACKAGES = ("torch", "compressai", "pytorch-msssim", "stlpips-pytorch", "numpy", "pillow")


@functools.lru_cache(maxsize=1)
def measuring_code() -> str:
    """A digest of the code a row's numbers come from: edgecodec's measuring source files and the
    versions of the packages under them. Part of every row's key beside the weights or codec
    settings, so a change to quantisation, entropy coding, image reading or a metric re-measures
    the rows instead of reusing numbers the code no longer gives."""
    return code_digest(Path(__file__).resolve().parents[1])


def code_digest(package: Path) -> str:
    """:func:`measuring_code` of the package source in the folder ``package``."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package).as_posix()
        if not name.startswith(NOT_MEASURING):
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    for dist in MEASURING_PACKAGES:
        try:
            digest.update(f"{dist} {version(dist)}\0".encode())
        except PackageNotFoundError:
            digest.update(f"{dist} none\0".encode())
    return digest.hexdigest()[:16]


def row_key(image: str, codec: str, quality: float, version: str, code: str) -> str:
    return f"{image}|{codec}|{quality!r}|{version}|{code}"


@dataclass(frozen=True)
class Task:
    codec: str
    kind: str  # "learned" or "classical"
    quality: float  # 0-1 for learned models, the codec's integer scale for classical ones
    version: str  # weights hash (and refinement settings), or the classical codec's library and settings
    code: str  # measuring_code()

    def key(self, image: str) -> str:
        return row_key(image, self.codec, self.quality, self.version, self.code)


class Cache:
    """Rows keyed by :func:`row_key`, stored as JSON lines (appended as they are measured)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}
        self.from_csv: set[str] = set()  # keys adopted by seed_from_csv
        if path.is_file():
            with open(path) as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        self.rows[entry["key"]] = entry["row"]
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut short by an interrupted run

    def get(self, key: str, need_st_lpips: bool) -> dict[str, Any] | None:
        row = self.rows.get(key)
        if row is None or (need_st_lpips and row.get("st_lpips") is None):
            return None
        return row

    def seed_from_csv(self, csv_path: Path) -> None:
        """Adopt the rows of an earlier run's ``per_image.csv`` that the cache lacks (values at the
        CSV's 6 significant digits). Kept in memory only: the CSV this run writes carries them on.
        Rows of a CSV without the ``image_hash`` or ``code`` column (written before they existed)
        cannot be matched to image contents or code and are left out."""
        if not csv_path.is_file():
            return
        with open(csv_path, newline="") as f:
            for entry in csv.DictReader(f):
                try:
                    if not entry.get("image_hash") or not entry.get("code"):
                        continue
                    row: dict[str, Any] = {k: entry[k] for k in ("image", "codec", "kind", "version", "code")}
                    row["quality"] = float(entry["quality"]) if entry["kind"] == "learned" else int(entry["quality"])
                    row.update({k: int(entry[k]) for k in CSV_INT_FIELDS})
                    row.update({k: float(entry[k]) if entry[k] else None for k in CSV_FLOAT_FIELDS})
                except (KeyError, ValueError, TypeError):
                    continue  # a row this version cannot read is measured again
                key = row_key(f"{row['image']}|{entry['image_hash']}", row["codec"], row["quality"], row["version"],
                              row["code"])
                if key not in self.rows:
                    self.rows[key] = row
                    self.from_csv.add(key)

    def put(self, key: str, row: dict[str, Any]) -> None:
        self.rows[key] = row
        self.from_csv.discard(key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"key": key, "row": row}, allow_nan=True) + "\n")


def _load_rgb(path: Path) -> np.ndarray:
    from ..codec.imageio import load_image

    return load_image(path, alpha="drop").rgb


def _metrics(reference: np.ndarray, decoded: np.ndarray, lpips: STLPIPS | None) -> dict[str, float | None]:
    return {"psnr": psnr(reference, decoded), "ms_ssim": ms_ssim(reference, decoded),
            "ssim": ssim(reference, decoded), "st_lpips": lpips(reference, decoded) if lpips else None}


def _classical_row(rgb: np.ndarray, task: Task) -> tuple[dict[str, Any], np.ndarray]:
    codec = get_codec(task.codec)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        data = codec.encode(rgb, int(task.quality))
        t1 = time.perf_counter()
        decoded = codec.decode(data)
        t2 = time.perf_counter()
    return {"bytes": len(data), "enc_ms": 1000 * (t1 - t0), "dec_ms": 1000 * (t2 - t1), "peak_mb": mem.mb}, decoded


@functools.lru_cache(maxsize=None)
def _warm_up(model: str) -> None:
    """One tiny encode and decode, so one-time costs (model load, first kernels) are not timed."""
    from ..codec.api import Encoder, decode_array
    from ..codec.imageio import load_image

    x = np.zeros((64, 64, 3), np.uint8)
    decode_array(Encoder(load_image(x), model).encode(0))


def measure_image(path: Path, tasks: list[Task], st_lpips: bool = True,
                  on_row: Callable[[Task, dict[str, Any]], None] | None = None) -> list[tuple[Task, dict[str, Any]]]:
    """Measure ``tasks`` on one image; ``on_row`` is called after each (for progress and caching)."""
    import torch

    from ..codec.api import Encoder, decode_array, quality_to_q16
    from ..codec.imageio import load_image

    prepared = load_image(path, alpha="drop")
    rgb = prepared.rgb
    h, w = rgb.shape[:2]
    lpips = _st_lpips() if st_lpips else None
    results = []
    encoders: dict[str, tuple[Encoder, float, float]] = {}
    for task in tasks:
        if task.kind == "classical":
            row, decoded = _classical_row(rgb, task)
        else:
            if task.codec not in encoders:
                model, refine_steps = parse_model_label(task.codec)
                _warm_up(model)
                with PeakRSS() as mem:
                    t0 = time.perf_counter()
                    encoder = Encoder(prepared, model, refine_steps=refine_steps)
                    analysis_ms = 1000 * (time.perf_counter() - t0)
                encoders[task.codec] = (encoder, analysis_ms, mem.mb)
            encoder, analysis_ms, analysis_mb = encoders[task.codec]
            with torch.no_grad(), PeakRSS() as mem:
                t0 = time.perf_counter()
                data = encoder.encode(quality_to_q16(task.quality))
                t1 = time.perf_counter()
                decoded, header = decode_array(data)
                t2 = time.perf_counter()
            decoded = as_decoded(decoded, header)
            row = {"bytes": len(data), "enc_ms": analysis_ms + 1000 * (t1 - t0), "dec_ms": 1000 * (t2 - t1),
                   "peak_mb": max(mem.mb, analysis_mb)}
        row = {"image": path.name, "width": w, "height": h, "codec": task.codec, "kind": task.kind,
               "quality": task.quality, "bytes": row["bytes"], "bpp": 8 * row["bytes"] / (w * h),
               **_metrics(rgb, decoded, lpips), "enc_ms": row["enc_ms"], "dec_ms": row["dec_ms"],
               "peak_mb": row["peak_mb"], "version": task.version, "code": task.code}
        results.append((task, row))
        if on_row:
            on_row(task, row)
    return results


def as_decoded(rgb: np.ndarray, header: Any) -> np.ndarray:
    """A decode as the file decodes (``decompress``, ``metrics``): a grayscale source's gray, as RGB.
    decode_array's three channels of it differ by the coding error (up to 8 levels)."""
    from ..codec.container import GRAYSCALE_SOURCE
    from ..codec.imageio import to_pil

    return np.array(to_pil(rgb, True).convert("RGB")) if header.conversions & GRAYSCALE_SOURCE else rgb


@functools.lru_cache(maxsize=1)
def _st_lpips() -> STLPIPS:
    return STLPIPS()


def _worker(path: str, tasks: list[Task], st_lpips: bool) -> list[tuple[Task, dict[str, Any]]]:
    import torch

    torch.set_num_threads(1)
    return measure_image(Path(path), tasks, st_lpips)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return value


# --- the sweep -----------------------------------------------------------------------------------
SWEEP_FILES = ("cache.jsonl", "per_image.csv", "summary.json")
SWEEP_FOLDERS = ("compressai",)


def check_outputs(out: Path, files: Iterable[str] = SWEEP_FILES, folders: Iterable[str] = SWEEP_FOLDERS) -> None:
    """Refuse before any measuring (exit 11) a sweep folder where an output cannot be written: a
    folder where a file goes or a file where a folder goes (found after the sweep, it was an
    internal error with some outputs new and others old)."""
    for name in files:
        if (out / name).is_dir():
            raise OutputWriteError(f"cannot write {out / name}: a folder is in its place")
    for name in folders:
        if os.path.lexists(out / name) and not (out / name).is_dir():  # a dangling link too
            raise OutputWriteError(f"cannot write into {out / name}: a file is in its place")


@dataclass
class RunResult:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    computed: int
    cached: int  # rows not measured by this run, from_csv of them from an earlier per_image.csv
    out: Path
    from_csv: int = 0
    csv_path: Path = field(init=False)
    summary_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.csv_path = self.out / "per_image.csv"
        self.summary_path = self.out / "summary.json"


def run_sweep(image_dir: str | Path, out: str | Path, models: Iterable[str] = ("fidelity",),
              qualities: Iterable[float] = DEFAULT_QUALITIES, codecs: Iterable[str] = DEFAULT_CODECS,
              codec_qualities: dict[str, Iterable[int]] | None = None, limit: int | None = None, jobs: int = 1,
              st_lpips: bool = True, progress: bool = True,
              model_qualities: dict[str, Iterable[float]] | None = None,
              external: dict[str, dict[str, Any]] | None = None) -> RunResult:
    """Measure what is missing from the cache, then write ``per_image.csv``, ``summary.json`` and
    ``compressai/NAME.json`` (each measured curve in CompressAI's results format).

    ``models`` are labels (:func:`parse_model_label`: ``fidelity+refine50`` is fidelity with encoder
    refinement); ``model_qualities`` replaces ``qualities`` for some of them. ``external``: curves read
    by :func:`.compressai_format.read_curves`, added to the summary (BD-rates, tables, plots) as they
    are, not measured. ``jobs`` > 1 measures
    images in that many spawned worker processes (one thread each); a script calling it that way
    needs the usual ``if __name__ == "__main__":`` guard.
    """
    from ..codec.api import quality_to_q16

    out = Path(out)
    models, codecs = list(models), list(codecs)
    # a quality given twice is measured once (twice, each image's row was in the CSV and the means twice)
    qualities = list(dict.fromkeys(float(q) for q in qualities))
    model_qualities = {k: list(dict.fromkeys(float(q) for q in v)) for k, v in (model_qualities or {}).items()}
    for q in qualities + [q for v in model_qualities.values() for q in v]:
        quality_to_q16(q)  # validates the range
    for name in models:
        if name in CODECS:
            raise ValueError(f"model name {name!r} clashes with a classical codec name")
    external = dict(external or {})
    for name in external:
        if name in models or name in codecs:
            raise ValueError(f"compared curve {name!r} has the name of a measured model or codec")
    for name in codecs:
        codec = get_codec(name)
        if not codec.available():
            codec._check()  # raises CodecUnavailableError with the reason
    paths = list_images(image_dir, limit)
    versions = {label: model_version(label) for label in models}
    code = measuring_code()
    tasks: list[Task] = []
    for label, version in versions.items():
        tasks += [Task(label, "learned", q, version, code) for q in model_qualities.get(label, qualities)]
    for name in codecs:
        codec = get_codec(name)
        sweep = dict.fromkeys(int(q) for q in (codec_qualities or {}).get(name, codec.sweep))
        tasks += [Task(name, "classical", q, codec.settings_id(), code) for q in sweep]

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in its place or on its path: exit 11, not an internal error
        raise OutputWriteError.making(out, exc, "into the output folder") from None
    check_outputs(out)
    cache = Cache(out / "cache.jsonl")
    cache.seed_from_csv(out / "per_image.csv")
    pending: dict[Path, list[Task]] = {}
    ids = {path: image_id(path) for path in paths}  # measured rows are keyed by the content read here
    for path in paths:
        iid = ids[path]
        missing = [t for t in tasks if cache.get(t.key(iid), st_lpips) is None]
        if missing:
            pending[path] = missing
    total = sum(len(v) for v in pending.values())
    computed = 0

    from tqdm import tqdm

    bar = tqdm(total=total, unit="row", desc="eval", disable=not progress or total == 0, file=sys.stderr)

    def store(path: Path, task: Task, row: dict[str, Any]) -> None:
        nonlocal computed
        cache.put(task.key(ids[path]), row)
        computed += 1
        bar.update(1)
        bar.set_postfix_str(f"{path.name} {task.codec} q{task.quality:g}", refresh=False)

    try:
        if jobs <= 1 or len(pending) <= 1:
            for path, missing in pending.items():
                measure_image(path, missing, st_lpips, on_row=lambda t, r, p=path: store(p, t, r))
        else:
            import multiprocessing

            with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(_worker, str(p), m, st_lpips): p for p, m in pending.items()}
                for future in as_completed(futures):
                    for task, row in future.result():
                        store(futures[future], task, row)
    finally:
        bar.close()

    rows, from_csv = [], 0
    for path in paths:
        iid = ids[path]
        for t in tasks:
            key = t.key(iid)
            row = cache.get(key, st_lpips)
            if row is not None:
                # without ST-LPIPS this run's outputs carry none, as their notes say, even where
                # the cache holds some (the cache keeps them)
                rows.append({**row, "image_hash": _image_hash(iid), **({} if st_lpips else {"st_lpips": None})})
                from_csv += key in cache.from_csv
    summary = build_summary(rows, paths, versions, codecs, image_dir, st_lpips, external, code)
    result = RunResult(rows, summary, computed, len(rows) - computed, out, from_csv)
    write_csv(result.csv_path, rows)
    atomic_write_text(result.summary_path, json.dumps(json_safe(summary), indent=1) + "\n")
    write_curves(summary, out / "compressai")
    return result


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in CSV_FIELDS})


__all__ = ["DEFAULT_CODECS", "DEFAULT_QUALITIES", "PeakRSS", "RunResult", "STLPIPS", "Task", "data_root",
           "list_images", "measure_image", "run_sweep"]
