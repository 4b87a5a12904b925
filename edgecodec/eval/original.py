"""Evaluation of the original experiment's runs (configs/original/) next to our codec.

``python -m edgecodec.eval.original RUN [RUN ...] --data ../shared/data/train``

For every run (a folder written by ``edgecodec train --config configs/original/NAME.yaml``), on the
run's held-out images (the hash split of ``data.val_fraction``, each centre-cropped and resized to
128x128 exactly as in training, as 8-bit RGB):

* **CR** as the original defined it: input tensor elements / latent tensor elements (float
  latent, no quantization, no file);
* PSNR and SSIM of the float latent's reconstruction (what the original reported);
* the **real bpp** once that latent is stored in a file: quantized to 8 bits with min/max scaling
  (per tensor, or per channel), the scaling stored in the file, the codes compressed losslessly
  with zlib (see :func:`pack_latent` for the layout), bpp = 8 * file bytes / pixels; and PSNR
  and SSIM of the reconstruction from that 8-bit latent;
* **our codec** (the shipped ``fidelity`` model by default, ``--codec-model``) on the same images
  at the same size: each image coded with the target size of that image's 8-bit latent file
  (codec/rate_search.py bisection on the real .edc bytes, header included), then decoded.

PSNR is per image on 8-bit RGB (reconstructions rounded to 8 bits, as a decoded PNG would be),
averaged over images; SSIM is pytorch-msssim's (11-px Gaussian window) on the same 8-bit images.
The original measured both on float tensors of its training batches (torchmetrics); this
evaluates held-out images only.

Writes ``--out`` (JSON, every number per run and the settings) and prints a Markdown table;
``--plot`` draws PSNR against real bpp (our codec's curve over its quality range on the same
images, the original runs' 8-bit latent files and our codec at the matched sizes).

``python -m edgecodec.eval.original --update RESULTS.json`` measures only our codec's rows again
(after the codec model trained further), on the same images at the latent files' stored sizes.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import zoo
from ..atomic import atomic_path, atomic_write_text
from ..codec.api import _to_tensor
from ..metrics import psnr, ssim
from ..models.registry import config_name

MODES = ("tensor", "channel")
_MODE_CODES = {"tensor": 0, "channel": 1}
_HEADER = struct.Struct("<BHHH")  # mode, C, H, W
ZLIB_LEVEL = 9
PUBLISHED = {  # github.com/Krishsidd8/deep-image-compression README: 128x128 Kaggle cats vs dogs
    "original-cae": {"cr": 48.0, "psnr": 25.15, "ssim": 0.7264},
    "original-crb": {"cr": 12.0, "psnr": 31.11, "ssim": 0.9151},
    "original-gcrb": {"cr": 12.0, "psnr": 30.29, "ssim": 0.9365},
}


# --- the 8-bit latent file -----------------------------------------------------------------------
def quantize_latent(y: np.ndarray, mode: str = "tensor") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-bit codes of a (C, H, W) float latent with min/max scaling, and the float32 minima and
    maxima (one each, or one per channel) that dequantize them."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 3:
        raise ValueError(f"expected a (C, H, W) latent, got shape {y.shape}")
    axes = None if mode == "tensor" else (1, 2)
    lo = np.atleast_1d(y.min(axis=axes)).astype(np.float32)
    hi = np.atleast_1d(y.max(axis=axes)).astype(np.float32)
    lo_b, scale_b = _broadcast(lo, hi, y.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        codes = np.where(scale_b > 0, np.rint((y - lo_b) / scale_b), 0)
    return np.clip(codes, 0, 255).astype(np.uint8), lo, hi


def _broadcast(lo: np.ndarray, hi: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Minima and steps ((max - min) / 255, float32) shaped to broadcast over (C, H, W)."""
    scale = ((hi - lo) / np.float32(255)).astype(np.float32)
    shape = (-1, 1, 1) if lo.size == channels and lo.size > 1 else (1, 1, 1)
    return lo.reshape(shape), scale.reshape(shape)


