"""What a region of interest costs and buys: Kodak images coded with a quality map.

    python benchmarks/roi.py [--models fidelity,perceptual] [--background 0.2] [--region 0.8]
                             [--small 48,96,160] [--limit N] [--threads 1]

Each image's region is its central rectangle, a third of its width and height (on a 768 x 512
image 256 x 170 pixels, which the map covers, with its 8-pixel margin, with 18 x 12 latent pixels
of 16 x 16, 14% of the area; the latent pixels that only the margin reaches get 0.75 of the way
from the background's quality to the region's, ``lite.qmap.MARGIN_WEIGHT``). Three files per
image and model, from one analysis (``api.Encoder``): the whole image at the background quality,
at the region's quality, and at the background's with the region at its own (what
``compress(..., roi=...)`` writes); and a fourth at one quality with the roi file's size
(``target_size``), what the same bytes buy without a map. Measured: bytes; PSNR inside the
rectangle and in the background (the pixels outside the map's region).

Small regions (``--small``, squares of these sides at seeded random places, one of each per image):
the map per latent pixel with its margin (format version 7, what ``compress`` writes) against
the map per 64 x 64 cell that format version 5 held (every cell the square touches, no margin):
the bytes each adds to the background file, and the square's PSNR, beside the whole image at the
region's quality. Prints the means and writes ``benchmarks/results/roi.json``.

``--margin M`` and ``--margin-weight W`` measure another margin than ``compress``'s 8 pixels
(``lite.qmap.MARGIN``) at 0.75 (``MARGIN_WEIGHT``).
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

import numpy as np
from common import machine, run_main, whole_numbers, write_results
from edgecodec.argtypes import int_at_least, unit_interval

REPO = Path(__file__).resolve().parent.parent
NAMES = ("background", "roi", "region", "same_size")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default=str(REPO.parent / "shared/data/kodak"),
                        help="folder of the Kodak PNG images (default ../shared/data/kodak)")
    parser.add_argument("--models", default="fidelity,perceptual", help="comma-separated models (default %(default)s)")
    parser.add_argument("--background", type=unit_interval, default=0.2,
                        help="quality outside the region, 0 to 1 (default %(default)s)")
    parser.add_argument("--region", type=unit_interval, default=0.8,
                        help="quality of the region, 0 to 1 (default %(default)s)")
    parser.add_argument("--small", type=whole_numbers(1), default="48,96,160",
                        help="comma-separated sides in pixels of the small square regions "
                             "(empty: none; default %(default)s)")
    parser.add_argument("--margin", type=int_at_least(0), default=None,
                        help="pixels of margin around the regions, 0 or more (default: compress's)")
    parser.add_argument("--margin-weight", type=unit_interval, default=None,
                        help="how far the margin's quality goes from the background's to the region's, "
                             "0 to 1 (default: compress's)")
    parser.add_argument("--limit", type=int_at_least(1), default=None, help="only the first N images")
    parser.add_argument("--threads", type=int_at_least(1), default=1, help="torch threads (default %(default)s)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/roi.json"),
                        help="results file (default benchmarks/results/roi.json)")
    parser.add_argument("--figure", metavar="PNG", help="only draw the README's figure (docs/roi.png): kodim23 "
                                                        "with a region on the parrots' heads, --models' first model")
    args = parser.parse_args()
    if args.figure:  # it draws what compress writes, on kodim23, into PNG: these options do not apply
        defaults = vars(parser.parse_args([]))  # typed, as the options given are
        unused = [option for option in ("--small", "--margin", "--margin-weight", "--limit", "--out")
                  if getattr(args, option[2:].replace("-", "_")) != defaults[option[2:].replace("-", "_")]]
        if unused:
            parser.error(f"--figure draws what compress writes, with its own margin: {', '.join(unused)} "
                         "do not apply to it")

    import torch
    from PIL import Image

    import edgecodec
    from edgecodec.codec import api
    from edgecodec.lite.qmap import CELL, LATENT_STRIDE, MARGIN, MARGIN_WEIGHT, RegionsOfInterest
    from edgecodec.metrics import psnr

    torch.set_num_threads(args.threads)
    if args.figure:
        write_figure(Path(args.figure), Path(args.kodak) / "kodim23.png", (400, 130, 150, 150),
                     args.models.split(",")[0], args.background, args.region)
        return
    paths = sorted(Path(args.kodak).glob("*.png"))[: args.limit]
    if not paths:  # the summary's means had nothing to average: an IndexError after the models loaded
        parser.error(f"--kodak: no PNG images in {args.kodak}")
    sides = args.small
    if any(side >= 512 for side in sides):  # a square must fit in every Kodak image (768 x 512)
        parser.error(f"--small: sides from 1 to 511 pixels, got {','.join(map(str, sides))}")
    margin = (MARGIN if args.margin is None else args.margin,
              MARGIN_WEIGHT if args.margin_weight is None else args.margin_weight)
    background_q16, region_q16 = api.quality_to_q16(args.background), api.quality_to_q16(args.region)
    rows = []
    for model in args.models.split(","):
        for index, path in enumerate(paths):
            rgb = np.asarray(Image.open(path).convert("RGB"))
            h, w = rgb.shape[:2]
            rect = (w // 3, h // 3, w // 3, h // 3)
            inside = (slice(rect[1], rect[1] + rect[3]), slice(rect[0], rect[0] + rect[2]))
            started = time.perf_counter()
            encoder = api.Encoder(api.load_image(rgb), model)  # one analysis for every file of the image
            files = {"background": encoder.encode(background_q16), "region": encoder.encode(region_q16)}
            encoder.roi = RegionsOfInterest.of([rect], w, h, args.region, *margin)
            files["roi"] = encoder.encode(background_q16)
            # the map's region: the pixels of latent pixels above the background's quality
            cells = np.kron(encoder.roi.weights > 0, np.ones((LATENT_STRIDE, LATENT_STRIDE), bool))[:h, :w]
            # the whole image at one quality, with as many bytes as the roi file
            files["same_size"] = edgecodec.compress(rgb, model=model, target_size=len(files["roi"]))
            decoded = {name: api.decode_array(data)[0] for name, data in files.items()}
            row = {"model": model, "image": path.name, "width": w, "height": h, "rect": rect,
                   "cells_fraction": float(cells.mean()),
                   "seconds": time.perf_counter() - started}
            for name, data in files.items():
                row[f"{name}_bytes"] = len(data)
                row[f"{name}_psnr_inside"] = psnr(decoded[name][inside], rgb[inside])
                row[f"{name}_psnr_background"] = psnr(decoded[name][~cells], rgb[~cells])
            rng = np.random.RandomState(index)
            row["small"] = []
            for side in sides:  # the same squares for every model: the seed is the image's index
                square = (int(rng.randint(0, w - side)), int(rng.randint(0, h - side)), side, side)
                part = (slice(square[1], square[1] + side), slice(square[0], square[0] + side))
                encoder.roi = RegionsOfInterest.of([square], w, h, args.region, *margin)
                fine = encoder.encode(background_q16)
                touched = np.zeros((-(-h // CELL), -(-w // CELL)))
                touched[square[1] // CELL: -(-(square[1] + side) // CELL),
                        square[0] // CELL: -(-(square[0] + side) // CELL)] = 1
                encoder.roi = RegionsOfInterest(np.kron(touched, np.ones((CELL // LATENT_STRIDE,) * 2)),
                                                encoder.roi.region_q16)
                coarse = encoder.encode(background_q16)
                entry = {"side": side, "rect": square}
                for name, data in (("latent16", fine), ("cells64", coarse)):
                    entry[f"{name}_extra_bytes"] = len(data) - len(files["background"])
                    entry[f"{name}_psnr"] = psnr(api.decode_array(data)[0][part], rgb[part])
                entry["region_psnr"] = psnr(decoded["region"][part], rgb[part])
                entry["background_psnr"] = psnr(decoded["background"][part], rgb[part])
                row["small"].append(entry)
            row["seconds"] = time.perf_counter() - started
            rows.append(row)
            print(f"{model} {path.name}: bytes {row['background_bytes']} / {row['roi_bytes']} / "
                  f"{row['region_bytes']}, inside {row['roi_psnr_inside']:.2f} dB "
                  f"(uniform {row['region_psnr_inside']:.2f}), background {row['roi_psnr_background']:.2f} dB "
                  f"(uniform {row['background_psnr_background']:.2f})", flush=True)
    summary = {}
    for model in args.models.split(","):
        mine = [r for r in rows if r["model"] == model]
        mean = lambda key: float(np.mean([r[key] for r in mine]))  # noqa: E731
        pixels = [r["width"] * r["height"] for r in mine]
        summary[model] = {
            "bpp": {name: float(np.mean([8 * r[f"{name}_bytes"] / p for r, p in zip(mine, pixels)]))
                    for name in NAMES},
            "psnr_inside": {name: mean(f"{name}_psnr_inside") for name in NAMES},
            "psnr_background": {name: mean(f"{name}_psnr_background") for name in NAMES},
            "cells_fraction": mean("cells_fraction"),
            # bytes of the roi file above the background file, as a share of what the region-quality
            # file adds over the background file
            "extra_bytes_share": float(np.mean([(r["roi_bytes"] - r["background_bytes"])
                                                / (r["region_bytes"] - r["background_bytes"]) for r in mine])),
        }
        s = summary[model]
        print(f"{model}: bpp {s['bpp']['background']:.3f} / {s['bpp']['roi']:.3f} / {s['bpp']['region']:.3f} "
              f"(background / roi / region quality); PSNR inside {s['psnr_inside']['roi']:.2f} dB "
              f"(uniform region quality {s['psnr_inside']['region']:.2f}, background quality "
              f"{s['psnr_inside']['background']:.2f}); background {s['psnr_background']['roi']:.2f} dB (uniform "
              f"{s['psnr_background']['background']:.2f}); {100 * s['extra_bytes_share']:.0f}% of the extra bytes "
              f"for {100 * s['cells_fraction']:.0f}% of the area; one quality at the roi file's size: "
              f"{s['bpp']['same_size']:.3f} bpp, inside {s['psnr_inside']['same_size']:.2f} dB, background "
              f"{s['psnr_background']['same_size']:.2f} dB")
        s["small"] = {}
        for side in sides:
            entries = [e for r in mine for e in r["small"] if e["side"] == side]
            m = {key: float(np.mean([e[key] for e in entries])) for key in entries[0] if key not in ("side", "rect")}
            s["small"][side] = m
            print(f"{model}, {side}x{side} squares: extra bytes {m['latent16_extra_bytes']:.0f} per latent pixel, "
                  f"{m['cells64_extra_bytes']:.0f} per 64-pixel cell "
                  f"({m['latent16_extra_bytes'] / m['cells64_extra_bytes'] - 1:+.0%}); "
                  f"PSNR {m['latent16_psnr']:.2f} / {m['cells64_psnr']:.2f} dB (whole image at the region's "
                  f"quality {m['region_psnr']:.2f}, at the background's {m['background_psnr']:.2f})")
    def given(value: object) -> str:  # as typed: a parsed list back to "48,96,160"
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)
    result = {"command": "python benchmarks/roi.py " + " ".join(
        f"--{k.replace('_', '-')} {shlex.quote(given(v))}" for k, v in vars(args).items()
        if k not in ("out", "kodak") and v is not None),
        "machine": machine(), "background_quality": args.background, "region_quality": args.region,
        "summary": summary, "images": rows}
    print(f"wrote {write_results(args.out, result)}")


def write_figure(path: Path, image: Path, rect: tuple[int, int, int, int], model: str, background: float,
                 region: float) -> None:
    """The image coded with the region at ``region`` and the rest at ``background``, beside it at
    one quality with as many bytes (both halved, the region outlined); below, the region's crops
    at twice the size: original, one quality, with the region."""
    from PIL import Image, ImageDraw

    import edgecodec
    from edgecodec.codec import api

    rgb = np.asarray(Image.open(image).convert("RGB"))
    roi = edgecodec.compress(rgb, quality=background, model=model, roi=[rect], roi_quality=region)
    same = edgecodec.compress(rgb, model=model, target_size=len(roi))
    left, top, w, h = rect
    panels = [(f"one quality, {len(same):,} bytes", api.decode_array(same)[0]),
              (f"background {background} + region {region}, {len(roi):,} bytes", api.decode_array(roi)[0])]
    crops = [("original", rgb)] + [(label.split(",")[0], pixels) for label, pixels in panels]
    gap, label_h = 4, 18
    half = (rgb.shape[1] // 2, rgb.shape[0] // 2)
    width = max(2 * half[0] + gap, 3 * 2 * w + 2 * gap)
    figure = Image.new("RGB", (width, 2 * label_h + half[1] + 2 * h + gap), "white")
    draw = ImageDraw.Draw(figure)
    for i, (label, pixels) in enumerate(panels):
        x = i * (half[0] + gap)
        figure.paste(Image.fromarray(pixels).resize(half, Image.LANCZOS), (x, label_h))
        draw.rectangle((x + left // 2, label_h + top // 2, x + (left + w) // 2, label_h + (top + h) // 2),
                       outline="red")
        draw.text((x + 2, 3), label, fill="black")
    y = 2 * label_h + half[1] + gap
    for i, (label, pixels) in enumerate(crops):
        x = i * (2 * w + gap)
        crop = Image.fromarray(np.ascontiguousarray(pixels[top: top + h, left: left + w]))
        figure.paste(crop.resize((2 * w, 2 * h), Image.NEAREST), (x, y))
        draw.text((x + 2, y - label_h + 3), f"region: {label}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path)
    print(f"wrote {path} ({model}: {len(same)} and {len(roi)} bytes)")


if __name__ == "__main__":
    run_main(main)
