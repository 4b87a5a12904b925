"""Would encoder refinement help the perceptual model? A check against a held-out perceptual metric.

    python benchmarks/refine_perceptual.py [--images kodim05 kodim19 kodim23] [--quality 0.3]
                                           [--steps 8 25] [--weight 0.6] [--threads 1]

``--refine`` refuses GCRB models (codec/refine.py). Their training objective without the
adversarial term is ``R + lambda * S * (MSE + w * ST-LPIPS_alex)``; this script refines the shipped
``perceptual`` model's latent on exactly that (the same SGA relaxation and settings as ``--refine``,
w = 0.6 as in configs/edge/perceptual.yaml) and measures the decoded 8-bit images with the metric it
optimises (ST-LPIPS, AlexNet trunk) and with one it does not (ST-LPIPS with the VGG trunk, which
ships in the same wheel). A refinement that only lowers the optimised metric is attacking the
metric, not improving the image. Prints and writes ``benchmarks/results/refine_perceptual.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import machine, run_main, write_results
from edgecodec.argtypes import int_at_least, positive_number, unit_interval

REPO = Path(__file__).resolve().parent.parent
KODAK = REPO.parent / "shared/data/kodak"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["kodim05", "kodim19", "kodim23"],
                        help="Kodak image names, without .png (default kodim05 kodim19 kodim23)")
    parser.add_argument("--quality", type=unit_interval, default=0.3,
                        help="quality the latent is coded at, 0 to 1 (default %(default)s)")
    parser.add_argument("--steps", type=int_at_least(1), nargs="+", default=[8, 25],
                        help="refinement step counts, one refinement of each image per count (default 8 25)")
    parser.add_argument("--weight", type=positive_number, default=0.6,
                        help="w of ST-LPIPS in the refined objective, above 0 (default %(default)s)")
    parser.add_argument("--threads", type=int_at_least(1), default=1, help="torch threads (default %(default)s)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/refine_perceptual.json"),
                        help="results file (default benchmarks/results/refine_perceptual.json)")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from edgecodec import zoo
    from edgecodec.codec import refine
    from edgecodec.codec.api import _to_tensor, _to_uint8
    from edgecodec.metrics import psnr
    from edgecodec.eval.runner import STLPIPS
    from edgecodec.losses.gan import GANRateDistortionLoss
    from edgecodec.models import PatchDiscriminator

    torch.set_num_threads(args.threads)
    model, weights_hash = zoo.load_model("perceptual")
    lambdas = zoo.find_model("perceptual").card["training"]["train"]["lambdas"]
    alex, vgg = STLPIPS("stlpips-alex"), STLPIPS("stlpips-vgg")
    # The GCRB objective's rate and reconstruction terms; its discriminator (an untrained stand-in:
    # the shipped model has none) is never called.
    loss = GANRateDistortionLoss(lambdas, PatchDiscriminator(), alex.module, distortion="mse", perceptual_weight=args.weight,
                                 min_level=model.config.min_level)

    def objective(out: dict, x: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
        return loss.reconstruction_terms(out, x, quality, crop=False)

    def measure(y: torch.Tensor, rgb: np.ndarray) -> dict[str, float]:
        h, w = rgb.shape[:2]
        strings = model.compress_latent(y, args.quality)["strings"]
        with torch.no_grad():
            decoded = _to_uint8(model.decompress(strings, tuple(y.shape[-2:]), args.quality), h, w)
        return {"bpp": 8 * sum(map(len, strings)) / (h * w), "st_lpips_alex": alex(rgb, decoded),
                "st_lpips_vgg": vgg(rgb, decoded), "psnr": psnr(rgb, decoded)}

    rows = []
    for name in args.images:
        rgb = np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB"))
        x = _to_tensor(rgb, model.stride)
        with torch.no_grad():
            y = model.analyze(x)
        plain = measure(y, rgb)
        for steps in args.steps:
            start = time.perf_counter()
            refined_y = refine.refine_latent(model, objective, x, y, args.quality, steps, rgb.shape[:2])
            seconds = time.perf_counter() - start
            refined = measure(refined_y, rgb)
            change = {k: 100 * (refined[k] / plain[k] - 1) for k in ("bpp", "st_lpips_alex", "st_lpips_vgg")}
            rows.append({"image": name, "steps": steps, "seconds": round(seconds, 1), "plain": plain,
                         "refined": refined, "change_percent": change,
                         "psnr_change_db": refined["psnr"] - plain["psnr"]})
            print(f"{name} {steps:3d} steps: bpp {change['bpp']:+.1f}%, ST-LPIPS alex (optimised) "
                  f"{change['st_lpips_alex']:+.1f}%, vgg (held out) {change['st_lpips_vgg']:+.1f}%, "
                  f"PSNR {refined['psnr'] - plain['psnr']:+.2f} dB ({seconds:.0f} s)", flush=True)
    write_results(args.out, {"machine": machine(), "threads": args.threads, "model": "perceptual",
                             "weights_sha256": weights_hash.hex(), "quality": args.quality,
                             "perceptual_weight": args.weight, "refine_settings": refine.SETTINGS_ID,
                             "rows": rows})


if __name__ == "__main__":
    run_main(main)