def dequantize_latent(codes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    lo_b, scale_b = _broadcast(np.asarray(lo, np.float32), np.asarray(hi, np.float32), codes.shape[0])
    return (lo_b + codes.astype(np.float32) * scale_b).astype(np.float32)


def pack_latent(y: np.ndarray, mode: str = "tensor") -> bytes:
    """The latent file: a 7-byte header (mode: 0 per tensor, 1 per channel; C, H, W as uint16
    little endian), the float32 minima then maxima (1 + 1, or C + C, little endian), then the
    8-bit codes in C, H, W order compressed with zlib (level 9)."""
    codes, lo, hi = quantize_latent(y, mode)
    c, h, w = codes.shape
    if max(c, h, w) > 0xFFFF:
        raise ValueError(f"latent shape {codes.shape} does not fit the header")
    return (_HEADER.pack(_MODE_CODES[mode], c, h, w) + lo.astype("<f4").tobytes() + hi.astype("<f4").tobytes()
            + zlib.compress(codes.tobytes(), ZLIB_LEVEL))


def unpack_latent(data: bytes) -> np.ndarray:
    """The dequantized (C, H, W) float32 latent of a :func:`pack_latent` file."""
    mode, c, h, w = _HEADER.unpack_from(data)
    n = 1 if mode == 0 else c
    offset = _HEADER.size
    lo = np.frombuffer(data, "<f4", n, offset).astype(np.float32)
    hi = np.frombuffer(data, "<f4", n, offset + 4 * n).astype(np.float32)
    codes = np.frombuffer(zlib.decompress(data[offset + 8 * n:]), np.uint8)
    if codes.size != c * h * w:
        raise ValueError(f"latent file holds {codes.size} codes for a {c}x{h}x{w} latent")
    return dequantize_latent(codes.reshape(c, h, w), lo, hi)


def latent_bpp(data: bytes, height: int, width: int) -> float:
    """Bits per pixel of a latent file for a height x width image."""
    return 8 * len(data) / (height * width)


# --- models and images ---------------------------------------------------------------------------
def final_checkpoint(run: Path, which: str = "last") -> Path:
    """The run's last ckpt-STEP.pt (the end of training, as the original reported), or best.pt."""
    from ..train.trainer import latest_checkpoint

    path = run / "best.pt" if which == "best" else latest_checkpoint(run)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"{run}: no {'best.pt' if which == 'best' else 'ckpt-*.pt'} checkpoint")
    return path


def load_run(run: Path, which: str = "last") -> tuple[torch.nn.Module, dict, dict]:
    """Float-latent model of a run (eval mode), its config.yaml and checkpoint facts."""
    from ..models import ModelConfig, build_model
    from ..train.config import parse_yaml

    config = parse_yaml((run / "config.yaml").read_text())
    path = final_checkpoint(run, which)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model_config = ModelConfig.from_dict(state["model_config"])
    if model_config.prior != "none":
        raise ValueError(f"{run}: not a float-latent run (prior {model_config.prior!r}); see configs/original/")
    model = build_model(model_config)
    model.load_state_dict(state["model"])
    model.eval()
    facts = {"checkpoint": str(path), "step": int(state["step"]), "train_seconds": float(state.get("elapsed_s", 0))}
    return model, config, facts


