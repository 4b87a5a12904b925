"""Turn a training run's checkpoint into a shipped/registered model: safetensors + model card."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import yaml

from ..models import EdgeCodecModel, ModelConfig
from ..zoo import MODEL_NAME_RULE, save_model, valid_model_name
from .trainer import latest_checkpoint


def load_checkpoint_model(path: str | Path, config_overrides: dict[str, Any] | None = None
                          ) -> tuple[EdgeCodecModel, int]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EdgeCodecModel(ModelConfig.from_dict({**state["model_config"], **(config_overrides or {})}))
    model.load_state_dict(state["model"])
    model.eval()
    return model, int(state["step"])


def warm_start_record(path: str | Path, depth: int = 0) -> dict[str, Any]:
    """Where a run's ``train.init_from`` weights came from, for the model card: the file and its
    SHA-256; for a checkpoint, its run's steps, launches, config and (recursively) its own warm
    start; for a .safetensors model, the name and training steps in the card beside it."""
    path = Path(path)
    record: dict[str, Any] = {"path": str(path)}
    if not path.is_file():
        return {**record, "note": "not found at export time"}
    record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    if path.suffix == ".safetensors":
        card_path = path.with_suffix(".json")
        if card_path.is_file():
            card = json.loads(card_path.read_text())
            record["card"] = {"name": card.get("name"), "steps": card.get("training", {}).get("steps"),
                              "weights_sha256": card.get("weights_sha256")}
        return record
    state = torch.load(path, map_location="cpu", weights_only=True)
    record.update(steps=int(state["step"]), wall_time_s=state.get("elapsed_s"))
    run_dir = path.parent
    if (run_dir / "config.yaml").is_file():
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        record.update(model_config_name=config["model"]["config"], data=config["data"], train=config["train"])
        init = config["train"].get("init_from")
        if init and depth < 8:
            record["warm_start"] = warm_start_record(init, depth + 1)
    if (run_dir / "launches.jsonl").is_file():
        record["launches"] = [json.loads(line) for line in (run_dir / "launches.jsonl").read_text().splitlines()]
    return record


def export_run(run_dir: str | Path, name: str, out_dir: str | Path, card: dict[str, Any] | None = None,
               checkpoint: str | Path | None = None, config_overrides: dict[str, Any] | None = None) -> Path:
    """Export the latest (or given) checkpoint of run_dir as model `name` into out_dir."""
    if not valid_model_name(name):  # before any work (save_model checks it again)
        raise ValueError(f"invalid model name {name!r}: a model name is {MODEL_NAME_RULE}")
    run_dir = Path(run_dir)
    ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    model, step = load_checkpoint_model(ckpt, config_overrides)
    elapsed = torch.load(ckpt, map_location="cpu", weights_only=True).get("elapsed_s")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    launches_path = run_dir / "launches.jsonl"
    launches = [json.loads(line) for line in launches_path.read_text().splitlines()] if launches_path.exists() else []
    full_card = {
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "training": {
            "steps": step,
            "wall_time_s": round(elapsed, 1) if elapsed is not None else None,
            "launches": launches,
            "data": config["data"],
            "train": {k: v for k, v in config["train"].items()},
            "model_config_name": config["model"]["config"],
            **({"warm_start": warm_start_record(config["train"]["init_from"])}
               if config["train"].get("init_from") else {}),
        },
        **(card or {}),
    }
    return save_model(model, out_dir, name, full_card)


def add_kodak_metrics(card_path: Path, rows: list[dict[str, float]], command: str) -> None:
    """Record measured Kodak points (and the rate range they span) in a model card."""
    card = json.loads(card_path.read_text())
    card["kodak"] = {"command": command, "points": rows}
    card["bpp_range"] = [min(r["bpp"] for r in rows), max(r["bpp"] for r in rows)]
    card_path.write_text(json.dumps(card, indent=2) + "\n")
