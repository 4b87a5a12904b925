"""Rate-distortion points of a learned model on an image folder, from real .edc bytes."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from ..codec.api import Encoder, decode_array, quality_to_q16
from ..codec.imageio import load_image
from .metrics import ms_ssim, psnr


def evaluate_model(model: str, image_dir: str | Path, qualities: list[float],
                   limit: int | None = None) -> list[dict[str, float]]:
    """Mean bpp (file bytes, header included), PSNR, MS-SSIM and timings per quality."""
    paths = sorted(Path(image_dir).glob("*.png"))[:limit]
    if not paths:
        raise FileNotFoundError(f"no PNG images in {image_dir}")
    rows: dict[float, dict[str, list[float]]] = {q: {} for q in qualities}
    for path in paths:
        prepared = load_image(path)
        t0 = time.perf_counter()
        encoder = Encoder(prepared, model)
        analysis_s = time.perf_counter() - t0
        pixels = encoder.num_pixels
        for q in qualities:
            t1 = time.perf_counter()
            data = encoder.encode(quality_to_q16(q))
            enc_s = analysis_s + time.perf_counter() - t1
            t2 = time.perf_counter()
            decoded, _ = decode_array(data)
            dec_s = time.perf_counter() - t2
            values = {"bpp": 8 * len(data) / pixels, "psnr": psnr(prepared.rgb, decoded),
                      "ms_ssim": ms_ssim(prepared.rgb, decoded), "enc_ms": 1000 * enc_s,
                      "dec_ms": 1000 * dec_s}
            for key, value in values.items():
                rows[q].setdefault(key, []).append(value)
    summary = []
    for q in qualities:
        row = {"quality": q, "images": len(paths)}
        for key, values in rows[q].items():
            agg = statistics.median if key.endswith("_ms") else statistics.fmean
            row[key] = round(agg(values), 5)
        summary.append(row)
    return summary
