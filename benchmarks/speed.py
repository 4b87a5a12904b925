"""Encode / decode speed of a learned model: Kodak images and a 4K (3840x2160) image.

    python benchmarks/speed.py [--model perceptual] [--threads 1,2] [--images 3] [--quality 0.5]

End to end through the public API, on the CPU: encode = analysis transform + entropy coding +
container (``Encoder(...).encode``), decode = ``decode_array`` from the bytes. Per Kodak image the
median of ``--repeats`` runs after one warm-up; the 4K image runs once (after the Kodak runs, so
warm); per set the median over images. Megapixels/s = image
pixels / time. The hyper-prior path always runs on one thread (the model forces it, so encoder and
decoder agree bit-exactly); extra threads only speed up the transforms. Peak memory: growth of
the process's peak RSS over encode + decode of one image (see ``edgecodec.eval.runner.PeakRSS``),
and the process's maximum RSS at the end.

When CUDA is available, the analysis and synthesis transforms alone are also timed on the GPU
(entropy coding stays on the CPU in this codec, so those rows are not end-to-end).

The 4K image is kodim23, centre-cropped to 16:9 (768x432) and upscaled 5x with Lanczos: smooth
content, so its bpp is low; it measures throughput, not compression.

Writes ``benchmarks/results/speed.json`` and prints a table. On a machine whose other cores are
busy, the 2-thread numbers understate what 2 free cores give.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from common import machine, run_main, thread_counts, write_results
from edgecodec.argtypes import int_at_least, unit_interval
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgecodec import zoo  # noqa: E402
from edgecodec.codec.api import Encoder, decode_array, quality_to_q16  # noqa: E402
from edgecodec.codec.imageio import load_image  # noqa: E402
from edgecodec.eval.runner import PeakRSS, data_root  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "speed.json"


def make_4k(kodak: Path) -> np.ndarray:
    with Image.open(kodak / "kodim23.png") as img:
        img = img.convert("RGB")
        w, h = img.size  # 768x512
        ch = w * 9 // 16
        top = (h - ch) // 2
        return np.asarray(img.crop((0, top, w, top + ch)).resize((3840, 2160), Image.LANCZOS)).copy()


def time_image(rgb: np.ndarray, model: str, q16: int, repeats: int, warm_up: bool = True) -> dict:
    prepared = load_image(rgb)
    enc, dec = [], []
    data = b""
    peak = 0.0
    skip = 1 if warm_up else 0
    for i in range(repeats + skip):  # with warm_up, the first run is not timed
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            data = Encoder(prepared, model).encode(q16)
            t1 = time.perf_counter()
            decoded, _ = decode_array(data)
            t2 = time.perf_counter()
        peak = max(peak, mem.mb)
        if i >= skip:
            enc.append(t1 - t0)
            dec.append(t2 - t1)
    assert decoded.shape == rgb.shape
    return {"enc_s": statistics.median(enc), "dec_s": statistics.median(dec), "bytes": len(data), "peak_mb": peak}


def summarize(name: str, device: str, threads: int, per_image: list[dict], pixels: list[int]) -> dict:
    enc = statistics.median(r["enc_s"] for r in per_image)
    dec = statistics.median(r["dec_s"] for r in per_image)
    mp = statistics.median(pixels) / 1e6
    row = {"set": name, "device": device, "threads": threads, "images": len(per_image),
           "megapixels": round(mp, 3), "enc_ms": round(1000 * enc, 1), "dec_ms": round(1000 * dec, 1),
           "enc_mp_s": round(mp / enc, 3), "dec_mp_s": round(mp / dec, 3)}
    if "bytes" in per_image[0]:
        row["bpp"] = round(statistics.fmean(8 * r["bytes"] / p for r, p in zip(per_image, pixels)), 4)
        row["peak_rss_mb"] = round(max(r["peak_mb"] for r in per_image), 1)
    return row


def transforms_only(model_name: str, images: list[tuple[str, list[np.ndarray]]], repeats: int,
                    device: str = "cuda") -> list[dict]:
    """Analysis and synthesis transforms alone on ``device`` (no entropy coding)."""
    model, _ = zoo.load_model(model_name)
    gpu = zoo.load_pretrained(model_name).to(device)  # a private copy

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    rows = []
    for name, rgbs in images:
        per_image, pixels = [], []
        for rgb in rgbs:
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().to(device) / 255
            s = model.stride
            x = torch.nn.functional.pad(x, (0, -x.shape[-1] % s, 0, -x.shape[-2] % s), mode="replicate")
            enc, dec = [], []
            with torch.no_grad():
                for i in range(repeats + 1):
                    sync()
                    t0 = time.perf_counter()
                    y = gpu.analyze(x)
                    sync()
                    t1 = time.perf_counter()
                    gpu._image(torch.round(y))
                    sync()
                    t2 = time.perf_counter()
                    if i:
                        enc.append(t1 - t0)
                        dec.append(t2 - t1)
            per_image.append({"enc_s": statistics.median(enc), "dec_s": statistics.median(dec)})
            pixels.append(rgb.shape[0] * rgb.shape[1])
        label = torch.cuda.get_device_name() if device.startswith("cuda") else device
        rows.append(summarize(name + " (transforms only)", label, torch.get_num_threads() if device == "cpu" else 0,
                              per_image, pixels))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=zoo.DEFAULT_MODEL, help="model to time (default %(default)s)")
    parser.add_argument("--threads", type=thread_counts, default="1,2",
                        help="comma-separated CPU thread counts (default %(default)s)")
    parser.add_argument("--images", type=int_at_least(1), default=3,
                        help="Kodak images (the first N; default %(default)s)")
    parser.add_argument("--quality", type=unit_interval, default=0.5, help="quality, 0 to 1 (default %(default)s)")
    parser.add_argument("--repeats", type=int_at_least(1), default=2,
                        help="timed runs per Kodak image (after a warm-up; default %(default)s)")
    parser.add_argument("--no-4k", action="store_true", help="skip the 3840x2160 image")
    parser.add_argument("--out", default=str(RESULTS), help="results file (default benchmarks/results/speed.json)")
    args = parser.parse_args(argv)

    kodak = data_root() / "kodak"
    paths = sorted(kodak.glob("*.png"))[: args.images]
    if not paths:
        print(f"no Kodak images in {kodak} (set EDGECODEC_DATA)", file=sys.stderr)
        return 2
    kodak_rgbs = [load_image(p).rgb for p in paths]
    sets = [("kodak", kodak_rgbs, args.repeats)]
    if not args.no_4k:  # one run, no warm-up of its own: the Kodak runs before it warmed everything up
        sets.append(("4k", [make_4k(kodak)], 1))
    q16 = quality_to_q16(args.quality)
    _, weights_hash = zoo.load_model(args.model)
    rows = []
    start = time.perf_counter()
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, rgbs, repeats in sets:
            per_image = [time_image(rgb, args.model, q16, repeats, warm_up=name != "4k") for rgb in rgbs]
            rows.append(summarize(name, "cpu", threads, per_image, [r.shape[0] * r.shape[1] for r in rgbs]))
            print(f"  {name}, {threads} thread(s) done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    torch.set_num_threads(1)
    if torch.cuda.is_available():
        rows += transforms_only(args.model, [(n, r) for n, r, _ in sets], max(2, args.repeats))

    result = {
        "model": args.model, "weights": weights_hash.hex(), "quality": args.quality,
        "kodak_images": [p.name for p in paths], "torch": torch.__version__, **machine(),
        "process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "notes": "enc = analysis + entropy coding + container; dec = decode_array; medians; "
                 "peak_rss_mb = peak RSS growth over one encode+decode; CUDA rows are transforms only",
        "results": rows,
    }
    out = write_results(args.out, result)

    print(f"model {args.model} ({weights_hash.hex()}), quality {args.quality}, torch {torch.__version__}")
    print(f"{'set':<28} {'device':<10} {'thr':>3} {'MP':>6} {'enc ms':>9} {'dec ms':>9} {'enc MP/s':>8} "
          f"{'dec MP/s':>8} {'bpp':>6} {'peak MiB':>8}")
    for r in rows:
        print(f"{r['set']:<28} {r['device'][:10]:<10} {r['threads']:>3} {r['megapixels']:>6.2f} {r['enc_ms']:>9.1f} "
              f"{r['dec_ms']:>9.1f} {r['enc_mp_s']:>8.2f} {r['dec_mp_s']:>8.2f} {r.get('bpp', float('nan')):>6.3f} "
              f"{r.get('peak_rss_mb', float('nan')):>8.1f}")
    print(f"process max RSS {result['process_max_rss_mb']} MiB; wrote {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
