"""`edgecodec eval`: the rate-distortion sweep, BD-rates and HTML report from the command line.

Registered by ``edgecodec.cli.build_parser`` through :func:`add_eval_parser`; importing this
module is cheap (torch and the codecs load only when the command runs).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from collections import Counter
from pathlib import Path

from ..argtypes import int_at_least, names, numbers, positive_number, region
from ..errors import EXIT_PARTIAL, one_line

DEFAULT_CODECS = "jpeg,webp,avif,jxl"
DEFAULT_QUALITIES = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1"


def _sweep(text: str) -> tuple[str, list[float]]:
    name, sep, values = text.partition("=")
    try:
        qualities = numbers(values)
    except argparse.ArgumentTypeError:
        qualities = []
    if not sep or not name.strip() or not qualities:
        raise argparse.ArgumentTypeError(f"expected CODEC=Q1,Q2,... or MODEL=Q1,Q2,..., got {text!r}")
    return name.strip(), qualities


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``eval`` sub-command to an ``add_subparsers()`` object; returns its parser."""
    p = subparsers.add_parser(
        "eval", help="rate-distortion sweep of learned models and classical codecs, with an HTML report",
        description="Measure learned models and JPEG / WebP / AVIF / JPEG XL on a folder of images: bpp from "
                    "real file bytes, PSNR, MS-SSIM, SSIM, ST-LPIPS, times and peak memory. Writes "
                    "OUT/per_image.csv, OUT/summary.json (with BD-rates), each curve in CompressAI's results format "
                    "(OUT/compressai/NAME.json), RD plots and OUT/report.html. "
                    "Rows already in OUT/cache.jsonl are not measured again.")
    p.add_argument("input", metavar="DIR", help="folder of lossless images (e.g. the 24 Kodak PNGs)")
    p.add_argument("--out", required=True, help="output folder (also holds the cache)")
    p.add_argument("--models", default=None, help="comma-separated learned models (default: every shipped model; "
                   "'none' for none); NAME+refineN: the model with N steps of encoder refinement (compress "
                   "--refine N)")
    p.add_argument("--codecs", default=DEFAULT_CODECS, help=f"classical codecs (default {DEFAULT_CODECS}; 'none')")
    p.add_argument("--qualities", type=numbers, default=numbers(DEFAULT_QUALITIES),
                   help=f"learned-model qualities in [0, 1] (default {DEFAULT_QUALITIES})")
    p.add_argument("--sweep", type=_sweep, action="append", default=[], metavar="CODEC=Q1,Q2,...",
                   help="replace a classical codec's or a learned model's qualities, e.g. jpeg=10,50,90 or "
                        "fidelity+refine50=0,0.25,0.5,0.75,1 (repeatable)")
    p.add_argument("--compare", action="append", default=[], metavar="[NAME=]FILE",
                   help="also set the models against the curve(s) of a results file in CompressAI's format (what "
                        "compressai.utils.eval_model writes, or its published Kodak results; a file with several "
                        "under \"curves\" gives them all): BD-rates, tables and plots, with the file's numbers "
                        "as they are (repeatable; NAME renames a one-curve file)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes, one image each (default 1)")
    p.add_argument("--no-st-lpips", action="store_true", help="skip ST-LPIPS (the slowest metric)")
    p.add_argument("--no-report", action="store_true",
                   help="only the CSV and JSON, no plots or HTML (an earlier report in OUT is removed)")
    p.add_argument("--crops", type=int_at_least(0), default=3,
                   help="images with side-by-side crops in the report (default 3)")
    p.add_argument("--crop-bpp", type=positive_number, default=0.25,
                   help="rate the crops are matched at (default 0.25)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)
    return p


def _fmt(value: float | None, digits: int) -> str:
    if value is not None and value == math.inf:  # identical images' PSNR: measured, not missing
        return "inf"
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _compared_curves(specs: list[str], measured: set[str], option: str = "--compare ") -> dict[str, dict]:
    """The curves of the ``[NAME=]FILE`` specs (``--compare``'s), each name used once and none of
    ``measured``; UsageError, naming ``option``, for a bad file or name."""
    from ..errors import UsageError
    from .compressai_format import ResultsFormatError, read_curves

    curves: dict[str, dict] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or Path(spec).is_file():  # a path holding "=" is a path
            name, path = None, spec
        elif not name.strip():
            raise UsageError(f"{option}{spec}: empty NAME")
        try:
            found = read_curves(path, name.strip() if name else None)
        except ResultsFormatError as exc:
            raise UsageError(f"{option.strip() or 'results file'}: {exc}") from None
        for key in found:
            if key in curves or key in measured:
                raise UsageError(f"{option}{spec}: a curve named {key!r} is already given; "
                                 f"rename it with {option}NAME=FILE")
        curves.update(found)
    return curves


def _remove_if_empty(out: Path) -> None:
    """Remove the output folder a run made when it stopped before measuring a row (a bad first
    image, a Ctrl+C at once): it is left only when it holds rows the next run reuses."""
    try:
        if all(p.is_file() and p.stat().st_size == 0 for p in out.iterdir()):
            shutil.rmtree(out)
    except OSError:  # gone already, or unreadable: left as it is
        pass


def cmd_eval(args: argparse.Namespace) -> int:
    """Run the sweep (and report); returns the exit code."""
    import torch

    from ..errors import UsageError
    from ..zoo import shipped_models
    from .classical import CodecUnavailableError, get_codec
    from .report import (CROPS_FOLDER, REPORT_FILES, anchors_sentence, load_anchors, remove_report, write_markdown,
                         write_report)
    from .runner import IMAGE_SUFFIXES, SWEEP_FILES, SWEEP_FOLDERS, check_outputs, run_sweep

    if getattr(args, "threads", None) not in (None, 1):  # the times' notes, and the cached rows, are of one thread
        raise UsageError("eval measures on one thread a worker, as the classical codecs run (its times say so, and "
                         "its cache mixes no other): drop --threads, and use --jobs N to measure N images at once")
    torch.set_num_threads(1)  # the measurement protocol: one thread, like the classical codecs
    models = names(args.models) if args.models is not None else shipped_models()
    codecs = names(args.codecs)
    if not models and not codecs:
        raise UsageError("nothing to evaluate: give --models or --codecs")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    sweeps = dict(args.sweep)
    unknown = set(sweeps) - set(codecs) - set(models)
    if unknown:
        raise UsageError(f"--sweep for codec(s) not in --codecs or --models: {', '.join(sorted(unknown))}")
    for name in set(sweeps) & set(codecs):
        lo, hi = get_codec(name).quality_range  # checked before --out is made, not at the first encode
        if any(q != int(q) or not lo <= q <= hi for q in sweeps[name]):
            raise UsageError(f"--sweep {name}=...: {name}'s qualities are integers from {lo} to {hi}")
    codec_sweeps = {k: [int(q) for q in v] for k, v in sweeps.items() if k in codecs}
    model_sweeps = {k: v for k, v in sweeps.items() if k in models}
    unswept = [m for m in models if m not in model_sweeps]
    if unswept and not args.qualities:  # it measured nothing and rewrote OUT's tables and report empty
        raise UsageError(f"--qualities: no quality to measure {', '.join(unswept)} at (give e.g. 0,0.5,1)")
    if not Path(args.input).is_dir():
        raise UsageError(f"{args.input} is not a folder")
    if Path(args.out).resolve() == Path(args.input).resolve():
        raise UsageError(f"--out {args.out} is the image folder: the report's figures would be measured as images "
                         "and written over images of the same name; choose another folder")
    external = _compared_curves(args.compare, set(models) | set(codecs))
    report = not args.no_report
    curves = tuple(f"compressai/{name}.json" for name in [*models, *codecs])  # each measured curve's file
    written = {(Path(args.out) / curve).resolve(): curve for curve in curves}
    for curve in external.values():  # --compare old=OUT/compressai/fidelity.json: replaced by this run's curve
        clash = curve.get("source") and written.get(Path(curve["source"]).resolve())
        if clash:
            raise UsageError(f"--compare {curve['source']} is the {clash} this run writes: copy it out of "
                             f"{args.out} first, so that it is compared rather than replaced")
    check_outputs(Path(args.out), SWEEP_FILES + ("table.md",) + curves + (REPORT_FILES if report else ()),
                  SWEEP_FOLDERS + ((CROPS_FOLDER,) if report and args.crops else ()))
    # read before measuring: a damaged anchors file stopped the run after the sweep, with the report undrawn
    anchors = load_anchors() if report else {}
    made_out = not Path(args.out).exists()
    try:
        result = run_sweep(args.input, args.out, models=models, qualities=args.qualities, codecs=codecs,
                           codec_qualities=codec_sweeps, limit=args.limit, jobs=args.jobs,
                           st_lpips=not args.no_st_lpips, progress=not args.quiet, model_qualities=model_sweeps,
                           external=external)
    except BaseException as exc:  # a bad image, Ctrl+C: the rows measured before it stay cached for the next run
        if made_out:
            _remove_if_empty(Path(args.out))
        if isinstance(exc, (FileNotFoundError, CodecUnavailableError)):
            raise UsageError(str(exc)) from None
        raise

    summary = result.summary
    if external and args.limit is not None:  # the files' curves are means over their own images
        print(f"note: the --compare curves are taken as they are, over the images they were measured on; this run "
              f"measured {len(summary['images'])} (--limit), so their BD-rates compare different images",
              file=sys.stderr)
    reused = f" ({result.from_csv} of them from the folder's earlier per_image.csv)" if result.from_csv else ""
    print(f"{len(summary['images'])} image(s): {result.computed} rows measured, {result.cached} from the cache"
          + reused)
    others = Counter(p.suffix.lower() or p.name for p in Path(args.input).iterdir()
                     if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_SUFFIXES)
    if others:  # a JPEG or WebP next to the PNGs is no source to measure codecs on: said, not skipped in silence
        kinds = ", ".join(f"{suffix} {count}" for suffix, count in sorted(others.items()))
        print(f"left alone: {sum(others.values())} file(s) that are not lossless images by their names ({kinds}; "
              f"eval measures {', '.join(IMAGE_SUFFIXES)})")
    width = max([12] + [len(name) for name in summary["curves"]])
    print(f"{'codec':>{width}} {'quality':>7} {'bpp':>7} {'PSNR':>6} {'MS-SSIM':>7} {'ST-LPIPS':>8} {'enc ms':>8} "
          f"{'dec ms':>7} {'peak MiB':>8}")
    for name, curve in summary["curves"].items():
        for p in curve["points"]:
            print(f"{name:>{width}} {p['quality']:>7g} {_fmt(p['bpp'], 4):>7} {_fmt(p['psnr'], 2):>6} "
                  f"{_fmt(p['ms_ssim'], 4):>7} {_fmt(p['st_lpips'], 4):>8} {_fmt(p['enc_ms'], 1):>8} "
                  f"{_fmt(p['dec_ms'], 1):>7} {_fmt(p['peak_mb'], 1):>8}")
    if summary["bd_rates"]:
        # summary.json's bd_rates: over every quality both curves reach, not the 0.15-1 bpp of
        # bd_rates_in_range (the README's, table.md's first table), which the line did not say
        print("BD-rate over all qualities both curves reach (PCHIP, %; negative = the learned model needs fewer "
              "bits; table.md also gives it over the anchor's "
              + "-".join(f"{r:g}" for r in summary["bd_rate_range"]) + " bpp):")
        for r in summary["bd_rates"]:
            print(f"  {r['test']} vs {r['anchor']}: PSNR {_fmt(r['psnr_pchip'], 1)}, MS-SSIM "
                  f"{_fmt(r['ms_ssim_pchip'], 1)}, ST-LPIPS {_fmt(r['st_lpips_pchip'], 1)}")
    print(f"wrote {result.csv_path}, {result.summary_path}, {result.out / 'compressai'}/*.json and "
          f"{write_markdown(args.out)}")
    if not report:  # an earlier run's report would describe other rows than this summary
        remove_report(args.out)
    else:
        if not anchors:
            print(f"note: {anchors_sentence(anchors)}")
        html = write_report(args.out, crops=args.crops, crop_bpp=args.crop_bpp, st_lpips=not args.no_st_lpips,
                            anchors=anchors)
        print(f"wrote {html}")
    return 0


def _rate_range(text: str) -> tuple[float, float]:
    values = numbers(text)
    if len(values) != 2 or not 0 < values[0] < values[1]:
        raise argparse.ArgumentTypeError(f"expected LO,HI with 0 < LO < HI (bpp), got {text!r}")
    return values[0], values[1]


def add_bdrate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``bdrate`` sub-command: BD-rates between results files, no measuring."""
    p = subparsers.add_parser(
        "bdrate", help="BD-rates between rate-quality curves in results files (CompressAI's format)",
        description="BD-rate of each TEST curve against each ANCHOR curve, on PSNR, MS-SSIM and ST-LPIPS "
                    "(PCHIP, and the cubic fit of VCEG-M33), read from results files as `edgecodec eval` writes "
                    "them (OUT/compressai/NAME.json) or CompressAI's eval_model does; a file holding several curves "
                    "under \"curves\" gives them all. Negative: the test needs fewer bits at equal quality. "
                    "Computed as eval's summary.json computes its BD-rates.")
    p.add_argument("anchor", metavar="[NAME=]ANCHOR", help="results file of the anchor curve(s)")
    p.add_argument("tests", nargs="+", metavar="[NAME=]TEST", help="results file(s) of the tested curve(s)")
    p.add_argument("--range", type=_rate_range, metavar="LO,HI", dest="rate_range",
                   help="only the qualities the anchor reaches from LO to HI bpp (eval's bd_rates_in_range "
                        "uses 0.15,1); default: all the qualities both curves reach")
    p.add_argument("--json", action="store_true", help="print the table as JSON (a list, one entry a pair)")
    p.set_defaults(func=cmd_bdrate)
    return p


def cmd_bdrate(args: argparse.Namespace) -> int:
    import json

    from .bdrate import METRICS
    from .summary import bd_rate_table

    anchors = _compared_curves([args.anchor], set(), option="")
    tests = _compared_curves(args.tests, set(anchors), option="")
    curves = {**{name: {**curve, "kind": "external"} for name, curve in anchors.items()},
              **{name: {**curve, "kind": "learned"} for name, curve in tests.items()}}
    table = bd_rate_table(curves, args.rate_range)
    if args.json:
        print(json.dumps([{key: None if isinstance(v, float) and math.isnan(v) else v for key, v in row.items()}
                          for row in table], indent=2))
        return 0
    span = "all shared qualities" if args.rate_range is None else f"{args.rate_range[0]:g}-{args.rate_range[1]:g} bpp"
    print(f"BD-rate, % bits at equal quality (PCHIP; cubic in brackets), {span}; n/a: no common range or metric")
    width = max(len(name) for name in curves)
    print(f"{'test':<{width}}  {'anchor':<{width}}  " + "  ".join(f"{m.upper().replace('_', '-'):>17}" for m in METRICS))
    for row in table:
        cells = [_signed(row[f"{m}_pchip"]) + ("" if math.isnan(row[f"{m}_cubic"]) else f" ({_signed(row[f'{m}_cubic'])})")
                 for m in METRICS]
        print(f"{row['test']:<{width}}  {row['anchor']:<{width}}  " + "  ".join(f"{c:>17}" for c in cells))
    return 0


def _signed(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.2f}%"


def add_metrics_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``metrics`` sub-command: one original against decoded or coded files of any codec."""
    p = subparsers.add_parser(
        "metrics", help="bpp (file bytes), PSNR, SSIM, MS-SSIM and ST-LPIPS of files against their original",
        description="Compare files of any codec that Pillow reads (.edc, JPEG, WebP, AVIF, JPEG XL, HEIC, PNG ...) with "
                    "the original they were made from, as `edgecodec eval` measures: bits per pixel of each "
                    "file's bytes, and the quality of its decoded RGB image. Both sides are read as compress "
                    "reads images (EXIF orientation applied, alpha dropped).")
    p.add_argument("reference", help="the original image")
    p.add_argument("files", nargs="+", help="coded or decoded images of the same size")
    p.add_argument("--st-lpips", action="store_true", help="also ST-LPIPS (AlexNet, shift-tolerant; slower)")
    p.add_argument("--region", type=region, metavar="LEFT,TOP,WIDTH,HEIGHT",
                   help="measure the quality in this part of the images only (e.g. a region of interest coded "
                        "with compress --roi); bpp stays the whole file's")
    p.add_argument("--json", action="store_true", help="print the figures as JSON, a list with one entry a file")
    p.set_defaults(func=cmd_metrics)
    return p


def _decoded_rgb(name: str):
    """A file's decoded 8-bit RGB, as compress reads images; an .edc file through the codec itself,
    so that its failure keeps its own error (and exit code: damaged 4, newer version 5, other
    weights 6, unknown model 9) instead of Pillow's "cannot identify image"."""
    from ..codec.api import decompress
    from ..codec.container import MAGIC
    from ..codec.imageio import load_image
    from ..errors import EdgecodecError

    path = Path(name)
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) == MAGIC:
                try:
                    image = decompress(path)
                except EdgecodecError as exc:
                    raise type(exc)(f"{name}: {exc}") from None
                return load_image(image, alpha="drop").rgb
    return load_image(name, alpha="drop").rgb  # its errors name the file (no such file, not an image)


