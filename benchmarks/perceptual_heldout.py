"""Does the perceptual model's ST-LPIPS lead hold on a perceptual metric it was not trained on?

    python benchmarks/perceptual_heldout.py [--rates 0.15 0.3 0.5] [--images 24]
                                            [--models perceptual fidelity] [--codecs jpeg webp avif]

``perceptual`` is trained on ST-LPIPS with the AlexNet trunk (``stlpips-alex``), the metric its
targets are stated in. A model can lower the metric it is trained on without looking better
(benchmarks/refine_perceptual.py shows encoder refinement doing just that), so this measures
every Kodak image, at each rate, with the trained-on metric and a held-out one: ST-LPIPS with the
VGG-16 trunk (``stlpips-vgg``), whose weights ship in the same wheel. Each learned model and
classical codec is encoded to the largest file within ``rate`` bits per pixel (the evaluation's
matched-rate rule), and JPEG also within twice the rate (the issue's bar). Prints the mean of each
metric per rate and codec and writes ``benchmarks/results/perceptual_heldout.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from common import machine, run_main, write_results
from edgecodec.argtypes import int_at_least, positive_number

REPO = Path(__file__).resolve().parent.parent
KODAK = REPO.parent / "shared/data/kodak"
METRICS = ("bpp", "psnr", "st_lpips_alex", "st_lpips_vgg")


def main() -> None:
    from edgecodec.eval import classical

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=positive_number, nargs="+", default=[0.15, 0.3, 0.5],
                        help="rates in bits per pixel; each file is the largest within the rate "
                             "(default 0.15 0.3 0.5)")
    parser.add_argument("--images", type=int_at_least(1), default=24,
                        help="the first N Kodak images (default %(default)s)")
    parser.add_argument("--models", nargs="+", default=["perceptual", "fidelity"],
                        help="learned models to measure (default perceptual fidelity)")
    parser.add_argument("--codecs", nargs="*", default=["jpeg", "webp", "avif"], choices=["none", *classical.CODECS],
                        help="classical codecs at the same rate (default jpeg webp avif); none (or nothing): "
                             "only JPEG at 2x")
    parser.add_argument("--threads", type=int_at_least(1), default=1, help="torch threads (default %(default)s)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/perceptual_heldout.json"),
                        help="results file (default benchmarks/results/perceptual_heldout.json)")
    args = parser.parse_args()

    import torch
    from PIL import Image

    import edgecodec
    from edgecodec import zoo
    from edgecodec.codec.api import decode_array
    from edgecodec.eval.classical import encode_to_size, get_codec
    from edgecodec.metrics import psnr
    from edgecodec.eval.runner import STLPIPS

    torch.set_num_threads(args.threads)
    alex, vgg = STLPIPS("stlpips-alex"), STLPIPS("stlpips-vgg")

    # label -> (encode within a byte budget, decode, the budget as a multiple of the rate)
    coders = {name: (lambda rgb, size, name=name: edgecodec.compress(rgb, model=name, target_size=size),
                     lambda data: decode_array(data)[0], 1) for name in args.models}
    for codec_name in [c for c in args.codecs if c != "none"]:
        codec = get_codec(codec_name)
        coders[codec.name] = (lambda rgb, size, c=codec: encode_to_size(c, rgb, size)[1], codec.decode, 1)
    jpeg = get_codec("jpeg")
    coders["jpeg@2x"] = (lambda rgb, size: encode_to_size(jpeg, rgb, size)[1], jpeg.decode, 2)

    rows = []
    start = time.perf_counter()
    for path in sorted(KODAK.glob("*.png"))[:args.images]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        pixels = rgb.shape[0] * rgb.shape[1]
        for rate in args.rates:
            for label, (encode, decode, multiple) in coders.items():
                data = encode(rgb, int(multiple * rate * pixels / 8))
                decoded = decode(data)
                rows.append({"image": path.stem, "rate": rate, "codec": label, "bpp": 8 * len(data) / pixels,
                             "psnr": psnr(rgb, decoded), "st_lpips_alex": alex(rgb, decoded),
                             "st_lpips_vgg": vgg(rgb, decoded)})
        print(f"{path.stem} done ({time.perf_counter() - start:.0f} s)", flush=True)

    summary = {}
    print(f"{'rate':>5} {'codec':>11} {'bpp':>6} {'PSNR':>6} {'alex':>7} {'vgg':>7}")
    for rate in args.rates:
        for label in coders:
            sel = [r for r in rows if r["rate"] == rate and r["codec"] == label]
            mean = {m: statistics.fmean(r[m] for r in sel) for m in METRICS}
            summary.setdefault(str(rate), {})[label] = mean
            print(f"{rate:5.2f} {label:>11} {mean['bpp']:6.3f} {mean['psnr']:6.2f} "
                  f"{mean['st_lpips_alex']:7.4f} {mean['st_lpips_vgg']:7.4f}")
    weights = {name: zoo.load_model(name)[1].hex() for name in args.models}
    write_results(args.out, {"machine": machine(), "threads": args.threads, "images": len(sorted(KODAK.glob("*.png"))[:args.images]), "weights": weights,
                             "seconds": round(time.perf_counter() - start), "summary": summary, "rows": rows})


if __name__ == "__main__":
    run_main(main)
