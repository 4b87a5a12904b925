"""Wall times the README quotes for the codec's features, measured by one script rather than by hand.

    python benchmarks/feature_timings.py [--threads 1,2] [--parts search,refine,tiled,jobs]

Parts (each on the CPU, through the public API unless said otherwise; medians of --repeats runs
after one warm-up where a part is short):
- ``search``: kodim23 compressed with ``fidelity`` to ``target_psnr=35`` and with ``perceptual`` to
  ``target_ms_ssim=0.98`` (``edgecodec.compress``), the score search's encodes and decodes included.
- ``refine``: kodim23 with ``fidelity`` at quality 0.5 (``Encoder(..., refine_steps=N).encode``),
  unrefined (median of ``--repeats``) and with ``--refine-steps`` steps (one run: it is long);
  seconds a step = (refined - unrefined) / steps.
- ``tiled``: a 4000 x 3000 mosaic of the Kodak images (``large.make_mosaic``, tiled coding) coded
  with each shipped model at quality 0.5 and decoded whole (``decode_array``), and a 640 x 480
  region at its centre (``decode_array(..., region=...)``).
- ``jobs``: whole ``edgecodec compress`` / ``decompress`` commands on the 24 Kodak images (a
  folder, ``perceptual`` at the default quality) with ``--jobs 1`` and ``--jobs 2`` (start-up
  included; ``startup_s`` is a fresh process importing the codec and loading the model).
The API parts run at each of ``--threads`` (torch's thread count; tiled images use one window per
thread). Writes ``benchmarks/results/feature_timings.json``; figures are only comparable on one CPU
(``common.machine``) with the other cores idle.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from common import machine, run_main, thread_counts, write_results

from edgecodec.argtypes import int_at_least

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
KODAK = REPO.parent / "shared" / "data" / "kodak"
RESULTS = REPO / "benchmarks" / "results" / "feature_timings.json"
PARTS = ("search", "refine", "tiled", "jobs")


def timed(fn: Callable[[], object], repeats: int = 1, warmup: bool = False) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls (after one untimed call if ``warmup``) and the last result."""
    if warmup:
        fn()
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 2), result


def search_rows(image: Path, threads: int, repeats: int) -> list[dict]:
    import edgecodec
    from edgecodec.codec.api import decode_array
    from edgecodec.codec.imageio import load_image
    from edgecodec.metrics import ms_ssim, psnr

    ref = load_image(image).rgb
    rows = []
    for model, metric, target in (("fidelity", "psnr", 35.0), ("perceptual", "ms-ssim", 0.98)):
        key = "target_psnr" if metric == "psnr" else "target_ms_ssim"
        seconds, data = timed(lambda: edgecodec.compress(image, model=model, **{key: target}), repeats, warmup=True)
        out, header = decode_array(data)
        score = psnr(ref, out) if metric == "psnr" else ms_ssim(ref, out)
        rows.append({"part": "search", "image": image.name, "model": model, "threads": threads, "metric": metric,
                     "target": target, "seconds": seconds, "reached": round(float(score), 4),
                     "quality": round(header.quality, 4), "bytes": len(data)})
    return rows


def refine_rows(image: Path, threads: int, steps: int, repeats: int) -> list[dict]:
    from edgecodec.codec.api import Encoder, quality_to_q16
    from edgecodec.codec.imageio import load_image

    prepared = load_image(image)
    plain_s, plain = timed(lambda: Encoder(prepared, "fidelity").encode(quality_to_q16(0.5)), repeats, warmup=True)
    refined_s, refined = timed(lambda: Encoder(prepared, "fidelity", refine_steps=steps).encode(quality_to_q16(0.5)))
    return [{"part": "refine", "image": image.name, "model": "fidelity", "quality": 0.5, "threads": threads,
             "steps": steps, "unrefined_s": plain_s, "refined_s": refined_s,
             "seconds_per_step": round((refined_s - plain_s) / steps, 3),
             "bytes_unrefined": len(plain), "bytes_refined": len(refined)}]


