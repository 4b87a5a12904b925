"""Turn a training run's checkpoint into a shipped/registered model: safetensors + model card."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text
from ..eval.bdrate import bd_rates_between
from ..models import EdgeCodecModel, ModelConfig
from ..models.registry import config_name
from ..zoo import MODEL_NAME_RULE, save_model, valid_model_name
from .config import parse_yaml
from .monitor import read_csv
from .trainer import LR_DROP_FACTOR, latest_checkpoint, load_checkpoint, lr_drop_step


def checkpoint_model(state: dict[str, Any], config_overrides: dict[str, Any] | None = None) -> EdgeCodecModel:
    """The codec held by a loaded checkpoint, in eval mode."""
    model = EdgeCodecModel(ModelConfig.from_dict({**state["model_config"], **(config_overrides or {})}))
    model.load_state_dict(state["model"])
    model.eval()
    return model


def run_record(state: dict[str, Any], run_dir: Path, depth: int = 0) -> dict[str, Any]:
    """What the card says of the run behind a checkpoint: steps, wall time, launches, data and train
    config, model config name and (recursively) the run's own warm start."""
    config = parse_yaml((run_dir / "config.yaml").read_text(), str(run_dir / "config.yaml"))
    launches_path = run_dir / "launches.jsonl"
    launches = [json.loads(line) for line in launches_path.read_text().splitlines()] if launches_path.exists() else []
    elapsed = state.get("elapsed_s")
    record = {
        "steps": int(state["step"]),
        "wall_time_s": round(elapsed, 1) if elapsed is not None else None,
        "lr_drop_step": int(state["time_drop_step"]) if state.get("time_drop_step") is not None
        else lr_drop_step(config["train"]),
        "launches": launches,
        "data": config["data"],
        "train": dict(config["train"]),
        "model_config_name": config_name(config["model"]["config"]),  # one spelling: gdn-hp-edge, not gdn_hp_edge
    }
    if state.get("model_config", {}).get("discriminator") and config.get("gan"):
        record["gan"] = config["gan"]  # the GCRB objective's settings (perceptual weight, crops, ...)
    if state.get("disc_warm_start"):
        record["disc_warm_start"] = state["disc_warm_start"]
    init = config["train"].get("init_from")
    if init and depth < 8:  # recorded by the trainer at launch; older checkpoints: the file as it is now
        record["warm_start"] = state.get("warm_start") or warm_start_record(init, depth + 1)
    return record


