"""Time and peak memory of compressing and decompressing 4K and 8K images (tiled coding).

    python benchmarks/large.py [--model fidelity] [--quality 0.5] [--sizes 4k,8k] [--no-untiled] [--threads 1]

Each image is coded in a fresh process (``python benchmarks/large.py --child ...``) that imports
edgecodec, compresses the image from a PNG file (``edgecodec.compress(path)``: reading the PNG,
analysis, entropy coding, container) and decodes the bytes (``decode_array``), on one thread
(``--threads N``: N threads, which tiled images use one window each). Peak RSS is that process's
high-water mark (``VmHWM`` in /proc/self/status), read right after the decode, so it includes
importing torch and CompressAI (about 0.85 GB here) and reading the PNG;
the import-only figure is reported too. (Not ``getrusage().ru_maxrss``: Linux carries it across
``exec``, so a child started by a large parent reports the parent's size. The parent here imports
neither torch nor edgecodec for the same reason.) Quality metrics are computed afterwards, in row
chunks, and do not count.

Images: a mosaic of the 24 Kodak images at their native size (portrait ones rotated), cycled and
offset by (100, 100) pixels so that no mosaic seam falls on a tile border, cropped to 3840x2160 and
7680x4320. Rates are therefore Kodak-like, not those of a smooth upscaled photo.

Seams: PSNR over the pixels within 4 pixels of an interior tile border (rows and columns at
multiples of 16 x tile pixels: 512 with the default tiles) against the whole image's PSNR. The
one-piece reference row is measured at the same positions, as a control.

``--no-untiled`` skips the reference row that codes the 4K image in one piece (``tile=0``, the
pre-tiling path; about 2.6 GB peak). Writes ``benchmarks/results/large.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine, run_main, write_results
from edgecodec.argtypes import int_at_least, unit_interval

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results" / "large.json"
SIZES = {"4k": (3840, 2160), "8k": (7680, 4320)}
BORDER = 4  # pixels on each side of a tile border
OFFSET = 100


def make_mosaic(kodak: Path, width: int, height: int) -> np.ndarray:
    """Kodak images side by side (768x512 each, portrait ones rotated), cycled, offset, cropped."""
    from PIL import Image

    tiles = []
    for path in sorted(kodak.glob("*.png")):
        with Image.open(path) as img:
            img = img.convert("RGB")
            tiles.append(np.asarray(img if img.width >= img.height else img.rotate(90, expand=True)))
    th, tw = tiles[0].shape[:2]
    rows, cols = -(-(height + OFFSET) // th), -(-(width + OFFSET) // tw)
    out = np.empty((height, width, 3), np.uint8)
    for i in range(rows):
        for j in range(cols):
            tile = tiles[(i * cols + j) % len(tiles)]
            y0, x0 = i * th - OFFSET, j * tw - OFFSET
            ys, xs = max(0, y0), max(0, x0)
            ye, xe = min(height, y0 + th), min(width, x0 + tw)
            if ye > ys and xe > xs:
                out[ys:ye, xs:xe] = tile[ys - y0: ye - y0, xs - x0: xe - x0]
    return out


def psnr_parts(ref: np.ndarray, out: np.ndarray, tile_px: int) -> tuple[float, float, int]:
    """Whole-image PSNR, PSNR within BORDER pixels of interior tile borders, border pixel count."""
    h, w = ref.shape[:2]
    near_col = np.zeros(w, bool)
    near_row = np.zeros(h, bool)
    if tile_px:
        for b in range(tile_px, w, tile_px):
            near_col[max(0, b - BORDER): b + BORDER] = True
        for b in range(tile_px, h, tile_px):
            near_row[max(0, b - BORDER): b + BORDER] = True
    sq_all = sq_border = 0.0
    n_border = 0
    for y0 in range(0, h, 256):  # row chunks: no full-size float copies
        d = (ref[y0:y0 + 256].astype(np.float32) - out[y0:y0 + 256].astype(np.float32)) ** 2
        sq_all += float(d.sum(dtype=np.float64))
        mask = near_row[y0:y0 + 256, None] | near_col[None, :]
        sq_border += float(d[mask].sum(dtype=np.float64))
        n_border += int(mask.sum()) * 3

    def psnr(sq: float, n: int) -> float:
        return float("nan") if n == 0 else (float("inf") if sq == 0 else 10 * np.log10(255.0**2 * n / sq))

    return psnr(sq_all, ref.size), psnr(sq_border, n_border), n_border // 3


def peak_rss_mib() -> float:
    """This process's peak resident set size, MiB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> int:
    """One image in this fresh process: compress from the PNG, decode, then measure."""
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    import edgecodec
    from edgecodec import zoo
    from edgecodec.codec.api import Encoder, decode_array, quality_to_q16
    from edgecodec.codec.imageio import load_image

    zoo.load_model(args.model)
    import_mb = peak_rss_mib()
    t0 = time.perf_counter()
    if args.tile is None:
        data = edgecodec.compress(args.child, quality=args.quality, model=args.model)
    else:
        data = Encoder(load_image(args.child), args.model, tile=args.tile).encode(quality_to_q16(args.quality))
    t1 = time.perf_counter()
    enc_mb = peak_rss_mib()
    decoded, header = decode_array(data)
    t2 = time.perf_counter()
    peak_mb = peak_rss_mib()
    ref = load_image(args.child).rgb
    # An image coded in one piece is measured at the default tile borders too: the control.
    from edgecodec.codec import tiling

    whole, border, n_border = psnr_parts(ref, decoded, 16 * (header.tile or tiling.TILE_LATENT))
    h, w = ref.shape[:2]
    print(json.dumps({
        "torch": torch.__version__, "tile_pixels_threshold": tiling.TILE_PIXELS, "tile_latent": tiling.TILE_LATENT,
        "width": w, "height": h, "megapixels": round(w * h / 1e6, 2), "tile": header.tile,
        "version": header.version, "bytes": len(data), "bpp": round(8 * len(data) / (w * h), 4),
        "enc_s": round(t1 - t0, 2), "dec_s": round(t2 - t1, 2), "psnr": round(whole, 3),
        "psnr_border": round(border, 3), "border_pixels": n_border,
        "border_minus_whole_db": round(border - whole, 3) if n_border else None,
        "import_rss_mb": round(import_mb, 1), "after_encode_rss_mb": round(enc_mb, 1),
        "peak_rss_mb": round(peak_mb, 1)}))
    return 0


