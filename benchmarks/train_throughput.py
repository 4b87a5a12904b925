"""Training throughput (steps/s) of each shipped configuration at its default crop and batch.

    .venv/bin/python benchmarks/train_throughput.py [--warm 5] [--timed 10] [--threads 1]
                                                    [--set train.channels_last=true ...] [--out FILE]

For cae, crb, gcrb (configs/NAME.yaml) and gdn-hp (configs/fidelity.yaml): build the trainer,
run --warm untimed steps, then time --timed steps of the full update (codec + auxiliary
quantile step, and for gcrb the adversarial term with its adaptive weight plus the
discriminator step: gan.disc_start is set to 0 so the costliest phase is measured). One
process, --threads CPU threads, or CUDA when available. Data: synthetic 320 px images held in
memory (the trainer's data pipeline is in-memory anyway), unless --data is given. ``--set``
applies config overrides to every configuration (``train.channels_last=true``,
``train.compile=true``: the warm steps then include the compilation, timed apart).
Writes benchmarks/results/train_throughput.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import machine, run_main  # noqa: E402

from edgecodec.argtypes import int_at_least  # noqa: E402
from edgecodec.train.config import load_config  # noqa: E402
from edgecodec.train.trainer import Trainer  # noqa: E402

CONFIGS = {"cae": "cae.yaml", "crb": "crb.yaml", "gcrb": "gcrb.yaml", "gdn-hp": "fidelity.yaml"}


def synthetic_images(folder: Path, count: int = 12, side: int = 320) -> Path:
    """Smooth gradients, waves and noise: content for the transforms, not for learning."""
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:side, 0:side] / (side - 1)
    for i in range(count):
        base = np.stack([np.sin(xx * rng.uniform(2, 20) + rng.uniform(0, 6)) * 0.5 + 0.5,
                         yy * rng.uniform(0.2, 1.0), (xx + yy) / 2 * rng.uniform(0.2, 1.0)], axis=-1)
        arr = np.clip(base * 255 + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"synthetic{i:02d}.png")
    return folder


def measure(name: str, data: Path, warm: int, timed: int, threads: int, device: str,
            overrides: list[str]) -> dict:
    config = load_config(REPO / "edgecodec" / "configs" / CONFIGS[name], [
        f"data.root={data}", f"train.threads={threads}", f"train.device={device}", "gan.disc_start=0",
        "train.tensorboard=false", "train.progress=false", *overrides])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, run_dir)
        start = time.perf_counter()
        for _ in range(warm):
            trainer.train_step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        warm_seconds = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(timed):
            trainer.train_step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        params = trainer.model.parameter_counts()["total"]
        if trainer.discriminator is not None:
            params_d = sum(p.numel() for p in trainer.discriminator.parameters())
        else:
            params_d = 0
    batch = int(config["train"]["batch_size"])
    return {"config": name, "file": f"configs/{CONFIGS[name]}", "model": config["model"]["config"],
            "crop": int(config["data"]["crop"]), "batch_size": batch, "timed_steps": timed,
            "warm_seconds": round(warm_seconds, 1), "seconds": round(seconds, 3),
            "steps_per_s": round(timed / seconds, 3),
            "images_per_s": round(timed * batch / seconds, 2), "codec_parameters": params,
            "discriminator_parameters": params_d}


def build_report(args: argparse.Namespace, results: list[dict]) -> dict:
    """What the results file holds: the settings, the machine (``common.machine``: CPU model, flags and
    core count, which the timings mean little without) and the rows of ``measure``."""
    host = machine()
    cuda = torch.cuda.is_available() and args.device != "cpu"
    return {
        "benchmark": "train_throughput",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({host.get('cpu_model') or host['cpu']})",
        "threads": args.threads, "warm_steps": args.warm, "timed_steps": args.timed,
        "torch": torch.__version__, "python": platform.python_version(), "machine": host,
        "note": "gcrb measured with the discriminator active (gan.disc_start=0)",
        "overrides": args.overrides,
        "results": results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                        help="configurations to measure (default: all)")
    parser.add_argument("--warm", type=int_at_least(0), default=5,
                        help="untimed steps before the timed ones (default %(default)s)")
    parser.add_argument("--timed", type=int_at_least(1), default=10, help="timed training steps (default %(default)s)")
    parser.add_argument("--threads", type=int_at_least(1), default=1, help="CPU threads (default %(default)s)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where to train; auto: CUDA when available, else the CPU (default %(default)s)")
    parser.add_argument("--data", type=Path, help="image folder (default: synthetic images)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every configuration (repeatable)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_throughput.json",
                        help="results file (default benchmarks/results/train_throughput.json)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    for name in args.configs:  # a misspelt --set is refused before anything trains
        try:
            load_config(REPO / "edgecodec" / "configs" / CONFIGS[name], args.overrides)
        except ValueError as exc:
            parser.error(f"--set: {exc}")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or synthetic_images(Path(tmp))
        for name in args.configs:
            row = measure(name, data, args.warm, args.timed, args.threads, args.device, args.overrides)
            results.append(row)
            print(f"{name}: {row['steps_per_s']:.3f} steps/s", file=sys.stderr, flush=True)
    report = build_report(args, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\ntraining throughput, {report['device']}, {args.threads} thread(s), "
          f"{args.warm} warm + {args.timed} timed steps")
    print(f"{'config':<8} {'crop':>5} {'batch':>5} {'steps/s':>8} {'s/step':>7} {'img/s':>7} {'params':>9}")
    for r in results:
        params = r["codec_parameters"] + r["discriminator_parameters"]
        print(f"{r['config']:<8} {r['crop']:>5} {r['batch_size']:>5} {r['steps_per_s']:>8.3f} "
              f"{1 / r['steps_per_s']:>7.3f} {r['images_per_s']:>7.2f} {params / 1e6:>8.2f}M")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
