"""Training loop for the rate-distortion objective: checkpoints, resume, CSV logs.

Batches are drawn in the main process from an in-memory dataset with RNGs that are saved in
every checkpoint, so a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..losses import RateDistortionLoss
from ..models import EdgeCodecModel, create_model
from .data import make_datasets

log = logging.getLogger(__name__)


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary name then rename: a kill never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = sorted(run_dir.glob("ckpt-*.pt"))
    return ckpts[-1] if ckpts else None


def split_parameters(model: EdgeCodecModel) -> tuple[list, list]:
    """Main parameters and the entropy bottlenecks' quantiles (trained by the auxiliary loss)."""
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return main, aux


class Trainer:
    def __init__(self, config: dict, run_dir: str | Path) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tc = config["train"]
        torch.set_num_threads(int(tc["threads"]))
        torch.manual_seed(tc["seed"])
        random.seed(tc["seed"])
        self.model = create_model(config["model"]["config"], **config["model"].get("overrides", {}))
        self.criterion = RateDistortionLoss(tc["lambdas"], tc["distortion"])
        if len(tc["lambdas"]) != self.model.config.levels:
            raise ValueError(f"{len(tc['lambdas'])} lambdas for {self.model.config.levels} quality levels")
        main, aux = split_parameters(self.model)
        self.optimizer = torch.optim.Adam(main, lr=tc["lr"])
        self.aux_optimizer = torch.optim.Adam(aux, lr=tc["aux_lr"])
        self.step = 0
        self.data_rng = torch.Generator().manual_seed(tc["seed"])
        dc = config["data"]
        for key in ("crop", "val_crop"):
            if dc[key] % self.model.stride:
                raise ValueError(f"data.{key}={dc[key]} must be a multiple of the model's stride "
                                 f"{self.model.stride}")
        self.train_set, self.val_set = make_datasets(dc["root"], dc["crop"], tuple(dc["scale"]),
                                                     dc["val_fraction"], dc["val_crop"])
        if tc.get("init_from"):
            self._init_weights(tc["init_from"])
        with open(self.run_dir / "config.yaml", "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)

    def _init_weights(self, path: str) -> None:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)["model"]
        self.model.load_state_dict(state)
        log.info("initialised weights from %s", path)

    # --- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "model_config": self.model.config.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": self.aux_optimizer.state_dict(),
            "step": self.step,
            "torch_rng": torch.get_rng_state(),
            "data_rng": self.data_rng.get_state(),
            "python_rng": random.getstate(),
        }

    def save_checkpoint(self) -> Path:
        path = self.run_dir / f"ckpt-{self.step:08d}.pt"
        atomic_save(self.state(), path)
        keep = int(self.config["train"]["keep_checkpoints"])
        for old in sorted(self.run_dir.glob("ckpt-*.pt"))[:-keep]:
            old.unlink()
        return path

    def resume(self, path: Path | None = None) -> bool:
        path = path or latest_checkpoint(self.run_dir)
        if path is None:
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.aux_optimizer.load_state_dict(state["aux_optimizer"])
        self.step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        self.data_rng.set_state(state["data_rng"])
        random.setstate(state["python_rng"])
        log.info("resumed from %s at step %d", path, self.step)
        return True

    # --- training ----------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        tc = self.config["train"]
        drop = step >= tc["lr_drop_at"] * tc["steps"]
        return tc["lr"] * (0.1 if drop else 1.0)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        bs = int(self.config["train"]["batch_size"])
        idx = torch.randint(len(self.train_set), (bs,), generator=self.data_rng)
        x = torch.stack([self.train_set[int(i)] for i in idx])
        quality = torch.rand(bs, generator=self.data_rng)
        return x, quality

    def train_step(self) -> dict[str, float]:
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        x, quality = self.next_batch()
        out = self.model(x, quality)
        terms = self.criterion(out, x, quality)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        clip = self.config["train"]["grad_clip"]
        if clip:
            torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], clip)
        self.optimizer.step()
        aux_loss = self.model.aux_loss()
        self.aux_optimizer.zero_grad(set_to_none=True)
        aux_loss.backward()
        self.aux_optimizer.step()
        self.step += 1
        record = {k: float(v.detach()) for k, v in terms.items()}
        record["aux_loss"] = float(aux_loss.detach())
        return record

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Estimated bpp and PSNR on held-out crops at the lowest, middle and highest quality."""
        self.model.eval()
        n = min(len(self.val_set), int(self.config["data"]["val_images"]))
        x = torch.stack([self.val_set[i] for i in range(n)])
        result: dict[str, float] = {}
        for q in (0.0, 0.5, 1.0):
            quality = torch.full((n,), q)
            terms = self.criterion(self.model(x, quality), x, quality)
            result[f"val_bpp_q{q}"] = float(terms["bpp"])
            result[f"val_psnr_q{q}"] = float(terms["psnr"])
            result[f"val_loss_q{q}"] = float(terms["loss"])
        return result

    def fit(self, steps: int | None = None) -> None:
        tc = self.config["train"]
        total = int(steps or tc["steps"])
        log_path = self.run_dir / "log.csv"
        fields = ["step", "time", "lr", "loss", "bpp", "distortion", "mse", "psnr", "aux_loss", "steps_per_s"]
        val_path = self.run_dir / "val.csv"
        running: dict[str, float] = {}
        count, t0, start = 0, time.time(), time.time()
        while self.step < total:
            record = self.train_step()
            for k, v in record.items():
                running[k] = running.get(k, 0.0) + v
            count += 1
            if self.step % tc["log_every"] == 0 or self.step == total:
                row = {k: running[k] / count for k in running}
                row.update(step=self.step, time=round(time.time() - start, 1), lr=self.lr_at(self.step - 1),
                           steps_per_s=count / (time.time() - t0))
                if not all(math.isfinite(v) for v in row.values()):
                    raise FloatingPointError(f"non-finite loss at step {self.step}: {row}")
                _append_csv(log_path, fields, row)
                log.info("step %d loss %.4f bpp %.3f psnr %.2f (%.2f steps/s)", self.step, row["loss"],
                         row["bpp"], row["psnr"], row["steps_per_s"])
                running, count, t0 = {}, 0, time.time()
            if self.step % tc["val_every"] == 0 or self.step == total:
                val = {"step": self.step, **self.validate()}
                _append_csv(val_path, list(val), val)
                log.info("validation %s", val)
            if self.step % tc["ckpt_every"] == 0 or self.step == total:
                self.save_checkpoint()


def _append_csv(path: Path, fields: list[str], row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def run(config: dict, run_dir: str | Path, resume: bool = False, steps: int | None = None) -> Trainer:
    trainer = Trainer(config, run_dir)
    if resume:
        trainer.resume()
    trainer.fit(steps)
    return trainer


if __name__ == "__main__":  # used for background runs before the CLI exists
    import argparse

    from .config import load_config

    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run(load_config(args.config, args.overrides), args.out, resume=args.resume)