def run_child(png: Path, args: argparse.Namespace, tile: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", str(png), "--model", args.model, "--quality", str(args.quality),
           "--threads", str(args.threads)]
    if tile is not None:
        cmd += ["--tile", str(tile)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stderr.strip().splitlines()
    if proc.returncode == 2 and lines and "error: " in lines[-1]:
        # the child refused a value (an unknown --model): its one line, exit 2, not a RuntimeError's traceback
        from edgecodec.errors import UsageError

        raise UsageError(lines[-1].partition("error: ")[2])
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="fidelity", help="model to code with (default %(default)s)")
    parser.add_argument("--quality", type=unit_interval, default=0.5, help="quality, 0 to 1 (default %(default)s)")
    parser.add_argument("--sizes", default="4k,8k",
                        help=f"comma-separated image sizes, of {', '.join(SIZES)} (default %(default)s)")
    parser.add_argument("--no-untiled", action="store_true", help="skip the one-piece 4K reference row")
    parser.add_argument("--threads", type=int_at_least(1), default=1,
                        help="torch threads (tiled images run one window per thread; default %(default)s)")
    parser.add_argument("--out", default=str(RESULTS), help="results file (default benchmarks/results/large.json)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tile", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.sizes.split(",")) - set(SIZES))
    if unknown:
        parser.error(f"--sizes: unknown {', '.join(unknown)} (known: {', '.join(SIZES)})")
    if args.child:
        return child(args)

    from PIL import Image

    data = Path(os.environ["EDGECODEC_DATA"]) if os.environ.get("EDGECODEC_DATA") else REPO.parent / "shared/data"
    kodak = data / "kodak"
    if not sorted(kodak.glob("*.png")):
        print(f"no Kodak images in {kodak} (set EDGECODEC_DATA)", file=sys.stderr)
        return 2
    runs = []
    for name in args.sizes.split(","):
        runs.append((name, name, None))
        if name == "4k" and not args.no_untiled:
            runs.append((name + " untiled", name, 0))
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for label, size, tile in runs:
            png = Path(tmp) / f"{size}.png"
            if not png.exists():
                Image.fromarray(make_mosaic(kodak, *SIZES[size])).save(png, compress_level=1)
            row = {"set": label, **run_child(png, args, tile)}
            info = {k: row.pop(k) for k in ("torch", "tile_pixels_threshold", "tile_latent")}
            rows.append(row)
            print(f"  {label} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)

    result = {
        "model": args.model, "quality": args.quality, "threads": args.threads, **info, **machine(),
        "notes": f"one fresh process per row: compress(PNG path) + decode_array, {args.threads} thread(s); "
                 "peak_rss_mb = the process's VmHWM after decoding (torch import included, import_rss_mb alone); "
                 f"psnr_border over pixels within {BORDER} px of interior tile borders; images: offset mosaic "
                 "of the 24 Kodak images",
        "results": rows,
    }
    out = write_results(args.out, result)

    print(f"model {args.model}, quality {args.quality}, torch {result['torch']}, {args.threads} thread(s)")
    print(f"{'set':<12} {'size':>10} {'tile':>4} {'enc s':>7} {'dec s':>7} {'bpp':>6} {'PSNR':>6} "
          f"{'border':>6} {'diff':>6} {'import MiB':>10} {'peak MiB':>8}")
    for r in rows:
        diff = r["border_minus_whole_db"]
        diff = float("nan") if diff is None else diff
        print(f"{r['set']:<12} {r['width']:>5}x{r['height']:<4} {r['tile']:>4} {r['enc_s']:>7.1f} "
              f"{r['dec_s']:>7.1f} {r['bpp']:>6.3f} {r['psnr']:>6.2f} {r['psnr_border']:>6.2f} "
              f"{diff:>6.2f} {r['import_rss_mb']:>10.0f} {r['peak_rss_mb']:>8.0f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
