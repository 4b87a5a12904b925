"""Edge deployment figures: size, compute, speed and memory of each shipped model's decoder.

    python benchmarks/edge.py [--models perceptual,fidelity] [--int8-images 24] [--threads 1,2] [--no-install-size]

Per model:
- parameters of the encoder and decoder (``EdgeCodecModel.parameter_counts``: the decoder is
  g_s + h_s + gains; g_s alone also shown);
- MACs per image pixel of the decoder (g_s + h_s, plus the checkerboard context model where there
  is one) and encoder (g_a + h_a + h_s + context), counted by PyTorch's
  ``torch.utils.flop_counter.FlopCounterMode`` on a 768x512 input (FLOPs / 2; the context
  convolution scaled to the taps and positions the coders compute, ``context_macs_per_pixel``);
- ONNX file sizes: decoder.onnx (fp32), decoder.int8.onnx (onnxruntime static QDQ int8,
  calibrated on 8 training images), tables.safetensors;
- decode ms of kodim23 (768x512, quality 0.5; median of 11 after a warm-up: this VM is noisy):
  the lite decoder (onnxruntime, entropy decoding included) at each of ``--threads`` (default 1
  and 2), fp32 and int8 (fp32 at the most threads also split into entropy decoding with the
  integer h_s, synthesis and 8-bit conversion), and the PyTorch decoder (``decode_array``, at the
  fewest threads); encode ms, end to end: the PyTorch encoder and the torch-free ``LiteEncoder``
  (onnxruntime) at each of ``--threads``;
- peak RSS of a fresh process that imports the lite decoder and decodes kodim23 (VmHWM; the most
  threads), and of one that does the same with the PyTorch codec (one thread);
- int8 quality drop: Kodak PSNR and ST-LPIPS of the int8 against the fp32 lite decoder at
  qualities 0, 0.25, 0.5, 0.75, 1 (mean over ``--int8-images`` images; the worst rate is reported).

Also the lite install size: a fresh venv with requirements-lite.txt plus CompressAI (--no-deps),
site-packages measured on disk, plus the default model's decoder files; and the download (the
same packages' wheels, plus the model files).
Writes benchmarks/results/edge.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import machine, run_main, thread_counts, write_results
from edgecodec.argtypes import int_at_least

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgecodec.codec import api  # noqa: E402
from edgecodec.export.onnx import export_onnx  # noqa: E402
from edgecodec.lite import LiteDecoder  # noqa: E402
from edgecodec.lite.decoder import _to_uint8  # noqa: E402
from edgecodec.zoo import load_model, shipped_models  # noqa: E402

QUALITIES = (0.0, 0.25, 0.5, 0.75, 1.0)
DATA = REPO.parent / "shared" / "data"


def macs_per_pixel(module: torch.nn.Module, example: torch.Tensor, pixels: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(example)
    return counter.get_total_flops() / 2 / pixels


def context_macs_per_pixel(model: torch.nn.Module, h: int, w: int) -> float:
    """MACs per pixel of a checkerboard context model (0 without one), counted as both coders run
    it (lite/context.py): the entropy-parameters network once per latent position, and the masked
    5x5 context convolution over its unmasked taps (12 of 25) at the non-anchor half of the
    positions only. FlopCounterMode alone would count all 25 taps at every position."""
    if model.config.context != "checkerboard":
        return 0.0
    codec = model.latent_codec["y"]
    conv = codec.context_prediction
    latent = torch.zeros(1, conv.in_channels, h // 16, w // 16)
    params = macs_per_pixel(codec.entropy_parameters, torch.zeros(1, conv.out_channels + 2 * conv.in_channels,
                                                                   h // 16, w // 16), h * w)
    taps = int((conv.mask[0, 0] != 0).sum())
    full_conv = macs_per_pixel(conv, latent, h * w)
    return params + full_conv * taps / conv.mask[0, 0].numel() / 2


def median_ms(fn, repeats: int = 11) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def peak_rss_child(code: str) -> float:
    script = code + "\nprint([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=str(REPO),
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def int8_drop(dec32: LiteDecoder, dec8: LiteDecoder, model: str, images: list[Path]) -> dict:
    from edgecodec.metrics import psnr
    from edgecodec.eval.runner import STLPIPS

    lpips = STLPIPS()
    per_q = {}
    for q in QUALITIES:
        rows = []
        for path in images:
            rgb = api.load_image(path).rgb
            data = api.compress(rgb, quality=q, model=model)
            a, b = dec32.decode(data)[0], dec8.decode(data)[0]
            rows.append((psnr(rgb, a), psnr(rgb, b), lpips(rgb, a), lpips(rgb, b)))
        m = np.mean(rows, axis=0)
        per_q[q] = {"psnr_fp32": round(m[0], 3), "psnr_int8": round(m[1], 3), "psnr_drop": round(m[0] - m[1], 3),
                    "st_lpips_fp32": round(m[2], 4), "st_lpips_int8": round(m[3], 4),
                    "st_lpips_rise": round(m[3] - m[2], 4)}
    worst_psnr = max(v["psnr_drop"] for v in per_q.values())
    worst_lpips = max(v["st_lpips_rise"] for v in per_q.values())
    return {"per_quality": per_q, "worst_psnr_drop": worst_psnr, "worst_st_lpips_rise": worst_lpips,
            "images": len(images), "ship": bool(worst_psnr <= 0.1 and worst_lpips <= 0.005)}


def lite_install_size(export_dir: Path) -> dict:
    venv = Path(tempfile.mkdtemp(prefix="lite-venv-"))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = next((venv / "lib").glob("python*/site-packages"))
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(site)]
        subprocess.run(pip + ["-r", str(REPO / "requirements-lite.txt")], check=True)
        subprocess.run(pip + ["--no-deps", "compressai==1.2.8"], check=True)
        packages = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
        wheels = venv / "wheels"  # what a device downloads: the same packages as wheel files
        download = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "-d", str(wheels)]
        subprocess.run(download + ["-r", str(REPO / "requirements-lite.txt")], check=True)
        subprocess.run(download + ["--no-deps", "compressai==1.2.8"], check=True)
        wheel_bytes = sum(f.stat().st_size for f in wheels.iterdir())
        code = sum(f.stat().st_size for f in (REPO / "edgecodec").rglob("*.py"))
        model = sum((export_dir / n).stat().st_size for n in ("decoder.onnx", "tables.safetensors", "manifest.json"))
        return {"site_packages_mb": round(packages / 1e6, 1), "wheels_mb": round(wheel_bytes / 1e6, 1),
                "download_mb": round((wheel_bytes + model) / 1e6, 1), "edgecodec_code_mb": round(code / 1e6, 2),
                "model_files_mb": round(model / 1e6, 2), "total_mb": round((packages + code + model) / 1e6, 1),
                "packages": sorted(p.name for p in site.iterdir() if p.name.endswith(".dist-info"))}
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def bench_model(name: str, workdir: Path, int8_images: int, threads: tuple[int, ...] | list[int] = (1, 2)) -> dict:
    """The figures of one model; times at each of ``threads`` (the stage split and the lite RSS at
    the most, the PyTorch decode and the int8 drop at the fewest)."""
    fewest, most = min(threads), max(threads)
    model, _ = load_model(name)
    counts = model.parameter_counts()
    hyper = model.latent_codec["hyper"]
    h, w = 512, 768
    m = model.config.latent_channels
    g_s = macs_per_pixel(model.g_s, torch.zeros(1, m, h // 16, w // 16), h * w)
    h_s = macs_per_pixel(hyper.h_s, torch.zeros(1, model.config.hyper_channels, h // 64, w // 64), h * w)
    g_a = macs_per_pixel(model.g_a, torch.zeros(1, 3, h, w), h * w)
    h_a = macs_per_pixel(hyper.h_a, torch.zeros(1, m, h // 16, w // 16), h * w)
    context = context_macs_per_pixel(model, h, w)
    calibration = sorted(p for p in (DATA / "train").rglob("*.jpg"))
    out = export_onnx(name, workdir / name, calibration)
    manifest = json.loads((out / "manifest.json").read_text())
    sizes = {k: round(v["bytes"] / 1e6, 2) for k, v in manifest["files"].items()}

    kodim23 = DATA / "kodak" / "kodim23.png"
    rgb = api.load_image(kodim23).rgb
    data = api.compress(rgb, quality=0.5, model=name)
    dec = {(t, i8): LiteDecoder(out, threads=t, int8=i8) for t in threads for i8 in (False, True)}
    times = {f"lite_{'int8' if i8 else 'fp32'}_{t}t": median_ms(lambda d=d: d.decode(data)) for (t, i8), d in dec.items()}
    # Where the fp32 lite decode's time goes, the most threads: rANS + integer h_s + dequantization,
    # the onnxruntime synthesis, and the conversion to 8-bit pixels (in place, so on fresh copies).
    staged = dec[(most, False)]
    y_hat = staged.decode_latent(data).y_hat
    x_hat = staged._synthesize(y_hat)
    copies = [x_hat.copy() for _ in range(12)]
    stages = {"entropy_and_hyper": median_ms(lambda: staged.decode_latent(data)),
              "synthesis": median_ms(lambda: staged._synthesize(y_hat)),
              "to_uint8": median_ms(lambda: _to_uint8(copies.pop()))}
    torch.set_num_threads(fewest)
    times["torch_decode"] = median_ms(lambda: api.decode_array(data))
    for t in threads:
        torch.set_num_threads(t)
        times[f"torch_encode_{t}t"] = median_ms(lambda: api.compress(rgb, quality=0.5, model=name))
    torch.set_num_threads(1)
    from edgecodec.lite import LiteEncoder

    for t in threads:
        times[f"lite_encode_{t}t"] = median_ms(lambda e=LiteEncoder(out, threads=t): e.encode(rgb, 0.5))
    edc = workdir / f"{name}.edc"
    edc.write_bytes(data)
    rss = {
        "lite": peak_rss_child(f"import sys; sys.modules['torch'] = None\nfrom edgecodec.lite import LiteDecoder\n"
                               f"LiteDecoder({str(out)!r}, threads={most}).decode(open({str(edc)!r}, 'rb').read())"),
        "torch": peak_rss_child(f"import torch; torch.set_num_threads(1)\nfrom edgecodec.codec import api\n"
                                f"api.decode_array(open({str(edc)!r}, 'rb').read())"),
    }
    images = sorted((DATA / "kodak").glob("*.png"))[:int8_images]
    drop = int8_drop(dec[(fewest, False)], dec[(fewest, True)], name, images) if images else None
    return {"parameters": {**counts, "g_s": sum(p.numel() for p in model.g_s.parameters()),
                           "h_s": sum(p.numel() for p in hyper.h_s.parameters())},
            "kmac_per_pixel": {"decoder": round((g_s + h_s + context) / 1e3, 2), "g_s": round(g_s / 1e3, 2),
                               "h_s": round(h_s / 1e3, 2), "context": round(context / 1e3, 2),
                               "encoder": round((g_a + h_a + h_s + context) / 1e3, 2)},
            "onnx_mb": sizes, "ms": {k: round(v, 1) for k, v in times.items()},
            f"lite_fp32_{most}t_stages_ms": {k: round(v, 1) for k, v in stages.items()},
            "peak_rss_mb": {k: round(v, 1) for k, v in rss.items()}, "int8": drop,
            "kodim23_bpp": round(len(data) * 8 / rgb.shape[0] / rgb.shape[1], 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(shipped_models()),
                        help="comma-separated models to measure (default: the shipped ones, %(default)s)")
    parser.add_argument("--int8-images", type=int_at_least(0), default=24,
                        help="the first N Kodak images for the int8 quality drop (0: skip; default %(default)s)")
    parser.add_argument("--threads", type=thread_counts, default="1,2",
                        help="comma-separated thread counts the lite decoder and both encoders are timed at "
                             "(default %(default)s)")
    parser.add_argument("--no-install-size", action="store_true",
                        help="skip the lite install size (a fresh venv, pip install and pip download of "
                             "requirements-lite.txt and CompressAI, which need a package index)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "edge.json"),
                        help="results file (default benchmarks/results/edge.json)")
    args = parser.parse_args(argv)
    threads = sorted(set(args.threads))
    fewest, most = threads[0], threads[-1]
    workdir = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    try:
        models = {name: bench_model(name, workdir, args.int8_images, threads) for name in args.models.split(",")}
        install = None if args.no_install_size else lite_install_size(workdir / args.models.split(",")[0])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"machine": machine(), "threads": threads, "models": models, "lite_install": install,
              "mac_counter": "torch.utils.flop_counter.FlopCounterMode (FLOPs / 2), 768x512 input",
              "image": "kodim23 768x512, quality 0.5"}
    write_results(args.out, result)
    print(f"{'model':<11} {'dec params':>10} {'dec kMAC/px':>11} {'dec.onnx MB':>11} {'int8 MB':>7} "
          f"{f'lite {fewest}t':>7} {f'lite {most}t':>7} {f'int8 {most}t':>7} {'torch dec':>9} {'torch enc':>9} "
          f"{'lite enc':>8} {'lite RSS':>8} "
          f"{'int8 dPSNR':>10} {'int8 dLPIPS':>11}")
    for name, r in models.items():
        ms, d = r["ms"], r["int8"] or {}
        print(f"{name:<11} {r['parameters']['decoder']:>10,} {r['kmac_per_pixel']['decoder']:>11.1f} "
              f"{r['onnx_mb']['decoder.onnx']:>11.2f} {r['onnx_mb'].get('decoder.int8.onnx', 0):>7.2f} "
              f"{ms[f'lite_fp32_{fewest}t']:>7.0f} {ms[f'lite_fp32_{most}t']:>7.0f} {ms[f'lite_int8_{most}t']:>7.0f} "
              f"{ms['torch_decode']:>9.0f} {ms[f'torch_encode_{fewest}t']:>9.0f} {ms[f'lite_encode_{fewest}t']:>8.0f} "
              f"{r['peak_rss_mb']['lite']:>8.0f} "
              f"{d.get('worst_psnr_drop', float('nan')):>10.3f} {d.get('worst_st_lpips_rise', float('nan')):>11.4f}")
    for name, r in models.items():
        print(f"{name} lite decode stages, {most} thread(s): "
              + ", ".join(f"{k} {v:.0f} ms" for k, v in r[f"lite_fp32_{most}t_stages_ms"].items()))
    if install:
        print(f"lite install: {install['total_mb']} MB on disk ({install['site_packages_mb']} MB packages, "
              f"{install['model_files_mb']} MB model files); download {install['download_mb']} MB "
              f"({install['wheels_mb']} MB wheels)")
    return 0


if __name__ == "__main__":
    run_main(main)