def warm_start_record(path: str | Path, depth: int = 0, data: bytes | None = None,
                      checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where a run's ``train.init_from`` weights came from, for the model card: the file and its
    SHA-256; for a checkpoint, its run's record (``run_record``); for a .safetensors model, the
    name, training steps and warm start in the card beside it, so the chain continues through
    exported models. ``data``: the file's bytes, and ``checkpoint``: a checkpoint's contents, when
    the caller has read them already (a checkpoint is then not deserialised a second time)."""
    path = Path(path)
    record: dict[str, Any] = {"path": str(path)}
    if data is None:
        if not path.is_file():
            return {**record, "note": "not found at export time"}
        data = path.read_bytes()
    record["sha256"] = hashlib.sha256(data).hexdigest()
    if path.suffix == ".safetensors":
        card_path = path.with_suffix(".json")
        if card_path.is_file():
            record["card"] = card_summary(json.loads(card_path.read_text()))
        return record
    state = checkpoint if checkpoint is not None else torch.load(io.BytesIO(data), map_location="cpu",
                                                                  weights_only=True)
    if (path.parent / "config.yaml").is_file():
        return {**record, **run_record(state, path.parent, depth)}
    return {**record, "steps": int(state["step"]), "wall_time_s": state.get("elapsed_s")}


def card_summary(card: dict[str, Any]) -> dict[str, Any]:
    """What a warm start records of the card of the weights it loaded: name, steps, seed, weights
    hash and that card's own warm start, so the chain of stages can be followed back."""
    training = card.get("training", {})
    summary = {"name": card.get("name"), "steps": training.get("steps"),
               "seed": training.get("train", {}).get("seed"), "weights_sha256": card.get("weights_sha256")}
    if training.get("warm_start"):
        summary["warm_start"] = training["warm_start"]
    return summary


def export_run(run_dir: str | Path, name: str, out_dir: str | Path, card: dict[str, Any] | None = None,
               checkpoint: str | Path | None = None, config_overrides: dict[str, Any] | None = None) -> Path:
    """Export the latest (or given) checkpoint of run_dir as model `name` into out_dir."""
    if not valid_model_name(name):  # before any work (save_model checks it again)
        raise ValueError(f"invalid model name {name!r}: a model name is {MODEL_NAME_RULE}")
    run_dir = Path(run_dir)
    ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    state = load_checkpoint(ckpt)  # a damaged or foreign file: one line, exit 2
    full_card = {
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "training": {**run_record(state, run_dir), "checkpoint": ckpt.name},
        **(card or {}),
    }
    return save_model(checkpoint_model(state, config_overrides), out_dir, name, full_card)


def add_kodak_metrics(card_path: Path, rows: list[dict[str, float]], command: str, folder: Path) -> None:
    """Record measured Kodak points (and the rate range they span) in a model card, with the
    folder measured (``--kodak`` may name any folder: ``models`` says which)."""
    card = json.loads(card_path.read_text())
    card["kodak"] = {"command": command, "folder": str(folder.resolve()), "folder_name": folder.resolve().name,
                     "points": rows}
    card["bpp_range"] = [min(r["bpp"] for r in rows), max(r["bpp"] for r in rows)]
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")


def _validation_losses(run_dir: Path) -> str:
    rows = [r for r in read_csv(run_dir / "val.csv") if "val_loss" in r] if (run_dir / "val.csv").is_file() else []
    if not rows:
        return "no validation logged"
    first, last = rows[0], rows[-1]
    return (f"validation loss {first['val_loss']:.3f} (step {int(first['step']):,}) -> "
            f"{last['val_loss']:.3f} (step {int(last['step']):,})")


def _against_previous(points: list[dict[str, Any]], previous_points: list[dict[str, Any]]) -> str:
    """Per-quality byte and metric changes and BD-rates of this card's Kodak points against the previous card's."""
    old = {p["quality"]: p for p in previous_points}
    shared = [p for p in points if p["quality"] in old]
    if not shared:
        return "no Kodak quality in common with the previous card"
    per_quality = ", ".join(
        f"q{p['quality']:g} {100 * (p['bpp'] / old[p['quality']]['bpp'] - 1):+.1f}% bytes "
        f"{p['psnr'] - old[p['quality']]['psnr']:+.2f} dB {p['st_lpips'] - old[p['quality']]['st_lpips']:+.4f} ST-LPIPS"
        for p in shared)
    bd = ", ".join(f"{metric} {'n/a' if math.isnan(value) else f'{value:+.1f}%'}"
                   for metric, value in bd_rates_between(previous_points, points).items())
    return f"{per_quality}; BD-rate {bd}"


def append_stage_history(card_path: Path, previous: dict[str, Any], run_dir: Path) -> str:
    """Carry the previous card's ``training.history`` into this card and add this run's stage.

    The stage line says what a reader needs to trust and repeat the step: the run folder, the
    weights it started from (and whether they are the previous card's), every launch command, the
    steps, learning-rate schedule and wall time, the first and last validation loss, and the
    change on the Kodak card points against the previous card (bytes, PSNR and ST-LPIPS per
    quality; BD-rate on PSNR, MS-SSIM and ST-LPIPS, negative = fewer bits at equal quality).
    When the run started from the previous card's weights copied without that card beside them,
    the warm start gets the previous card's summary (``card_summary``), so the chain of stages
    continues. ``previous``: the previous card's contents, read before this export was written
    (it may be the card this export replaced). Returns the line.
    """
    card = json.loads(card_path.read_text())
    training = card["training"]
    train = training["train"]
    start = training.get("warm_start") or {}
    origin = "from scratch"
    if start:
        is_previous = start.get("sha256") == previous.get("weights_sha256")
        whose = "the previous card's" if is_previous else "not the previous card's"
        if is_previous and "card" not in start:  # started from a copy without its card beside it
            start["card"] = card_summary(previous)
        origin = f"from {start['path']} (sha256 {str(start.get('sha256'))[:12]}, {whose} weights)"
    drop = training.get("lr_drop_step", lr_drop_step(train))  # cards before max_seconds: from the config
    launches = "; ".join(f"`{launch['command']}`" for launch in training.get("launches", [])) or "no launch recorded"
    wall = f"{training['wall_time_s']:,.0f} s" if training.get("wall_time_s") is not None else "wall time unknown"
    kodak = _against_previous(card["kodak"]["points"], previous["kodak"]["points"]) \
        if card.get("kodak") and previous.get("kodak") else "no Kodak points to compare"
    line = (f"stage exported {card.get('exported', '?')[:10]} from run {run_dir.name}: {origin}, "
            f"{training['steps']:,} steps of {train['batch_size']} x {training['data']['crop']}^2 crops "
            f"(lr {train['lr']:g}, {train['lr'] * LR_DROP_FACTOR:g} from step {drop:,}; {wall}); launches: {launches}; "
            f"{_validation_losses(run_dir)}; against the previous card (weights sha256 "
            f"{str(previous.get('weights_sha256'))[:12]}) on the Kodak points: {kodak}")
    training["history"] = [*previous.get("training", {}).get("history", []), line]
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    return line