def held_out_images(root: str | Path, val_fraction: float, size: int) -> tuple[list[str], list[np.ndarray]]:
    """Names and (size, size, 3) uint8 arrays of the held-out files, prepared as in training."""
    from ..train.data import split_paths, validation_set

    try:  # the validation set its training run used
        val = validation_set(*split_paths(root, val_fraction), size, "resize")
    except ValueError as exc:
        raise ValueError(f"no held-out images in {root} at val_fraction {val_fraction}: {exc}") from None
    return [p.name for p in val.paths], [image.permute(1, 2, 0).numpy() for image in val.images]


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return x[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


# --- evaluation ----------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_run(model: torch.nn.Module, images: list[np.ndarray]) -> dict[str, Any]:
    """CR, float-latent PSNR/SSIM and, per quantization mode, the latent files with their bpp and
    PSNR/SSIM (means over images; per-image file sizes under ``bytes``)."""
    rows: dict[str, list] = {"psnr": [], "ssim": []}
    per_mode = {m: {"bytes": [], "bpp": [], "psnr": [], "ssim": []} for m in MODES}
    cr, shape = None, None
    for rgb in images:
        x = _to_tensor(rgb, 1)  # 128x128: no padding
        y = model.analyze(x)
        cr = x.numel() / y.numel()
        shape = list(y.shape[1:])
        decoded = _to_uint8(model.synthesize(y))
        rows["psnr"].append(psnr(rgb, decoded))
        rows["ssim"].append(ssim(rgb, decoded))
        h, w = rgb.shape[:2]
        for mode in MODES:
            data = pack_latent(y[0].numpy(), mode)
            y_q = torch.from_numpy(unpack_latent(data))[None]
            decoded_q = _to_uint8(model.synthesize(y_q))
            per_mode[mode]["bytes"].append(len(data))
            per_mode[mode]["bpp"].append(latent_bpp(data, h, w))
            per_mode[mode]["psnr"].append(psnr(rgb, decoded_q))
            per_mode[mode]["ssim"].append(ssim(rgb, decoded_q))
    result: dict[str, Any] = {"cr": cr, "latent_shape": shape, "float": {k: _mean(v) for k, v in rows.items()}}
    for mode, values in per_mode.items():
        result[f"q8_{mode}"] = {"bpp": _mean(values["bpp"]), "psnr": _mean(values["psnr"]),
                                "ssim": _mean(values["ssim"]), "bytes": values["bytes"]}
    return result


def evaluate_codec_at_sizes(images: list[np.ndarray], target_bytes: list[int], model_name: str) -> dict[str, Any]:
    """Our codec on each image at (the largest quality within 3% of) its target file size."""
    from ..codec.api import Encoder, decode_array
    from ..codec.imageio import load_image

    out: dict[str, list] = {"bpp": [], "psnr": [], "ssim": [], "quality": [], "reached": []}
    for rgb, target in zip(images, target_bytes):
        result = Encoder(load_image(rgb), model_name).encode_to_size(int(target))
        decoded, header = decode_array(result.data)
        h, w = rgb.shape[:2]
        out["bpp"].append(8 * len(result.data) / (h * w))
        out["psnr"].append(psnr(rgb, decoded))
        out["ssim"].append(ssim(rgb, decoded))
        out["quality"].append(header.quality)
        out["reached"].append(bool(result.reached))
    return {"bpp": _mean(out["bpp"]), "psnr": _mean(out["psnr"]), "ssim": _mean(out["ssim"]),
            "target_bpp": _mean([8 * t / (rgb.shape[0] * rgb.shape[1]) for rgb, t in zip(images, target_bytes)]),
            "reached": int(sum(out["reached"])), "images": len(images), "quality_range": [min(out["quality"]),
                                                                                       max(out["quality"])]}


def evaluate_codec_curve(images: list[np.ndarray], model_name: str,
                         qualities: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)) -> list[dict[str, float]]:
    """Our codec's mean bpp / PSNR / SSIM over the images at each quality."""
    from ..codec.api import Encoder, decode_array, quality_to_q16
    from ..codec.imageio import load_image

    points = []
    encoders = [Encoder(load_image(rgb), model_name) for rgb in images]
    for q in qualities:
        rows = {"bpp": [], "psnr": [], "ssim": []}
        for rgb, enc in zip(images, encoders):
            data = enc.encode(quality_to_q16(q))
            decoded, _ = decode_array(data)
            rows["bpp"].append(8 * len(data) / (rgb.shape[0] * rgb.shape[1]))
            rows["psnr"].append(psnr(rgb, decoded))
            rows["ssim"].append(ssim(rgb, decoded))
        points.append({"quality": q, **{k: _mean(v) for k, v in rows.items()}})
    return points


def update_codec(result: dict[str, Any], codec_model: str, data: str | Path | None = None) -> dict[str, Any]:
    """``result`` (an earlier ``evaluate``) with our codec's rows measured again with ``codec_model``,
    e.g. after that model trained further: the same held-out images, at the sizes of the latent
    files stored per image in ``result``; the runs' own rows are kept as they are."""
    torch.set_num_threads(1)
    started = time.time()
    spec = result["images"]
    names, images = held_out_images(data or spec["root"], float(spec["val_fraction"]), int(spec["size"]))
    if names != spec["names"]:
        raise ValueError(f"the held-out images of {data or spec['root']} are not the results file's "
                         f"({len(names)} against {len(spec['names'])})")
    updated = {**result, "codec_model": codec_model,
               "codec_weights_hash": zoo.find_model(codec_model).weights_hash.hex(),
               "runs": {name: dict(row) for name, row in result["runs"].items()}}
    for row in updated["runs"].values():
        for mode in MODES:
            row[f"codec_at_q8_{mode}"] = evaluate_codec_at_sizes(images, row[f"q8_{mode}"]["bytes"], codec_model)
    if "codec_curve" in result:
        updated["codec_curve"] = evaluate_codec_curve(images, codec_model)
    updated["codec_seconds"] = round(time.time() - started, 1)
    return updated


