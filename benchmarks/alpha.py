"""Bytes of the alpha coding (edgecodec/lite/alpha.py) against Pillow's PNG of the same plane.

    python benchmarks/alpha.py [--out benchmarks/results/alpha.json]

The masks are made here (the evaluation data has no transparency), 768 x 512 like a Kodak image:
hard-edged shapes, the same anti-aliased (Gaussian blur, radius 1.5) and as a soft shadow
(radius 12), a horizontal gradient, 8-pixel blocks, a photo matte (kodim23's luminance
thresholded, blurred by 1) and uniform noise. Each is checked to decode exactly. Prints a table and
writes ``benchmarks/results/alpha.json``.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from common import machine, run_main, write_results
from PIL import Image, ImageDraw, ImageFilter

from edgecodec.lite.alpha import decode_alpha, encode_alpha

KODAK = Path(__file__).resolve().parents[2] / "shared/data/kodak"
RESULTS = Path(__file__).resolve().parent / "results/alpha.json"


def masks() -> dict[str, np.ndarray]:
    shapes = Image.new("L", (768, 512), 0)
    draw = ImageDraw.Draw(shapes)
    draw.ellipse((100, 80, 600, 450), fill=255)
    draw.polygon([(50, 50), (300, 20), (200, 300)], fill=255)
    rng = np.random.RandomState(0)
    luma = np.array(Image.open(KODAK / "kodim23.png").convert("L"))
    return {
        "hard-edged shapes": np.array(shapes),
        "anti-aliased shapes": np.array(shapes.filter(ImageFilter.GaussianBlur(1.5))),
        "soft shadow": np.array(shapes.filter(ImageFilter.GaussianBlur(12))),
        "gradient": np.tile((np.arange(768) / 767 * 255).astype(np.uint8), (512, 1)),
        "8-pixel blocks": ((rng.rand(64, 96) > 0.7).repeat(8, 0).repeat(8, 1) * 255).astype(np.uint8),
        "kodim23 matte": np.array(Image.fromarray(((luma > 110) * 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(1))),
        "uniform noise": rng.randint(0, 256, (512, 768)).astype(np.uint8),
    }


def png_bytes(plane: np.ndarray) -> int:
    buf = io.BytesIO()
    Image.fromarray(plane, "L").save(buf, format="PNG", compress_level=9)
    return len(buf.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS), help="results file (default %(default)s)")
    args = parser.parse_args(argv)
    rows = []
    for name, plane in masks().items():
        start = time.perf_counter()
        coded = encode_alpha(plane)
        encode_ms = 1000 * (time.perf_counter() - start)
        start = time.perf_counter()
        assert np.array_equal(decode_alpha(coded, plane.shape[1], plane.shape[0]), plane), name
        decode_ms = 1000 * (time.perf_counter() - start)
        png = png_bytes(plane)
        rows.append({"mask": name, "edgecodec_bytes": len(coded), "png_bytes": png, "ratio": round(len(coded) / png, 3),
                     "encode_ms": round(encode_ms, 2), "decode_ms": round(decode_ms, 2)})
    print(f"{'mask':<20} {'edgecodec':>9} {'PNG':>8} {'ratio':>6} {'enc ms':>7} {'dec ms':>7}")
    for r in rows:
        print(f"{r['mask']:<20} {r['edgecodec_bytes']:>9} {r['png_bytes']:>8} {r['ratio']:>6.2f} "
              f"{r['encode_ms']:>7.1f} {r['decode_ms']:>7.1f}")
    write_results(args.out, {"machine": machine(), "size": [768, 512], "rows": rows})


if __name__ == "__main__":
    run_main(main)
