"""The torch-free encoder (edgecodec.lite.LiteEncoder) against the PyTorch encoder, on Kodak.

    python benchmarks/lite_encoder.py [--models perceptual,fidelity] [--qualities 0,0.5,1] [--images N]
                                      [--threads 1,2] [--out FILE]

For every Kodak image, model and quality: whether the lite encoder's file is byte-identical to
``edgecodec.compress``'s, and where it is not, how many latent values differ (both files decoded by
the lite decoder) and the size ratio. Then the encode time of kodim23 at quality 0.5 (median of 11,
after a warm-up), lite at each of ``--threads`` onnxruntime threads and PyTorch at each of them
torch threads (default 1 and 2); and of kodim23 scaled to 2048 x 1366 (bicubic; coded in tiles by
both encoders), median of 3 at the most threads, with whether the two files are identical (the
comparison's encoders and decoder also run at the most threads). Prints a summary and writes
``benchmarks/results/lite_encoder.json`` (``--out``); ``--images N`` compares the first N images only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common import machine, quality_list, run_main, thread_counts, write_results
from edgecodec.argtypes import int_at_least
from PIL import Image

import edgecodec
from edgecodec.export.onnx import ensure_export
from edgecodec.lite import LiteDecoder, LiteEncoder

KODAK = Path(__file__).resolve().parents[2] / "shared/data/kodak"


def median_ms(fn, runs: int = 11) -> float:
    fn()  # warm-up: sessions, first kernels
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return round(statistics.median(times), 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="perceptual,fidelity", help="comma-separated models (default %(default)s)")
    parser.add_argument("--qualities", type=quality_list, default="0,0.5,1",
                        help="comma-separated qualities compared on every image (default 0,0.5,1)")
    parser.add_argument("--images", type=int_at_least(1), default=None,
                        help="compare the first N Kodak images only (default all 24; timings use kodim23)")
    parser.add_argument("--threads", type=thread_counts, default="1,2",
                        help="comma-separated thread counts both encoders are timed at; the 2048 x 1366 image "
                             "and the comparison at the most (default %(default)s)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results/lite_encoder.json"),
                        help="results file (default benchmarks/results/lite_encoder.json)")
    args = parser.parse_args(argv)
    threads = sorted(set(args.threads))
    most = threads[-1]
    qualities = args.qualities
    images = {p.name: np.array(Image.open(p).convert("RGB")) for p in sorted(KODAK.glob("*.png"))[:args.images]}
    kodim23 = images.get("kodim23.png")  # the timings' image, read again only when --images leaves it out
    if kodim23 is None:
        kodim23 = np.array(Image.open(KODAK / "kodim23.png").convert("RGB"))
    result = {"machine": machine(), "images": len(images), "qualities": qualities, "models": {}}
    for model in args.models.split(","):
        export = ensure_export(model)
        encoder, decoder = LiteEncoder(export, threads=most), LiteDecoder(export, threads=most)
        torch.set_num_threads(most)  # the comparison's PyTorch encoder too (torch's default is the cores)
        identical, differing_values, values, ratios = 0, 0, 0, []
        for rgb in images.values():
            for q in qualities:
                lite, reference = encoder.encode(rgb, q), edgecodec.compress(rgb, quality=q, model=model)
                if lite == reference:
                    identical += 1
                    continue
                a, b = decoder.decode_latent(lite).y_hat, decoder.decode_latent(reference).y_hat
                differing_values += int((a != b).sum())
                values += a.size
                ratios.append(len(lite) / len(reference))
        rgb = kodim23
        times = {f"lite_{t}t": median_ms(lambda e=LiteEncoder(export, threads=t): e.encode(rgb, 0.5)) for t in threads}
        for t in threads:
            torch.set_num_threads(t)
            times[f"torch_{t}t"] = median_ms(lambda: edgecodec.compress(rgb, quality=0.5, model=model))
        torch.set_num_threads(most)
        large = np.array(Image.fromarray(rgb).resize((2048, 1366), Image.BICUBIC))
        lite_large = LiteEncoder(export, threads=most)
        times[f"large_lite_{most}t"] = median_ms(lambda: lite_large.encode(large, 0.5), runs=3)
        times[f"large_torch_{most}t"] = median_ms(lambda: edgecodec.compress(large, quality=0.5, model=model),
                                                 runs=3)
        large_identical = lite_large.encode(large, 0.5) == edgecodec.compress(large, quality=0.5, model=model)
        runs = len(images) * len(qualities)
        result["models"][model] = {
            "files": runs, "identical_files": identical, "differing_latent_values": differing_values,
            "latent_values_of_differing_files": values,
            "size_ratio_of_differing_files": [min(ratios), max(ratios)] if ratios else None,
            "kodim23_q0.5_encode_ms": times, "large_2048x1366_identical": large_identical}
        print(f"{model}: {identical}/{runs} files byte-identical; the others differ in {differing_values} of "
              f"{values} latent values, size ratio {result['models'][model]['size_ratio_of_differing_files']}; "
              f"encode ms: {times}; 2048 x 1366 (tiled) identical: {large_identical}")
    print(f"wrote {write_results(args.out, result)}")


if __name__ == "__main__":
    run_main(main)