def run_label(config: dict, facts: dict, threads: int) -> str:
    tc = config["train"]
    return (f"CPU, {threads} thread{'s' if threads != 1 else ''}, {facts['step']} steps, batch {tc['batch_size']}"
            + (f", D from step {config['gan']['disc_start']}" if config.get("model", {}).get("config", "").endswith(
                "gcrb") else ""))


def evaluate(runs: list[Path], data: str | Path | None = None, codec_model: str = "fidelity", which: str = "last",
             curve: bool = False) -> dict[str, Any]:
    """Everything for ``runs`` (see the module docstring) as one JSON-able dict."""
    torch.set_num_threads(1)
    started = time.time()
    loaded = [(run, *load_run(run, which)) for run in runs]
    splits = {(str(data or cfg["data"]["root"]), float(cfg["data"]["val_fraction"]), int(cfg["data"]["val_crop"]))
              for _, _, cfg, _ in loaded}
    if len(splits) != 1:
        raise ValueError(f"the runs hold out different images: {sorted(splits)}")
    root, fraction, size = splits.pop()
    names, images = held_out_images(root, fraction, size)
    result: dict[str, Any] = {
        "images": {"root": root, "val_fraction": fraction, "size": size, "count": len(images), "names": names},
        "codec_model": codec_model, "metrics": "PSNR per image on 8-bit RGB, averaged; SSIM pytorch-msssim on 8-bit",
        "latent_file": "8-bit min/max codes + float32 min/max (per tensor or per channel) + 7-byte header, zlib -9",
        "runs": {}, "torch": torch.__version__,
        "codec_weights_hash": zoo.find_model(codec_model).weights_hash.hex(),
    }
    for run, model, config, facts in loaded:
        name = config["name"]
        row = evaluate_run(model, images)
        spelt = config_name(config["model"]["config"])  # original_cae: PUBLISHED's original-cae
        row.update(facts, run=str(run), config=spelt, batch_size=config["train"]["batch_size"],
                   published=PUBLISHED.get(spelt))
        threads = _launch_threads(run)
        row["label"] = run_label(config, facts, threads)
        row["steps_per_s"] = facts["step"] / facts["train_seconds"] if facts["train_seconds"] else math.nan
        for mode in MODES:
            row[f"codec_at_q8_{mode}"] = evaluate_codec_at_sizes(images, row[f"q8_{mode}"]["bytes"], codec_model)
        result["runs"][name] = row
        print(f"evaluated {name}", file=sys.stderr)
    if curve:
        result["codec_curve"] = evaluate_codec_curve(images, codec_model)
    result["seconds"] = round(time.time() - started, 1)
    return result


def _launch_threads(run: Path) -> int:
    try:
        lines = (run / "launches.jsonl").read_text().splitlines()
        return int(json.loads(lines[-1])["threads"])
    except (OSError, ValueError, KeyError, IndexError):
        return 1


