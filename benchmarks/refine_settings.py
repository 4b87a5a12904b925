"""Encoder-refinement settings compared on training photos (never Kodak, the evaluation set).

    python benchmarks/refine_settings.py [--settings 0.05,0.5,0.05 0.1,0.5,0.05 ...] [--images 6]
                                         [--model fidelity] [--steps 50] [--threads 1]

Each setting is ``LR,TAU_START,TAU_END`` (codec/refine.py). Every image (every 160th photo of
``../shared/data/train``, a centre crop of 384 x 256 or 256 x 384) is refined at qualities 0, 0.5
and 1, and the change of the real objective (bytes of the actual streams + lambda * distortion of
the decoded 8-bit image) against the unrefined latent is recorded: the refined streams' objective
whether ``encode_refined`` keeps them or not, so a worse setting shows as worse. Prints and writes
``benchmarks/results/refine_settings.json``: the mean change per setting (percent, negative =
better) and every image's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import machine, run_main, write_results
from edgecodec.argtypes import int_at_least, numbers

REPO = Path(__file__).resolve().parent.parent
QUALITIES = (0.0, 0.5, 1.0)


def training_crops(count: int) -> list[tuple[str, np.ndarray]]:
    from PIL import Image

    files = sorted((REPO.parent / "shared/data/train").rglob("*.jpg"))[::160][:count]
    crops = []
    for path in files:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        h, w = rgb.shape[:2]
        ch, cw = (384, 256) if h > w else (256, 384)
        top, left = (h - ch) // 2, (w - cw) // 2
        crops.append((path.name, np.ascontiguousarray(rgb[top:top + ch, left:left + cw])))
    return crops


def setting(text: str) -> tuple[float, float, float]:
    """LR,TAU_START,TAU_END: three numbers."""
    values = numbers(text)
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected LR,TAU_START,TAU_END, got {text!r}")
    return values[0], values[1], values[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", type=setting, default=[setting("0.05,0.5,0.05")],
                        help="settings to compare, LR,TAU_START,TAU_END each (default 0.05,0.5,0.05)")
    parser.add_argument("--images", type=int_at_least(1), default=6,
                        help="training photos to refine (every 160th of ../shared/data/train; default %(default)s)")
    parser.add_argument("--model", default="fidelity", help="model to refine (default %(default)s)")
    parser.add_argument("--steps", type=int_at_least(1), default=50,
                        help="refinement steps of each refined encode (default %(default)s)")
    parser.add_argument("--threads", type=int_at_least(1), default=1, help="torch threads (default %(default)s)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/refine_settings.json"),
                        help="results file (default benchmarks/results/refine_settings.json)")
    args = parser.parse_args()

    import torch

    from edgecodec import zoo
    from edgecodec.codec import refine
    from edgecodec.codec.api import _to_tensor

    torch.set_num_threads(args.threads)
    model, weights_hash = zoo.load_model(args.model)
    objective = refine.refinement_objective(args.model)
    crops = training_crops(args.images)
    rows = []
    for lr, tau_start, tau_end in args.settings:
        refine.LEARNING_RATE, refine.TAU_START, refine.TAU_END = lr, tau_start, tau_end
        changes = []
        start = time.perf_counter()
        for _, crop in crops:
            x = _to_tensor(crop, model.stride)
            y = model.analyze(x)
            for q in QUALITIES:
                result = refine.encode_refined(model, objective, x, y, crop, q, args.steps)
                changes.append(100 * (result.refined_objective / result.unrefined_objective - 1))
        row = {"lr": lr, "tau_start": tau_start, "tau_end": tau_end, "mean_change_pct": round(float(np.mean(changes)), 3),
               "changes_pct": [round(c, 2) for c in changes], "seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
        print(f"lr {lr:g}, tau {tau_start:g} -> {tau_end:g}: objective {row['mean_change_pct']:+.2f}% "
              f"(mean of {len(changes)}), {row['seconds']:.0f} s", flush=True)
    write_results(args.out, {"machine": machine(), "model": args.model, "weights": weights_hash.hex()[:16],
                             "steps": args.steps, "threads": args.threads, "qualities": list(QUALITIES),
                             "images": [name for name, _ in crops], "rows": rows})


if __name__ == "__main__":
    run_main(main)
