"""Why the ablation's CAE and CRB stop short of 0.6 bpp: what their transforms reach at any rate.

    python benchmarks/ablation_ceiling.py [--models runs/ablation/models] [--names cae,crb,gcrb]
                                          [--extra 1,2] [--limit N] [--threads 2]
    python benchmarks/ablation_ceiling.py --prefix '' --names fidelity --out benchmarks/results/fidelity_ceiling.json

For each exported ablation model (``scripts/ablation.sh`` writes them; the weights are not
committed), or any installed model with ``--prefix ''``, on the Kodak images:

* ``top``: real files at quality 1, the top trained level: bytes, bpp and PSNR.
* ``extrapolated+E``: real files at a level E steps past the top one. The model is rebuilt with E
  more levels whose log gains continue the top two levels' line (the step from the second-highest
  gains to the highest, E more times), and nothing is trained: what spending more bits buys the
  transforms as they are.
* ``unquantized``: the top level with no rounding (y times its gain and inverse gain, decoded):
  the best its transforms can do at any rate, an upper bound of every file's PSNR.

Prints the means and writes ``benchmarks/results/ablation_ceiling.json``.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine, run_main, whole_numbers, write_results
from edgecodec.argtypes import int_at_least

REPO = Path(__file__).resolve().parent.parent


def extrapolated(model, extra: int):
    """``model`` with ``extra`` more quality levels whose log gains extend the top two levels' line."""
    from edgecodec.models import EdgeCodecModel, ModelConfig
    from edgecodec.models.widen import extend_levels

    levels = model.config.levels + extra
    bigger = EdgeCodecModel(ModelConfig.from_dict({**model.config.to_dict(), "levels": levels}))
    bigger.load_state_dict(extend_levels(model.state_dict(), levels))
    return bigger.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default=str(REPO.parent / "shared/data/kodak"),
                        help="folder of the Kodak PNG images (default ../shared/data/kodak)")
    parser.add_argument("--models", default=str(REPO / "runs/ablation/models"),
                        help="folder with ablation-NAME.safetensors + .json (scripts/ablation.sh exports them there)")
    parser.add_argument("--names", default="cae,crb,gcrb",
                        help="comma-separated model names, each after --prefix (default %(default)s)")
    parser.add_argument("--prefix", default="ablation-",
                        help="model name = PREFIX + each of --names ('' for installed models such as fidelity)")
    parser.add_argument("--extra", type=whole_numbers(1), default="1,2",
                        help="comma-separated counts of levels past the top one to measure (default 1,2)")
    parser.add_argument("--limit", type=int_at_least(1), default=None, help="only the first N images")
    parser.add_argument("--threads", type=int_at_least(1), default=2, help="torch threads (default %(default)s)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/ablation_ceiling.json"),
                        help="results file (default benchmarks/results/ablation_ceiling.json)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ablation-ceiling-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # 11 MB a variant: not left in /tmp
    # the extrapolated models are found by name like any exported model
    os.environ["EDGECODEC_MODEL_PATH"] = os.pathsep.join([str(work), str(Path(args.models).resolve())])
    import torch
    from PIL import Image

    from edgecodec import zoo
    from edgecodec.codec import api
    from edgecodec.errors import UnknownModelError
    from edgecodec.metrics import psnr

    torch.set_num_threads(args.threads)
    images = sorted(Path(args.kodak).glob("*.png"))[: args.limit]
    if not images:
        parser.error(f"--kodak: no PNG images in {args.kodak}")  # a usage error: exit 2, as every benchmark
    extras = args.extra
    results: dict[str, dict] = {}
    started = time.time()
    for short in args.names.split(","):
        name = f"{args.prefix}{short}"
        try:
            model, _ = zoo.load_model(name)
        except UnknownModelError as exc:
            raise UnknownModelError(f"{exc} (scripts/ablation.sh exports the ablation models into {args.models}; "
                                    "--models FOLDER, --prefix and --names measure others)") from None
        variants = {"top": name}
        for extra in extras:
            variant = f"{name}-x{extra}"
            zoo.save_model(extrapolated(model, extra), work, variant,
                           {"summary": f"{name} with {extra} extrapolated levels (benchmarks/ablation_ceiling.py)"})
            variants[f"extrapolated+{extra}"] = variant
        rows: dict[str, list[tuple[float, float]]] = {key: [] for key in [*variants, "unquantized"]}
        for path in images:
            rgb = np.asarray(Image.open(path).convert("RGB"))
            pixels = rgb.shape[0] * rgb.shape[1]
            for key, variant in variants.items():
                data = api.compress(rgb, quality=1.0, model=variant)
                rows[key].append((len(data) * 8 / pixels, psnr(rgb, api.decode_array(data)[0])))
            with torch.no_grad():
                x = api._to_tensor(rgb, model.stride)
                gains = model.gains(torch.tensor([1.0]))
                x_hat = model._image(model._latent(x) * gains["y_gain"] * gains["y_gain_inv"])
            rows["unquantized"].append((0.0, psnr(rgb, api._to_uint8(x_hat, *rgb.shape[:2]))))
        # (no file, so no rate, for the unquantized decode)
        results[short] = {key: {"bpp": None if key == "unquantized" else float(np.mean([b for b, _ in values])),
                                "psnr": float(np.mean([p for _, p in values]))} for key, values in rows.items()}
        for key, value in results[short].items():
            bpp = "" if value["bpp"] is None else f"{value['bpp']:.3f} bpp  "
            print(f"{short:5s} {key:16s} {bpp}{value['psnr']:.2f} dB", flush=True)
    out = write_results(args.out, {"images": len(images), "kodak": args.kodak, "models": args.models,
                                   "results": results, "seconds": round(time.time() - started, 1),
                                   "prefix": args.prefix, "threads": args.threads, **machine()})
    print(f"wrote {out}")


if __name__ == "__main__":
    run_main(main)