# --- reporting -----------------------------------------------------------------------------------
def markdown(result: dict[str, Any]) -> str:
    """Three tables: the published rows next to ours (float latent), the 8-bit latent files, and
    our codec at those files' sizes."""
    n, size = result["images"]["count"], result["images"]["size"]
    short = {name: name.removeprefix("original-").upper() for name in result["runs"]}
    lines = [
        "| model | images, schedule, hardware | CR (float latent) | PSNR (dB) | SSIM |",
        "|---|---|---|---|---|",
    ]
    for name, published in PUBLISHED.items():
        lines.append(f"| {name.removeprefix('original-').upper()}, published | 128x128 Kaggle cats vs dogs "
                     f"(training batches), 10,000 steps, batch 128 | {published['cr']:.0f}:1 | {published['psnr']:.2f} "
                     f"| {published['ssim']:.4f} |")
    for name, row in result["runs"].items():
        lines.append(f"| {short[name]}, ours | {n} held-out {size}x{size}, {row['label']} | {row['cr']:g}:1 "
                     f"| {row['float']['psnr']:.2f} | {row['float']['ssim']:.4f} |")
    lines += ["", "| ours | latent | 8-bit per tensor + zlib: bpp | PSNR (dB) | SSIM "
                  "| 8-bit per channel + zlib: bpp | PSNR (dB) | SSIM |",
              "|---|---|---|---|---|---|---|---|"]
    for name, row in result["runs"].items():
        t, c = row["q8_tensor"], row["q8_channel"]
        lines.append(f"| {short[name]} | {'x'.join(map(str, row['latent_shape']))} float | {t['bpp']:.3f} "
                     f"| {t['psnr']:.2f} | {t['ssim']:.4f} | {c['bpp']:.3f} | {c['psnr']:.2f} | {c['ssim']:.4f} |")
    lines += ["", f"| `{result['codec_model']}` at the size of | target bpp | bpp | PSNR (dB) | SSIM "
                  "| images within 3% of the target | qualities used |",
              "|---|---|---|---|---|---|---|"]
    for mode in MODES:
        for name, row in result["runs"].items():
            c = row[f"codec_at_q8_{mode}"]
            q0, q1 = c["quality_range"]
            lines.append(f"| {short[name]}, 8-bit per {mode} | {c['target_bpp']:.3f} | {c['bpp']:.3f} "
                         f"| {c['psnr']:.2f} | {c['ssim']:.4f} | {c['reached']} / {c['images']} "
                         f"| {q0:.3f} to {q1:.3f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], out: str | Path) -> Path:
    """PSNR against real bpp on the held-out images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    curve = result.get("codec_curve")
    for ax, metric, label in zip(axes, ("psnr", "ssim"), ("PSNR (dB)", "SSIM")):
        if curve:
            ax.plot([p["bpp"] for p in curve], [p[metric] for p in curve], "-o", color="black", markersize=3,
                    label=f"{result['codec_model']} (quality 0 to 1)")
        for i, (name, row) in enumerate(result["runs"].items()):
            colour = colours[i % len(colours)]
            short = name.removeprefix("original-").upper()
            for mode, marker in (("tensor", "s"), ("channel", "^")):
                q = row[f"q8_{mode}"]
                ax.plot([q["bpp"]], [q[metric]], marker, color=colour, label=f"{short}, 8-bit per {mode} + zlib")
            c = row["codec_at_q8_tensor"]
            ax.plot([c["bpp"]], [c[metric]], "x", color=colour, markersize=8,
                    label=f"{result['codec_model']} at {short}'s size")
        ax.set_xlabel("bits per pixel (file bytes)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize="small", frameon=False)
    fig.suptitle(f"{result['images']['count']} held-out images, {result['images']['size']}x"
                 f"{result['images']['size']}")
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format=out.suffix[1:].lower() or "png")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgecodec.eval.original", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", metavar="RUN", help="run folders of configs/original/*.yaml")
    parser.add_argument("--update", metavar="JSON", help="instead of RUNs: an earlier --out file whose rows of our "
                        "codec are measured again with --codec-model (the same images, at the stored latent "
                        "sizes); written back to it unless --out names another file")
    parser.add_argument("--data", help="training image folder (default: each run's data.root)")
    parser.add_argument("--codec-model", default="fidelity", help="our model to compare (default fidelity)")
    parser.add_argument("--checkpoint", choices=("last", "best"), default="last",
                        help="last: the end of training (default); best: lowest validation loss")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--plot", help="draw PSNR / SSIM against real bpp into this image (adds our codec's curve)")
    args = parser.parse_args(argv)
    if bool(args.runs) == bool(args.update):
        parser.error("give run folders or --update JSON (one of the two)")
    if args.update:
        result = update_codec(json.loads(Path(args.update).read_text()), args.codec_model, args.data)
        args.out = args.out or args.update
    else:
        result = evaluate([Path(r) for r in args.runs], args.data, args.codec_model, args.checkpoint,
                          curve=bool(args.plot))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    if args.plot:
        print(f"wrote {plot(result, args.plot)}", file=sys.stderr)
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