def tiled_rows(threads: int, repeats: int, png: Path) -> list[dict]:
    from edgecodec.zoo import shipped_models

    return [row for model in shipped_models() for row in tiled_model_rows(model, threads, repeats, png)]


def tiled_model_rows(model: str, threads: int, repeats: int, png: Path) -> list[dict]:
    import edgecodec
    from edgecodec.codec.api import decode_array

    seconds_enc, data = timed(lambda: edgecodec.compress(png, quality=0.5, model=model))
    decode_s, (whole, header) = timed(lambda: decode_array(data), repeats, warmup=True)
    width, height = 640, 480
    box = ((header.width - width) // 2, (header.height - height) // 2, width, height)
    region_s, (part, _) = timed(lambda: decode_array(data, region=box), repeats, warmup=True)
    assert (part == whole[box[1]:box[1] + height, box[0]:box[0] + width]).all(), "region differs from the crop"
    return [{"part": "tiled", "size": f"{header.width}x{header.height}", "tile": header.tile, "threads": threads,
             "model": model, "quality": 0.5, "bytes": len(data), "encode_s": seconds_enc,
             "decode_s": decode_s, "region": list(box), "region_decode_s": region_s}]


def jobs_rows(folder: Path, repeats: int) -> list[dict]:
    cli = [sys.executable, "-m", "edgecodec.cli", "--threads", "1"]
    startup = [sys.executable, "-c", "from edgecodec import zoo; zoo.load_model('perceptual')"]
    rows = [{"part": "jobs", "command": "startup", "startup_s": timed(lambda: subprocess.run(startup, check=True),
                                                                         repeats, warmup=True)[0]}]
    with tempfile.TemporaryDirectory() as tmp:
        coded = Path(tmp) / "coded"
        subprocess.run([*cli, "compress", str(folder), "-o", str(coded), "-q"], check=True)
        for jobs in (1, 2):
            def compress() -> None:
                subprocess.run([*cli, "compress", str(folder), "-o", str(Path(tmp) / "c"), "--jobs", str(jobs),
                                "--force", "-q"], check=True)

            def decompress() -> None:
                subprocess.run([*cli, "decompress", str(coded), "-o", str(Path(tmp) / "d"), "--jobs", str(jobs),
                                "--force", "-q"], check=True)

            rows.append({"part": "jobs", "images": len(list(folder.glob("*.png"))), "jobs": jobs,
                         "compress_s": timed(compress, repeats)[0], "decompress_s": timed(decompress, repeats)[0]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=thread_counts, default="1,2",
                        help="comma-separated torch thread counts for the API parts (default %(default)s)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated parts to run, of {','.join(PARTS)} (default: all)")
    parser.add_argument("--image", type=Path, default=KODAK / "kodim23.png",
                        help="image of the search and refine parts (default kodim23)")
    parser.add_argument("--refine-steps", type=int_at_least(1), default=50,
                        help="refinement steps of the refine part's refined encode (default %(default)s)")
    parser.add_argument("--repeats", type=int_at_least(1), default=3,
                        help="timed runs of each short measurement, their median recorded (default %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="results file (default benchmarks/results/feature_timings.json)")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    if not parts:  # it measured nothing and wrote an empty results file
        parser.error("argument --parts: expected at least one part")
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")

    import numpy as np
    import torch
    from large import make_mosaic
    from PIL import Image

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        mosaic = Path(tmp) / "mosaic-4000x3000.png"
        if "tiled" in parts:
            Image.fromarray(np.ascontiguousarray(make_mosaic(KODAK, 4000, 3000))).save(mosaic)
        for threads in args.threads:
            torch.set_num_threads(threads)
            if "search" in parts:
                rows += search_rows(args.image, threads, args.repeats)
            if "refine" in parts:
                rows += refine_rows(args.image, threads, args.refine_steps, args.repeats)
            if "tiled" in parts:
                rows += tiled_rows(threads, args.repeats, mosaic)
    if "jobs" in parts:
        rows += jobs_rows(KODAK, args.repeats)
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    write_results(args.out, {**machine(), "results": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
