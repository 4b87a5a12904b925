"""Decoder sizes of the published learned codecs that the Kodak evaluation compares with.

    python benchmarks/published_params.py [--out benchmarks/results/published_params.json]

The README sets edgecodec's models against CompressAI's published Kodak curves
(``edgecodec eval --compare ../shared/data/anchors/compressai_kodak.json``). Those are different
sizes of model, and one model per quality: each architecture is built here from CompressAI's own
quality configurations (``compressai.zoo.image.cfgs``, no weights needed) and its parameters counted
as ``EdgeCodecModel.parameter_counts`` counts edgecodec's decoder: synthesis, hyper-synthesis and,
where there is one, the context model and entropy-parameters network (what a decoder must hold).
Prints a table and writes the JSON.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from common import machine, run_main, write_results

DECODER_PARTS = ("g_s", "h_s", "context_prediction", "entropy_parameters")


def compressai_counts() -> dict[str, list[dict[str, int]]]:
    """{architecture: [{"quality", "decoder", "total"}, ...]} over CompressAI's quality configurations."""
    from compressai.zoo.image import cfgs, model_architectures

    counts = {}
    for name in ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "mbt2018", "cheng2020-anchor"):
        rows = []
        for quality, cfg in sorted(cfgs[name].items()):
            model = model_architectures[name](*cfg)
            decoder = sum(p.numel() for n, p in model.named_parameters() if n.split(".")[0] in DECODER_PARTS)
            rows.append({"quality": quality, "decoder": decoder, "total": sum(p.numel() for p in model.parameters())})
        counts[name] = rows
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "published_params.json"),
                        help="results file (default benchmarks/results/published_params.json)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    from edgecodec.zoo import load_model, shipped_models

    ours = {name: load_model(name)[0].parameter_counts() for name in shipped_models()}
    published = compressai_counts()
    print(f"{'model':<22} {'models':>6} {'decoder parameters (M)':>24}")
    for name, c in ours.items():
        print(f"{'edgecodec ' + name:<22} {1:>6} {c['decoder'] / 1e6:>24.2f}")
    for name, rows in published.items():
        lo, hi = min(r["decoder"] for r in rows), max(r["decoder"] for r in rows)
        print(f"{name:<22} {len(rows):>6} {f'{lo / 1e6:.2f} - {hi / 1e6:.2f}':>24}")
    write_results(args.out, {"machine": machine(), "edgecodec": ours, "compressai": published,
                             "note": "decoder: synthesis + hyper-synthesis + context model and entropy parameters "
                                     "where present; CompressAI trains one model per quality"})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
