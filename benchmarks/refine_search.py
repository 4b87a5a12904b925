"""How many refinements a target-size search with encoder refinement costs, and what it lands on.

    python benchmarks/refine_search.py [--image PATH] [--model fidelity] [--steps 50]
                                       [--qualities 0.3,0.6] [--threads 1]

For each quality q, the target is the size of the plain (unrefined) file at q; the image is then
compressed to that target with ``refine_steps``, counting the refinements the search runs
(``codec/rate_search.py``, guided by the unrefined sizes). Prints and writes
``benchmarks/results/refine_search.json``: target, bytes reached, the quality found, the
qualities refined, seconds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import machine, quality_list, run_main, write_results
from edgecodec.argtypes import int_at_least

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(REPO.parent / "shared/data/kodak/kodim23.png"),
                        help="image to compress (default ../shared/data/kodak/kodim23.png)")
    parser.add_argument("--model", default="fidelity", help="model to compress with (default %(default)s)")
    parser.add_argument("--steps", type=int_at_least(1), default=50,
                        help="refinement steps of each refined encode (default %(default)s)")
    parser.add_argument("--qualities", type=quality_list, default="0.3,0.6",
                        help="comma-separated qualities; each target is the plain file's size at one "
                             "(default %(default)s)")
    parser.add_argument("--threads", type=int_at_least(1), default=1, help="torch threads (default %(default)s)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/refine_search.json"),
                        help="results file (default benchmarks/results/refine_search.json)")
    args = parser.parse_args()

    import torch
    from PIL import Image

    import edgecodec
    from edgecodec.codec import api

    torch.set_num_threads(args.threads)
    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    refined_at: list[float] = []
    encode_refined = api.encode_refined

    def counting(model, objective, x, y, image, quality, steps):  # the signature api.Encoder calls
        refined_at.append(round(quality, 4))
        return encode_refined(model, objective, x, y, image, quality, steps)

    api.encode_refined = counting
    rows = []
    for q in args.qualities:
        target = len(edgecodec.compress(rgb, model=args.model, quality=q))
        refined_at.clear()
        start = time.perf_counter()
        data = edgecodec.compress(rgb, model=args.model, target_size=target, refine_steps=args.steps)
        seconds = time.perf_counter() - start
        found = edgecodec.read_header(data).quality
        rows.append({"plain_quality": q, "target_bytes": target, "bytes": len(data), "quality": round(found, 4),
                     "refinements": len(refined_at), "refined_at": list(refined_at), "seconds": round(seconds, 1)})
        print(f"target {target} B (plain file at q {q}): {len(data)} B at q {found:.3f}, "
              f"{len(refined_at)} refinements at q {refined_at}, {seconds:.1f} s")
    write_results(args.out, {"machine": machine(), "image": Path(args.image).name, "model": args.model,
                             "steps": args.steps, "threads": args.threads, "rows": rows})


if __name__ == "__main__":
    run_main(main)
