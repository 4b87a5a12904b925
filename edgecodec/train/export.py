"""Turn a training run's checkpoint into a shipped/registered model: safetensors + model card."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch

from ..models import EdgeCodecModel, ModelConfig
from ..zoo import MODEL_NAME_RULE, save_model, valid_model_name
from .config import parse_yaml
from .trainer import latest_checkpoint


def checkpoint_model(state: dict[str, Any], config_overrides: dict[str, Any] | None = None) -> EdgeCodecModel:
    """The codec held by a loaded checkpoint, in eval mode."""
    model = EdgeCodecModel(ModelConfig.from_dict({**state["model_config"], **(config_overrides or {})}))
    model.load_state_dict(state["model"])
    model.eval()
    return model


def run_record(state: dict[str, Any], run_dir: Path, depth: int = 0) -> dict[str, Any]:
    """What the card says of the run behind a checkpoint: steps, wall time, launches, data and train
    config, model config name and (recursively) the run's own warm start."""
    config = parse_yaml((run_dir / "config.yaml").read_text())
    launches_path = run_dir / "launches.jsonl"
    launches = [json.loads(line) for line in launches_path.read_text().splitlines()] if launches_path.exists() else []
    elapsed = state.get("elapsed_s")
    record = {
        "steps": int(state["step"]),
        "wall_time_s": round(elapsed, 1) if elapsed is not None else None,
        "launches": launches,
        "data": config["data"],
        "train": dict(config["train"]),
        "model_config_name": config["model"]["config"],
    }
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
            card = json.loads(card_path.read_text())
            training = card.get("training", {})
            record["card"] = {"name": card.get("name"), "steps": training.get("steps"),
                              "weights_sha256": card.get("weights_sha256")}
            if training.get("warm_start"):
                record["card"]["warm_start"] = training["warm_start"]
        return record
    state = checkpoint if checkpoint is not None else torch.load(io.BytesIO(data), map_location="cpu",
                                                                  weights_only=True)
    if (path.parent / "config.yaml").is_file():
        return {**record, **run_record(state, path.parent, depth)}
    return {**record, "steps": int(state["step"]), "wall_time_s": state.get("elapsed_s")}


def export_run(run_dir: str | Path, name: str, out_dir: str | Path, card: dict[str, Any] | None = None,
               checkpoint: str | Path | None = None, config_overrides: dict[str, Any] | None = None) -> Path:
    """Export the latest (or given) checkpoint of run_dir as model `name` into out_dir."""
    if not valid_model_name(name):  # before any work (save_model checks it again)
        raise ValueError(f"invalid model name {name!r}: a model name is {MODEL_NAME_RULE}")
    run_dir = Path(run_dir)
    ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    full_card = {
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "training": run_record(state, run_dir),
        **(card or {}),
    }
    return save_model(checkpoint_model(state, config_overrides), out_dir, name, full_card)


def add_kodak_metrics(card_path: Path, rows: list[dict[str, float]], command: str) -> None:
    """Record measured Kodak points (and the rate range they span) in a model card."""
    card = json.loads(card_path.read_text())
    card["kodak"] = {"command": command, "points": rows}
    card["bpp_range"] = [min(r["bpp"] for r in rows), max(r["bpp"] for r in rows)]
    card_path.write_text(json.dumps(card, indent=2) + "\n")