def cmd_metrics(args: argparse.Namespace) -> int:
    """Measure each file against the reference. One file fails with its own error; of several,
    the readable ones are measured and the others listed on stderr (exit 10, as info)."""
    import json

    from ..codec.imageio import load_image
    from ..errors import EdgecodecError, InputImageError, UsageError
    from ..lite.tiles import check_region, crop_region
    from ..metrics import ms_ssim, psnr, ssim
    from .summary import json_safe

    # "-" is standard input to compress, decompress and info; metrics counts files' bytes and reads
    # no stream ("-" was "no such file: -", exit 3)
    if args.reference == "-":
        raise UsageError("metrics reads files: give the original's path, not -")
    if "-" in args.files:
        raise UsageError("metrics reads files: give the coded or decoded files' paths, not -")
    reference = load_image(args.reference, alpha="drop").rgb
    height, width = reference.shape[:2]
    part = check_region(args.region, width, height) if args.region else None
    lpips = None
    if args.st_lpips:
        from .runner import STLPIPS

        lpips = STLPIPS()
    rows = []  # a failed file: {"file", "error"}, in the JSON list too
    for name in args.files:
        try:
            decoded = _decoded_rgb(name)
            if decoded.shape != reference.shape:
                raise InputImageError(f"{name} is {decoded.shape[1]}x{decoded.shape[0]}, the reference "
                                      f"{width}x{height}")
            size = Path(name).stat().st_size
        except EdgecodecError as exc:  # the errors name the file
            if len(args.files) == 1:
                raise
            rows.append({"file": name, "error": str(exc)})
            continue
        ref, decoded = crop_region(reference, part), crop_region(decoded, part)
        rows.append({"file": name, "bytes": size, "bpp": 8 * size / (width * height),
                     "psnr": psnr(ref, decoded), "ssim": ssim(ref, decoded), "ms_ssim": ms_ssim(ref, decoded),
                     "st_lpips": lpips(ref, decoded) if lpips is not None else None,
                     **({"region": list(part)} if part else {})})
    if args.json:
        # JSON has no infinity: "inf" (identical images' PSNR), as summary.json writes it; null is
        # "not measured" (MS-SSIM of an image under 161 px)
        print(json.dumps(json_safe(rows, digits=None), indent=2))
    for r in [] if args.json else [r for r in rows if "error" not in r]:
        lpips_text = f", ST-LPIPS {_fmt(r['st_lpips'], 4)}" if lpips is not None else ""
        where = f" in {','.join(map(str, part))}" if part else ""
        print(f"{r['file']}: {r['bytes']:,} bytes, {r['bpp']:.4f} bpp, PSNR{where} {_fmt(r['psnr'], 2)} dB, "
              f"SSIM {_fmt(r['ssim'], 4)}, MS-SSIM {_fmt(r['ms_ssim'], 4)}{lpips_text}")
    failed = [r for r in rows if "error" in r]
    for r in failed:
        print(one_line(f"failed: {r['error']}"), file=sys.stderr)
    return EXIT_PARTIAL if failed else 0


__all__ = ["add_eval_parser", "add_metrics_parser", "cmd_eval", "cmd_metrics"]
