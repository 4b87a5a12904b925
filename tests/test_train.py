"""Training smoke tests on synthetic images (never Kodak: it is the evaluation set)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, TINY, synthetic_photo
from PIL import Image

import edgecodec
from edgecodec.errors import OutputExistsError, OutputWriteError, UsageError
from edgecodec.train.config import apply_override, load_config
from edgecodec.train.export import add_kodak_metrics, append_stage_history, export_run
from edgecodec.train.monitor import read_csv
from edgecodec.train.trainer import Trainer, latest_checkpoint, run


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Six 96x96 synthetic images: smooth gradients and waves plus noise."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.RandomState(0)
    for i in range(6):
        arr = synthetic_photo(rng)
        folder = root / ("nested" if i % 2 else "")
        folder.mkdir(exist_ok=True)
        Image.fromarray(arr).save(folder / f"img{i}.png")
    (root / "zz_broken.png").write_bytes(b"not an image")  # skipped with a warning
    return root


def make_config(image_folder: Path, *extra: str) -> dict:
    overrides = [
        "model.config=crb",
        "model.overrides={" + ", ".join(f"{k}: {v}" for k, v in TINY.items()) + "}",
        f"data.root={image_folder}",
        "data.crop=64",  # a multiple of the hyperprior stride (64)
        "data.val_crop=64",
        "train.batch_size=4",
        "train.steps=30",
        "train.log_every=10",
        "train.val_every=1000",
        "train.ckpt_every=1000",
        *extra,
    ]
    return load_config(None, overrides)


def state_equal(a: dict, b: dict) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


def test_config_overrides(image_folder):
    config = make_config(image_folder, "train.lr=0.001", "data.scale=[0.75, 1.0]")
    assert config["model"]["overrides"] == TINY
    assert config["train"]["lr"] == 1e-3 and config["data"]["scale"] == [0.75, 1.0]
    assert config["train"]["lambdas"] == load_config(None)["train"]["lambdas"]
    with pytest.raises(ValueError):
        apply_override(config, "train.lr")


def test_exponent_numbers_are_floats(tmp_path):
    """PyYAML (YAML 1.1) reads ``6e-5`` as a string, which reached the optimizer as text (an
    internal error at the first step); configs and overrides read it as the float it means."""
    config = load_config(None, ["train.lr=6e-5", "train.aux_lr=-1E3", "gan.disc_lr=.5e-1", "name=1e5x"])
    assert config["train"]["lr"] == 6e-5 and config["train"]["aux_lr"] == -1000.0
    assert config["gan"]["disc_lr"] == 0.05 and config["name"] == "1e5x"
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 2e-4\n  lambdas: [1e-3, 0.01]\n  steps: 10\n")
    config = load_config(path)
    assert config["train"]["lr"] == 2e-4 and config["train"]["lambdas"] == [1e-3, 0.01]
    assert isinstance(config["train"]["steps"], int)
    with pytest.raises(ValueError, match=r"train\.lr='fast': expected a number"):
        load_config(None, ["train.lr=fast"])
    with pytest.raises(ValueError, match=r"gan\.disc_start='yes'"):  # YAML 1.2: yes is text, not True
        load_config(None, ["gan.disc_start=yes"])
    steps = load_config(None, ["train.steps=1e4"])["train"]["steps"]
    assert steps == 10000 and isinstance(steps, int)  # a whole number written as a float
    assert load_config(None, ["gan.lpips_crop=null"])["gan"]["lpips_crop"] is None  # null: the whole crop


def test_unknown_settings_are_refused(tmp_path):
    """A misspelt setting (``train.lrr=0.1``, a ``trian:`` section) was silently ignored: the run
    trained with the default it meant to change. It is refused, naming the close known one;
    ``model.overrides`` stays free-form (the model's own arguments, checked by the model)."""
    with pytest.raises(ValueError, match=r"unknown setting train\.lrr \(did you mean train\.lr\?\)"):
        load_config(None, ["train.lrr=0.1"])
    with pytest.raises(ValueError, match=r"unknown setting gan\.disc_lrr"):
        load_config(None, ["gan.disc_lrr=0.1"])
    path = tmp_path / "c.yaml"
    path.write_text("trian:\n  lr: 2e-4\n")
    with pytest.raises(ValueError, match=r"unknown setting trian \(did you mean train\?\)"):
        load_config(path)
    assert load_config(None, ["model.overrides={channels: 16}"])["model"]["overrides"] == {"channels": 16}
    for config in sorted((REPO / "edgecodec" / "configs").rglob("*.yaml")):  # every shipped config still loads
        load_config(config)


def test_model_settings_and_trainable_are_checked_up_front():
    """model.overrides.channels=abc was an internal TypeError deep in the model's construction, 0 a
    RuntimeError, a misspelt transform built a CAE in silence, and train.trainable=5 was a TypeError
    (a bare prefix, g_s., was split into letters)."""
    from edgecodec.models.registry import get_config

    for override, fragment in (("channels=abc", "channels='abc': expected a whole number of 1 or more"),
                               ("channels=0", "channels=0: expected a whole number of 1 or more"),
                               ("channels=1.5", "channels=1.5: expected a whole number"),
                               ("levels=abc", "levels='abc'"), ("transform=crbb", "expected one of cae, crb, gdn"),
                               ("res_blocks=-1", "res_blocks=-1: expected a whole number of 0 or more")):
        key, value = override.split("=")
        config = load_config(None, [f"model.overrides.{override}"])
        with pytest.raises(ValueError, match=re.escape(fragment)):
            get_config(config["model"]["config"], **config["model"]["overrides"])
    for bad in ("5", "g_s.", "[]", "[1]"):
        with pytest.raises(ValueError, match=r"train\.trainable=.*expected null or a list of parameter-name"):
            load_config(None, [f"train.trainable={bad}"])
    assert load_config(None, ["train.trainable=[g_s., h_s.]"])["train"]["trainable"] == ["g_s.", "h_s."]


def test_a_configuration_registered_twice_is_replaced_with_a_warning():
    from edgecodec.models import registry
    from edgecodec.models.codec_model import ModelConfig

    saved = dict(registry._CONFIGS)
    try:
        with pytest.warns(UserWarning, match="'crb' is registered already"):
            @registry.register_config
            def crb() -> ModelConfig:
                return ModelConfig(transform="cae")
        assert registry.get_config("crb").transform == "cae"
    finally:
        registry._CONFIGS.clear()
        registry._CONFIGS.update(saved)


def test_training_folders_as_researchers_have_them(tmp_path, caplog):
    """A linked subfolder was left out in silence while linked files were used; hidden files (a
    thumbnail cache, macOS's ._ files) were trained on; a folder whose images all hashed into the
    validation split was "no usable images among 0 files"; a folder with none held out validated on
    its first 8 files in silence, unreadable ones included, and a validation failure did not say so."""
    import logging

    from edgecodec.train.data import find_images, make_datasets

    rng = np.random.RandomState(1)
    own, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    (own / ".thumbnails").mkdir(parents=True)
    elsewhere.mkdir()
    Image.fromarray(synthetic_photo(rng)).save(own / "a.png")
    Image.fromarray(synthetic_photo(rng)).save(own / ".thumbnails" / "t.png")
    Image.fromarray(synthetic_photo(rng)).save(own / ".hidden.png")
    Image.fromarray(synthetic_photo(rng)).save(elsewhere / "b.png")
    (own / "linked").symlink_to(elsewhere)
    (own / "again").symlink_to(elsewhere)  # a second name: its images once
    (elsewhere / "loop").symlink_to(own)  # back up: not walked for ever
    (own / "up").symlink_to(tmp_path)  # above the data folder: what lies beside it (a test set) is no data
    (tmp_path / "kodak").mkdir()
    Image.fromarray(synthetic_photo(rng)).save(tmp_path / "kodak" / "kodim01.png")
    assert find_images(own) == [own / "a.png", own / "again" / "b.png"]
    assert "not following" in caplog.text and "a link back up the tree" in caplog.text
    with pytest.raises(ValueError, match="is a file: give the folder"):
        find_images(own / "a.png")

    one = tmp_path / "one"
    one.mkdir()
    Image.fromarray(synthetic_photo(rng)).save(one / "only.png")
    caplog.set_level(logging.INFO, logger="edgecodec.train.data")
    train, val = make_datasets(one, 64, (0.5, 1.0), val_fraction=0.999, val_crop=64)  # held out: trained on too
    assert len(train) == len(val) == 1 and "held out for validation" in caplog.text
    caplog.clear()
    for i in range(3):
        (one / f"broken{i}.png").write_bytes(b"not an image")  # sorted first: the fallback skips them
    train, val = make_datasets(one, 64, (0.5, 1.0), val_fraction=0.0, val_crop=64)
    assert len(train) == len(val) == 1
    assert "no image file is held out for validation" in caplog.text
    assert "validating on 1 training images" in caplog.text  # the usable ones (it said 8 of any folder)
    assert "training images: 1 of 4 files (3 unreadable, 0 smaller than 64x64, data.crop)" in caplog.text
    with pytest.raises(ValueError, match=r"no usable validation images \(at least 128x128, data.val_crop\)"):
        make_datasets(one, 64, (0.5, 1.0), val_fraction=0.0, val_crop=128)
    for i in range(9):  # resize mode's fallback: the first 8 usable images, not the first 8 files
        Image.fromarray(synthetic_photo(rng)).save(one / f"z{i}.png")
    train, val = make_datasets(one, 32, (1.0, 1.0), val_fraction=0.0, val_crop=32, mode="resize")
    assert len(train) == 10 and len(val) == 8 and "broken0.png" not in str(val.paths)
    from edgecodec.eval.original import held_out_images  # what the original-experiment evaluation measures on
    names, images = held_out_images(one, 0.0, 32)
    assert names == [p.name for p in val.paths] and all(image.shape == (32, 32, 3) for image in images)


def test_loss_decreases(image_folder, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        trainer = Trainer(make_config(image_folder), tmp_path / "run")
        assert torch.get_num_threads() == 1
        trainer.close()  # gives the caller's thread count back (it stayed at train.threads)
        assert torch.get_num_threads() == 2
        (tmp_path / "afile").write_text("")
        with pytest.raises(OutputWriteError):  # a Trainer that cannot be made leaves it alone too
            Trainer(make_config(image_folder), tmp_path / "afile" / "run")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    trainer = Trainer(make_config(image_folder), tmp_path / "run2")
    assert torch.get_num_threads() == 1
    assert trainer.model.config.channels == TINY["channels"]
    before = trainer.validate()
    records = [trainer.train_step() for _ in range(30)]
    after = trainer.validate()
    assert trainer.step == 30
    assert set(records[0]) >= {"loss", "bpp", "mse", "psnr", "aux_loss"}
    losses = [r["loss"] for r in records]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    assert after["val_loss_q0.5"] < before["val_loss_q0.5"], (before, after)
    assert after["val_psnr_q0.5"] > before["val_psnr_q0.5"]


def stand_in_rank(monkeypatch, other: dict) -> dict:
    """Make distributed.gather_objects return ``other`` (sums and counts, as sum_over_ranks gathers
    them) beside this process's own, for the gathers of dicts with other's first key: a second
    rank without torchrun. Returns ``other``, which the test may change between fits."""
    from edgecodec.train import distributed

    real, key = distributed.gather_objects, next(iter(other))

    def with_another_rank(info, obj):
        return [*real(info, obj), other] if isinstance(obj, dict) and key in obj else real(info, obj)

    monkeypatch.setattr(distributed, "gather_objects", with_another_rank)
    return other


def test_logged_means_are_of_every_ranks_steps(image_folder, tmp_path, monkeypatch):
    """Under torchrun, log.csv held rank 0's own losses (its share of the batch); a non-finite
    loss on another rank raised there alone and left rank 0 waiting in the next collective.
    Another rank is stood in for by what gather_objects returns beside this process's sums."""
    other = stand_in_rank(monkeypatch, {"loss": [1e6, 1]})
    trainer = Trainer(make_config(image_folder, "train.steps=1", "train.log_every=1", "train.tensorboard=false"),
                      tmp_path / "run")
    trainer.fit()
    rows = read_csv(tmp_path / "run" / "log.csv")
    assert 4.9e5 < float(rows[0]["loss"]) < 5.1e5  # (own loss, a few hundred, + 1e6) / 2
    other["loss"] = [float("nan"), 1]
    trainer = Trainer(make_config(image_folder, "train.steps=1", "train.log_every=1", "train.tensorboard=false"),
                      tmp_path / "nan")
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        trainer.fit()


def test_logged_batch_metrics_are_of_every_ranks_last_batch(image_folder, tmp_path, monkeypatch):
    """Under torchrun, log.csv's ssim and lpips (and the float-latent models' batch_psnr) were rank
    0's last batch alone, beside losses averaged over every rank's: they are averaged over ranks
    too. Another rank is stood in for by what gather_objects returns beside this process's."""
    stand_in_rank(monkeypatch, {"ssim": [100.0, 1], "lpips": [100.0, 1]})
    trainer = Trainer(make_config(image_folder, "train.steps=1", "train.log_every=1", "train.tensorboard=false"),
                      tmp_path / "run")
    trainer.fit()
    row = read_csv(tmp_path / "run" / "log.csv")[0]
    # (own SSIM, in [-1, 1], + 100) / 2, and (own ST-LPIPS, about 0.5, + 100) / 2; rank 0's alone was below 1
    assert 49 < float(row["ssim"]) < 51 and 49 < float(row["lpips"]) < 51, row


def test_steps_per_second_counts_training_steps_only(image_folder, tmp_path, monkeypatch):
    """steps_per_s of the steps after a log step counted that step's validation and checkpoint as
    training time: a slow validation made training look slow."""
    real = Trainer.validate

    def slow_validate(self):
        time.sleep(3)
        return real(self)

    monkeypatch.setattr(Trainer, "validate", slow_validate)
    trainer = Trainer(make_config(image_folder, "train.steps=4", "train.log_every=2", "train.val_every=2",
                                  "train.tensorboard=false", "train.log_lpips=false", "train.val_lpips=false"),
                      tmp_path / "run")
    trainer.fit()
    rows = read_csv(tmp_path / "run" / "log.csv")
    assert [int(r["step"]) for r in rows] == [2, 4]
    # two tiny steps take well under two seconds (about 0.05 s) even on a loaded machine: the 3 s
    # validation at step 2 made it below 0.67
    assert float(rows[1]["steps_per_s"]) > 1, rows


def test_a_trainer_takes_a_partial_config_from_python(image_folder, tmp_path):
    """Trainer(config, RUN) with only the settings that differ from the defaults (not through
    load_config) failed with a bare KeyError deep in the trainer; it is merged onto the defaults
    and checked as load_config does. Values from Python that YAML never gives (a Path, a tuple,
    numpy numbers) failed when the run's config.yaml was written; they are stored as YAML's."""
    lambdas = np.geomspace(1e-3, 0.1, 6)  # a sweep's numpy numbers
    partial = {"model": {"config": "crb", "overrides": dict(TINY)},
               "data": {"root": image_folder, "crop": 64, "val_crop": 64, "scale": (0.5, 1.0)},
               "train": {"batch_size": np.int64(2), "steps": 2, "lr": np.float64(1e-3), "tensorboard": False,
                         "lambdas": list(lambdas)}}
    given = repr(partial)
    trainer = Trainer(partial, tmp_path / "run")
    assert repr(partial) == given  # the caller's dict is left as it was
    as_yaml = f"[{', '.join(map(repr, lambdas.tolist()))}]"
    assert trainer.config == make_config(image_folder, "train.batch_size=2", "train.steps=2", "train.lr=1e-3",
                                         "train.tensorboard=false", "train.log_every=50", "train.val_every=1000",
                                         "train.ckpt_every=500", f"train.lambdas={as_yaml}")
    assert trainer.config == load_config(tmp_path / "run" / "config.yaml")  # written, and loads as written
    assert type(trainer.config["train"]["lr"]) is float and type(trainer.config["train"]["batch_size"]) is int
    trainer.fit()
    assert trainer.step == 2
    trainer.close()
    # unknown settings and wrong types are refused as load_config refuses them
    with pytest.raises(ValueError, match=r"unknown setting train\.lrr \(did you mean train\.lr\?\)"):
        Trainer({"train": {"lrr": 0.1}}, tmp_path / "typo")
    with pytest.raises(ValueError, match=r"train\.steps='many': expected a number"):
        Trainer({"train": {"steps": "many"}}, tmp_path / "type")
    with pytest.raises(TypeError, match="load_config"):
        Trainer(str(REPO / "edgecodec" / "configs" / "crb.yaml"), tmp_path / "path")
    assert not (tmp_path / "typo").exists() and not (tmp_path / "type").exists()


def test_fit_steps_must_be_a_positive_whole_number(image_folder, tmp_path):
    """fit(0) trained the whole train.steps schedule, fit(-1) returned having trained nothing, and
    fit(2.5) stopped at step 2: each is refused (None trains to train.steps)."""
    trainer = Trainer(make_config(image_folder, "train.steps=2", "train.tensorboard=false"), tmp_path / "run")
    for steps in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=rf"steps={steps!r}: expected a whole number of at least 1"):
            trainer.fit(steps)
    assert trainer.step == 0 and not (tmp_path / "run" / "log.csv").exists()
    trainer.fit(1)
    assert trainer.step == 1
    trainer.close()
    with pytest.raises(ValueError, match="steps=0"):  # run() and resume() likewise
        run(make_config(image_folder, "train.steps=2", "train.tensorboard=false"), tmp_path / "run", resume=True,
            steps=0)


def test_fit_writes_checkpoints_logs_and_exports(image_folder, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    config = make_config(image_folder, "train.steps=6", "train.ckpt_every=2", "train.keep_checkpoints=2",
                         "train.log_every=3", "train.val_every=6")
    trainer = run(config, run_dir)
    assert trainer.step == 6
    ckpts = sorted(p.name for p in run_dir.glob("ckpt-*.pt"))
    assert ckpts == ["ckpt-00000004.pt", "ckpt-00000006.pt"]  # older ones pruned
    assert latest_checkpoint(run_dir).name == "ckpt-00000006.pt"
    assert not list(run_dir.glob("*.tmp"))
    with open(run_dir / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    with open(run_dir / "val.csv") as f:
        val = list(csv.DictReader(f))
    assert [int(r["step"]) for r in val] == [6] and "val_psnr_q1.0" in val[0]
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == config
    state = torch.load(run_dir / "ckpt-00000006.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 6 and state["model_config"]["channels"] == TINY["channels"]
    assert not state_equal(state["model"], trainer.model.state_dict())

    # Export the run as a model and code with it.
    models = tmp_path / "models"
    weights = export_run(run_dir, "smoke", models, card={"summary": "smoke test"})
    assert weights == models / "smoke.safetensors" and weights.exists()
    card = json.loads((models / "smoke.json").read_text())
    assert card["name"] == "smoke" and card["summary"] == "smoke test"
    assert card["training"]["steps"] == 6
    assert card["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert card["config"]["channels"] == TINY["channels"]
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", os.pathsep.join([str(models), os.environ["EDGECODEC_MODEL_PATH"]]))
    image = np.asarray(Image.open(image_folder / "img0.png").convert("RGB"))
    data = edgecodec.compress(image, model="smoke", quality=0.7)
    header = edgecodec.read_header(data)
    assert header.model == "smoke" and header.weights_hash == bytes.fromhex(card["weights_sha256"])[:8]
    decoded = edgecodec.decompress(data)
    assert decoded.size == (96, 96) and decoded.mode == "RGB"
    # Exporting again from an explicit checkpoint gives other weights: old streams are refused.
    export_run(run_dir, "smoke", models, checkpoint=run_dir / "ckpt-00000004.pt")
    from edgecodec.errors import WeightsMismatchError

    with pytest.raises(WeightsMismatchError):
        edgecodec.decompress(data)


def _kodak_points(bpp_scale: float) -> list[dict[str, float]]:
    return [{"quality": q, "bpp": bpp_scale * (0.1 + q), "psnr": 25 + 8 * q, "ms_ssim": 0.85 + 0.1 * q,
             "st_lpips": 0.3 - 0.25 * q} for q in (0.0, 0.5, 1.0)]


def test_a_continued_run_carries_the_previous_cards_history_and_adds_its_stage(image_folder, tmp_path):
    models, nxt = tmp_path / "models", tmp_path / "next"
    run(make_config(image_folder, "train.steps=2"), tmp_path / "base")
    base = export_run(tmp_path / "base", "m", models).with_suffix(".json")
    add_kodak_metrics(base, _kodak_points(1.0), "measured elsewhere", tmp_path)
    card = json.loads(base.read_text())
    card["training"]["history"] = ["an earlier stage"]
    base.write_text(json.dumps(card))

    run(make_config(image_folder, "train.steps=4", "train.val_every=2", "train.ckpt_every=2",
                    f"train.init_from={models / 'm.safetensors'}"), tmp_path / "continued")
    cont = export_run(tmp_path / "continued", "m", nxt).with_suffix(".json")
    add_kodak_metrics(cont, _kodak_points(0.9), "measured elsewhere", tmp_path)  # same qualities, 10% fewer bytes
    line = append_stage_history(cont, json.loads(base.read_text()), tmp_path / "continued")

    history = json.loads(cont.read_text())["training"]["history"]
    assert history == ["an earlier stage", line]
    assert "from run continued:" in line and "the previous card's weights" in line and "4 steps" in line
    assert re.search(r"validation loss [0-9.]+ \(step 2\) -> [0-9.]+ \(step 4\)", line), line
    assert line.count("-10.0% bytes +0.00 dB +0.0000 ST-LPIPS") == 3
    assert "BD-rate psnr -10.0%, ms_ssim -10.0%, st_lpips -10.0%" in line
    # a stage that did not start from the previous card's weights says so
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**card, "weights_sha256": "0" * 64}))
    assert "not the previous card's weights" in append_stage_history(cont, json.loads(other.read_text()), tmp_path / "continued")


def test_a_stage_started_from_a_copy_without_its_card_links_the_previous_card(image_folder, tmp_path):
    models = tmp_path / "models"
    run(make_config(image_folder, "train.steps=2", "train.seed=3"), tmp_path / "base")
    base_weights = export_run(tmp_path / "base", "m", models)
    base = base_weights.with_suffix(".json")
    copy = tmp_path / "elsewhere" / "stage.safetensors"  # the weights alone, no card beside them
    copy.parent.mkdir()
    copy.write_bytes(base_weights.read_bytes())
    run(make_config(image_folder, "train.steps=2", "train.seed=4", f"train.init_from={copy}"), tmp_path / "continued")
    cont = export_run(tmp_path / "continued", "m", tmp_path / "next").with_suffix(".json")
    assert "card" not in json.loads(cont.read_text())["training"]["warm_start"]

    assert "the previous card's weights" in append_stage_history(cont, json.loads(base.read_text()), tmp_path / "continued")
    start = json.loads(cont.read_text())["training"]["warm_start"]
    previous = json.loads(base.read_text())
    assert start["path"] == str(copy) and start["sha256"] == previous["weights_sha256"]
    assert start["card"] == {"name": "m", "steps": 2, "seed": 3, "weights_sha256": previous["weights_sha256"]}


def test_export_model_over_its_previous_card_keeps_that_cards_history(image_folder, tmp_path, capsys):
    """`export-model --force --previous models/m.json` replacing models/m.json: the previous card
    is read before the export writes over it, so its history is carried, not lost."""
    from edgecodec import cli

    def main(*args) -> int:
        return cli.main([str(a) for a in args])

    models = tmp_path / "models"
    run(make_config(image_folder, "train.steps=2"), tmp_path / "base")
    card_path = export_run(tmp_path / "base", "m", models).with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["training"]["history"] = ["an earlier stage"]
    card_path.write_text(json.dumps(card))
    run(make_config(image_folder, "train.steps=2", f"train.init_from={models / 'm.safetensors'}"),
        tmp_path / "continued")
    assert main("export-model", tmp_path / "continued", "--name", "m", "--out", models, "--force",
                "--previous", card_path, "-q") == 0
    history = json.loads(card_path.read_text())["training"]["history"]
    assert len(history) == 2 and history[0] == "an earlier stage", history
    assert "the previous card's weights" in history[1] and "from run continued:" in history[1]
    capsys.readouterr()
    (tmp_path / "list.json").write_text("[1, 2]")
    for bad in ("list.json", "none.json"):
        assert main("export-model", tmp_path / "continued", "--name", "m2", "--out", models,
                    "--previous", tmp_path / bad) == 2
        assert capsys.readouterr().err.startswith(f"edgecodec: error: --previous {tmp_path / bad}: ")
    assert not (models / "m2.json").exists()


def test_export_model_takes_one_checkpoint_and_says_what_it_measured(image_folder, tmp_path, capsys, monkeypatch):
    """export-model RUN/best.pt was "no checkpoint in RUN/best.pt" (only the newest checkpoint could
    be shipped); the card now names its checkpoint and the folder --kodak measured, which `models`
    shows instead of "on Kodak" for any folder; the weights follow the umask (safetensors wrote
    them 0600, the card 0644); each launch records its working folder (relative --data paths)."""
    from edgecodec import cli

    run(make_config(image_folder, "train.steps=4", "train.ckpt_every=2", "train.val_every=2"), tmp_path / "r")
    assert (tmp_path / "r" / "best.pt").is_file()
    models = tmp_path / "models"
    evaluation = tmp_path / "my-crops"
    evaluation.mkdir()
    Image.fromarray(synthetic_photo(np.random.RandomState(5), 64)).save(evaluation / "a.png")
    mask = os.umask(0o022)
    try:
        assert cli.main(["export-model", str(tmp_path / "r" / "best.pt"), "--name", "b", "--out", str(models),
                         "--kodak", str(evaluation), "--qualities", "0,1", "-q"]) == 0
    finally:
        os.umask(mask)
    card = json.loads((models / "b.json").read_text())
    assert card["training"]["checkpoint"] == "best.pt"
    assert card["kodak"]["folder"] == str(evaluation) and card["kodak"]["folder_name"] == "my-crops"
    assert (models / "b.safetensors").stat().st_mode & 0o777 == 0o644
    assert json.loads((tmp_path / "r" / "launches.jsonl").read_text().splitlines()[0])["cwd"] == os.getcwd()
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", str(models))
    capsys.readouterr()
    assert cli.main(["models"]) == 0
    assert "bpp on my-crops" in capsys.readouterr().out
    # --qualities without --kodak measured nothing and was not even checked
    assert cli.main(["export-model", str(tmp_path / "r"), "--name", "c", "--out", str(models), "--qualities", "5"]) == 2
    assert capsys.readouterr().err.startswith("edgecodec: error: --qualities are measured with --kodak FOLDER")
    assert not (models / "c.json").exists()


def test_a_stage_with_its_parents_seed_is_warned_that_it_replays_the_same_batches(image_folder, tmp_path, caplog):
    run(make_config(image_folder, "train.steps=2", "train.seed=3"), tmp_path / "base")
    weights = export_run(tmp_path / "base", "m", tmp_path / "models")
    for source in (weights, tmp_path / "base" / "ckpt-00000002.pt"):  # an exported model, a checkpoint
        for seed, replays in ((3, True), (4, False)):
            caplog.clear()
            trainer = Trainer(make_config(image_folder, f"train.init_from={source}", f"train.seed={seed}"),
                              tmp_path / f"{source.suffix[1:]}-{seed}")
            assert trainer.warm_start is not None
            assert ("replays its batch sequence" in caplog.text) is replays, (source, seed)


def test_export_without_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        export_run(tmp_path / "empty", "x", tmp_path / "models")


def test_export_refuses_a_file_that_is_no_training_checkpoint(tmp_path):
    """A torch file of plain tensors that is no checkpoint (a state dict saved by hand, a list),
    given to export-model, was an internal KeyError / AttributeError; a run whose config.yaml is
    not YAML was refused without naming the file."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(load_config(None)))
    torch.save({"a": torch.zeros(1)}, run_dir / "weights.pt")
    torch.save([1, 2], run_dir / "list.pt")
    for name in ("weights.pt", "list.pt"):
        with pytest.raises(ValueError, match=f"{name}: not a training checkpoint"):
            export_run(run_dir, "x", tmp_path / "models", checkpoint=run_dir / name)
    assert not (tmp_path / "models").exists()


def test_export_names_a_run_config_that_is_not_yaml(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    run(make_config(image_folder, "train.steps=1"), run_dir)
    (run_dir / "config.yaml").write_text("train: [\n")
    with pytest.raises(ValueError, match=re.escape(f"{run_dir / 'config.yaml'}: not valid YAML")):
        export_run(run_dir, "x", tmp_path / "models")


def test_a_trainer_does_not_train_over_another_run(image_folder, tmp_path):
    """Trainer(config, RUN).fit() on a folder holding a run logged its steps a second time into
    the run's log.csv and replaced its checkpoints (run() and the CLI refused; the class did not).
    Trainer(config, RUN).resume() continues it, as before."""
    config = make_config(image_folder, "train.steps=2", "train.log_every=1", "train.ckpt_every=2",
                         "train.tensorboard=false")
    first = Trainer(config, tmp_path / "run")
    first.fit()
    first.close()
    log = (tmp_path / "run" / "log.csv").read_text()
    checkpoint = (tmp_path / "run" / "ckpt-00000002.pt").read_bytes()
    config_yaml = (tmp_path / "run" / "config.yaml").read_text()
    again = Trainer(make_config(image_folder, "train.steps=2", "train.lr=1e-3"), tmp_path / "run")
    with pytest.raises(OutputExistsError, match="already holds a run .*resume\\(\\) first"):
        again.fit()
    assert (tmp_path / "run" / "log.csv").read_text() == log
    assert (tmp_path / "run" / "ckpt-00000002.pt").read_bytes() == checkpoint
    assert (tmp_path / "run" / "config.yaml").read_text() == config_yaml  # not replaced by the new config
    again.close()
    resumed = Trainer(config, tmp_path / "run")
    assert resumed.resume() and resumed.step == 2


def test_resume_is_exact(image_folder, tmp_path):
    config = make_config(image_folder, "train.steps=10")
    straight = Trainer(config, tmp_path / "a")
    losses_a = [straight.train_step()["loss"] for _ in range(10)]

    first = Trainer(config, tmp_path / "b")
    losses_b = [first.train_step()["loss"] for _ in range(5)]
    path = first.save_checkpoint()
    assert path.name == "ckpt-00000005.pt"
    del first
    torch.manual_seed(12345)  # disturb global RNG state: resume must restore it
    second = Trainer(config, tmp_path / "b")
    assert second.resume() is True
    assert second.step == 5
    losses_b += [second.train_step()["loss"] for _ in range(5)]

    assert losses_a == losses_b
    differing = state_equal(straight.model.state_dict(), second.model.state_dict())
    assert not differing, differing
    opt_a, opt_b = straight.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert opt_a.keys() == opt_b.keys()
    assert all(torch.equal(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"]) for k in opt_a)


def test_a_resume_on_a_changed_data_folder_says_so(tmp_path, caplog):
    """The folder changed between a run and its --resume (an image removed): the validation set
    shrank and best.pt's loss was compared across two sets in silence."""
    import shutil

    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.RandomState(7)
    for i in range(4):
        Image.fromarray(synthetic_photo(rng)).save(folder / f"img{i}.png")
    run(make_config(folder, "train.steps=2", "train.ckpt_every=2"), tmp_path / "r")
    caplog.clear()
    Trainer(load_config(tmp_path / "r" / "config.yaml"), tmp_path / "r", defer_warm_start=True).resume()
    assert "data folder changed" not in caplog.text  # the same files: nothing said
    shutil.copy(folder / "img0.png", folder / "img9.png")
    Trainer(load_config(tmp_path / "r" / "config.yaml"), tmp_path / "r", defer_warm_start=True).resume()
    assert "the data folder changed since" in caplog.text and "training images 4 -> 5" in caplog.text


def test_a_resume_on_another_number_of_processes_or_from_a_stripped_checkpoint_says_so(image_folder, tmp_path,
                                                                                       caplog):
    """A run resumed on another number of processes changed its batch in silence (train.batch_size
    is per process); a checkpoint stripped for the trip back from a GPU (scripts/gpu/strip_checkpoint.py)
    was "internal error: KeyError: 'optimizer'"."""
    from edgecodec.errors import UsageError

    run(make_config(image_folder, "train.steps=2", "train.ckpt_every=2", "train.batch_size=2"), tmp_path / "r")
    last = tmp_path / "r" / "ckpt-00000002.pt"
    state = torch.load(last, weights_only=True)
    torch.save({**state, "world_size": 2}, last)  # as two processes under torchrun write it
    caplog.clear()
    Trainer(load_config(tmp_path / "r" / "config.yaml"), tmp_path / "r", defer_warm_start=True).resume()
    assert "trained by 2 process(es) and resumes on 1: the batch of a step changes from 4 to 2 images" in caplog.text
    subprocess.run([sys.executable, str(REPO / "scripts" / "gpu" / "strip_checkpoint.py"), str(tmp_path / "r")],
                   check=True, capture_output=True)
    with pytest.raises(UsageError, match="holds no optimizer state .* train.init_from="):
        Trainer(load_config(tmp_path / "r" / "config.yaml"), tmp_path / "r", defer_warm_start=True).resume()


def test_resume_through_run(image_folder, tmp_path):
    config = make_config(image_folder, "train.steps=8", "train.ckpt_every=4")
    straight = Trainer(config, tmp_path / "a")
    for _ in range(8):
        straight.train_step()
    run(config, tmp_path / "b", steps=4)
    assert Trainer(config, tmp_path / "empty").resume() is False
    resumed = run(config, tmp_path / "b", resume=True)
    assert resumed.step == 8
    assert not state_equal(straight.model.state_dict(), resumed.model.state_dict())


def test_steps_stops_a_run_without_changing_its_schedule(image_folder, tmp_path, caplog):
    """``--steps`` (run's ``steps``) moves the stop, not the lr drop, and says so; overriding
    ``train.steps`` on resume lengthens the schedule and the run folder keeps it."""
    config = make_config(image_folder, "train.steps=8", "train.ckpt_every=2", "train.lr_drop_at=0.5")
    with caplog.at_level("INFO", logger="edgecodec.train.trainer"):
        cut = run(config, tmp_path / "run", steps=2)
    assert "stopping at step 2 of a train.steps=8 schedule (lr drop at step 4)" in caplog.text
    assert cut.lr_at(3) == config["train"]["lr"] and cut.lr_at(4) == config["train"]["lr"] * 0.1
    longer = load_config(tmp_path / "run" / "config.yaml", ["train.steps=12"])
    resumed = run(longer, tmp_path / "run", resume=True, steps=4)
    assert resumed.step == 4 and resumed.lr_at(5) == config["train"]["lr"]
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["steps"] == 12


def test_max_seconds_stops_the_run_and_moves_the_lr_drop(image_folder, tmp_path, monkeypatch):
    """A wall-clock budget ends the run early with a checkpoint, and the lr drop comes at lr_drop_at
    of the budget when that is earlier than lr_drop_at of the steps; resume and the card keep it."""
    clock = iter(range(10**6))  # every time.time() call of the trainer's is one second later
    fake_time = types.SimpleNamespace(time=lambda: float(next(clock)), strftime=time.strftime)
    monkeypatch.setattr("edgecodec.train.trainer.time", fake_time)  # the trainer's clock only, not TensorBoard's
    config = make_config(image_folder, "train.steps=100", "train.lr_drop_at=0.5", "train.max_seconds=8",
                         "train.ckpt_every=1000")
    trainer = run(config, tmp_path / "run")
    assert 4 <= trainer.step <= 8  # at least 1 s a step, so the 8 s budget ends it long before step 100
    assert trainer.elapsed_s >= 8
    drop = trainer.time_drop_step
    assert drop is not None and 2 <= drop < trainer.step
    lr = config["train"]["lr"]
    assert trainer.lr_at(drop - 1) == lr and trainer.lr_at(drop) == lr * 0.1
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt.name == f"ckpt-{trainer.step:08d}.pt"
    saved = (tmp_path / "run" / "config.yaml").read_text()
    with pytest.raises(UsageError, match="train.max_seconds=8 spent"):  # it trained one step more
        run(config, tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "config.yaml").read_text() == saved
    assert latest_checkpoint(tmp_path / "run") == ckpt
    longer = {**config, "train": {**config["train"], "max_seconds": 1000}}
    resumed = Trainer(longer, tmp_path / "run", defer_warm_start=True)
    resumed.resume()
    assert resumed.time_drop_step == drop and resumed.lr_drop_step() == drop
    models = tmp_path / "models"
    export_run(tmp_path / "run", "timed", models)
    assert json.loads((models / "timed.json").read_text())["training"]["lr_drop_step"] == drop
    # Without a budget the schedule is the steps' alone.
    plain = run(make_config(image_folder, "train.steps=4", "train.lr_drop_at=0.5"), tmp_path / "plain")
    assert plain.step == 4 and plain.time_drop_step is None and plain.lr_drop_step() == 2


def test_fresh_start_refuses_a_folder_holding_a_run(image_folder, tmp_path):
    """Without --resume, an old run's folder is refused before anything is written: its newer
    checkpoints would make the new run's be pruned first, and the logs would mix."""
    config = make_config(image_folder, "train.steps=4", "train.ckpt_every=4", "train.log_every=2")
    run(config, tmp_path / "run", steps=4)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    with pytest.raises(OutputExistsError, match="--resume"):
        run(config, tmp_path / "run")
    after = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert after == before


def test_a_fresh_start_does_not_inherit_a_dead_runs_launches(image_folder, tmp_path):
    """A run killed before it logged anything leaves config.yaml and launches.jsonl: a new run in
    that folder (allowed: nothing of the old one is lost) listed the dead launch as its own, and
    the card showed it; its launch record starts over. A resume keeps adding to it."""
    config = make_config(image_folder, "train.steps=2", "train.ckpt_every=2", "train.log_every=2")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "launches.jsonl").write_text('{"command": "edgecodec train (killed at start-up)"}\n')
    run(config, tmp_path / "run")
    launches = (tmp_path / "run" / "launches.jsonl").read_text().splitlines()
    assert len(launches) == 1 and "killed" not in launches[0]
    run({**config, "train": {**config["train"], "steps": 3}}, tmp_path / "run", resume=True)
    assert len((tmp_path / "run" / "launches.jsonl").read_text().splitlines()) == 2


def test_resume_without_checkpoint_redoes_the_logged_steps(image_folder, tmp_path):
    """A run killed before its first checkpoint restarts from step 0: its logged rows go."""
    config = make_config(image_folder, "train.steps=4", "train.ckpt_every=100", "train.log_every=2")
    run(config, tmp_path / "run", steps=4)
    for ckpt in (tmp_path / "run").glob("ckpt-*.pt"):
        ckpt.unlink()
    assert (tmp_path / "run" / "log.csv").read_text().count("\n") == 3  # header + steps 2, 4
    assert Trainer(config, tmp_path / "run").resume() is False
    assert (tmp_path / "run" / "log.csv").read_text().count("\n") == 1


def test_resumed_run_logs_each_step_once_in_tensorboard_too(image_folder, tmp_path):
    """Steps a killed launch logged after its last checkpoint are logged again on resume: the CSV
    drops the old rows, and TensorBoard hides the old events (SummaryWriter's purge_step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = make_config(image_folder, "train.steps=6", "train.ckpt_every=3", "train.log_every=1",
                         "train.tensorboard=true")
    run(config, tmp_path / "run")
    (tmp_path / "run" / "ckpt-00000006.pt").unlink()  # as if killed after logging steps 4 to 6
    time.sleep(1.1)  # event files are named by the second: the resumed launch gets its own
    run(config, tmp_path / "run", resume=True)
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [int(r["step"]) for r in read_csv(tmp_path / "run" / "log.csv")] == [1, 2, 3, 4, 5, 6]


def test_a_resume_that_does_not_fit_leaves_the_run_as_it_was(image_folder, tmp_path):
    """`train --resume RUN --config OTHER` with another model's config used to replace RUN's
    config.yaml with OTHER before the checkpoint failed to load (torch's size-mismatch list, an
    internal error), so a plain `--resume RUN` then failed too. Now the error is one line naming
    the checkpoint, and the run folder's files are untouched; likewise when no checkpoint loads."""
    run(make_config(image_folder, "train.steps=2", "train.ckpt_every=2"), tmp_path / "run", steps=2)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    other = make_config(image_folder, "model.overrides={channels: 8, latent_channels: 32, hyper_channels: 16}",
                        "train.steps=4")
    with pytest.raises(ValueError, match=r"ckpt-00000002\.pt does not fit the model of this config"):
        run(other, tmp_path / "run", resume=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == before

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_bytes(before["config.yaml"])
    (broken / "ckpt-00000002.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="no readable checkpoint"):
        run(other, broken, resume=True)
    assert sorted(p.name for p in broken.iterdir()) == [".training.lock", "ckpt-00000002.pt", "config.yaml"]
    assert (broken / "config.yaml").read_bytes() == before["config.yaml"]


def test_resume_needs_no_warm_start_file(image_folder, tmp_path):
    """A resumed run continues from its checkpoint: the init_from file it started from may be gone
    (a pruned checkpoint, a replaced model) without stopping it. With no checkpoint yet, resume
    starts afresh from that file, as the first launch did."""
    source = tmp_path / "source"
    run(make_config(image_folder, "train.steps=2", "train.ckpt_every=2"), source, steps=2)
    start = source / "ckpt-00000002.pt"
    config = make_config(image_folder, f"train.init_from={start}", "train.steps=4", "train.ckpt_every=2")
    loaded = torch.load(start, map_location="cpu", weights_only=True)["model"]

    fresh = Trainer(config, tmp_path / "fresh", defer_warm_start=True)
    assert state_equal(fresh.model.state_dict(), loaded)  # deferred: not loaded yet
    assert fresh.resume() is False  # no checkpoint: the warm start applies now
    assert not state_equal(fresh.model.state_dict(), loaded)
    assert fresh.warm_start["sha256"] == hashlib.sha256(start.read_bytes()).hexdigest()

    run(config, tmp_path / "run", steps=2)
    recorded = torch.load(tmp_path / "run" / "ckpt-00000002.pt", map_location="cpu", weights_only=True)
    start.unlink()
    resumed = run(config, tmp_path / "run", resume=True)
    assert resumed.step == 4 and resumed.warm_start == recorded["warm_start"]


def test_crop_must_suit_the_model_stride(image_folder, tmp_path):
    """A crop that is no multiple of the model's stride (64 for hyperprior models) cannot train:
    the trainer must say so clearly (ValueError naming the crop), not fail with a tensor shape
    mismatch deep inside CompressAI."""
    config = make_config(image_folder, "data.crop=32", "data.val_crop=32")
    with pytest.raises(ValueError, match="crop"):
        trainer = Trainer(config, tmp_path / "run")
        trainer.train_step()


def test_lambda_count_must_match_levels(image_folder, tmp_path):
    with pytest.raises(ValueError, match="lambdas"):
        Trainer(make_config(image_folder, "train.lambdas=[0.01, 0.1]"), tmp_path / "run")


def test_quality_exponent_reshapes_the_quality_draws_only(image_folder, tmp_path):
    """quality = U^exponent from the same generator: the images drawn stay the same (runs with
    different exponents see the same batches), the qualities are the uniform ones raised to it."""
    # one trainer after the other: the crops' positions come from the process-wide `random`, seeded per run
    plain = Trainer(make_config(image_folder), tmp_path / "plain")
    plain_batches = [plain.next_batch() for _ in range(3)]
    high = Trainer(make_config(image_folder, "train.quality_exponent=0.5"), tmp_path / "high")
    for x_plain, q_plain in plain_batches:
        x_high, q_high = high.next_batch()
        assert torch.equal(x_plain, x_high)
        assert torch.allclose(q_high, q_plain.sqrt()) and (q_high >= q_plain).all()
    with pytest.raises(ValueError, match="quality_exponent"):
        Trainer(make_config(image_folder, "train.quality_exponent=0"), tmp_path / "zero")


def test_training_images_are_read_as_the_codec_reads_them(tmp_path):
    """Training images go through the codec's own conversion: a 16-bit greyscale PNG trained as
    solid white (Pillow's convert("RGB") clips its levels), where the codec scales them to 8 bits;
    likewise float images and palettes with transparency."""
    from edgecodec.codec.imageio import load_image
    from edgecodec.train.data import CropDataset, load_rgb, load_square

    levels = np.linspace(0, 65535, 64 * 96).reshape(64, 96).astype(np.uint16)
    Image.fromarray(levels).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as img:
        assert img.mode.startswith("I")  # what Pillow gives for 16-bit greyscale
    Image.fromarray((levels / 65535).astype(np.float32), "F").save(tmp_path / "float.tif")
    Image.fromarray(synthetic_photo(np.random.RandomState(1), 64)).convert("P").save(
        tmp_path / "palette.png", transparency=0)
    for name in ("grey16.png", "float.tif", "palette.png"):
        codec = load_image(tmp_path / name, alpha="drop", icc="convert").rgb
        trained = np.asarray(load_rgb(tmp_path / name))
        assert np.array_equal(trained, codec), name
        if name != "palette.png":
            assert 100 < trained.mean() < 160, name  # a ramp: mid-grey on average, not white
    square = load_square(tmp_path / "grey16.png", 32)
    assert square.shape == (32, 32, 3) and 100 < square.mean() < 160
    sample = CropDataset([tmp_path / "grey16.png"], 32, train=False)[0]
    assert 0.3 < float(sample.mean()) < 0.7


def test_no_training_on_kodak():
    """Kodak is the evaluation set: neither the shipped config nor the shipped model trained on it."""
    for path in (REPO / "edgecodec" / "configs").rglob("*.yaml"):  # configs/original/ too
        root = str(yaml.safe_load(path.read_text()).get("data", {}).get("root", ""))
        assert "kodak" not in root.lower(), path
    for card in (REPO / "edgecodec" / "weights").glob("*.json"):
        data_root = json.loads(card.read_text()).get("training", {}).get("data", {}).get("root", "")
        assert "kodak" not in str(data_root).lower(), card


def test_partial_warm_start_and_trainable_subset(image_folder, tmp_path):
    """A narrower hyper-synthesis warm-started from a wider model: every tensor whose shape
    matches is loaded, the rest stay fresh; with ``train.trainable`` only those parameters (and the
    quantiles) change, and a strict warm start refuses the mismatch."""
    from safetensors.torch import save_file

    wide = Trainer(make_config(image_folder, "model.config=gdn-hp"), tmp_path / "wide")
    for _ in range(3):
        wide.train_step()
    source = tmp_path / "wide.safetensors"
    save_file({k: v.contiguous() for k, v in wide.model.state_dict().items()}, str(source))

    narrow_overrides = "model.overrides={" + ", ".join(f"{k}: {v}" for k, v in TINY.items()) + \
        ", hyper_mid_channels: 8, hyper_out_kernel: 1}"
    # one readable line (a usage error on the CLI), not torch's list of every key
    with pytest.raises(ValueError, match=r"does not fit the model config 'gdn-hp' .*\(tensors: \d+ of another "
                                         r"shape \(e\.g\. .*\)\); .*train\.init_strict=false"):
        Trainer(make_config(image_folder, "model.config=gdn-hp", narrow_overrides,
                            f"train.init_from={source}"), tmp_path / "strict")
    config = make_config(image_folder, "model.config=gdn-hp", narrow_overrides, f"train.init_from={source}",
                         "train.init_strict=false", "train.trainable=[latent_codec.hyper.h_s]")
    narrow = Trainer(config, tmp_path / "narrow")
    h_s = narrow.model.latent_codec["hyper"].h_s
    assert h_s[2].weight.shape[1] == 8 and h_s[4].kernel_size == (1, 1)
    loaded = wide.model.state_dict()
    before = {k: v.clone() for k, v in narrow.model.state_dict().items()}
    assert torch.equal(before["g_s.0.weight"], loaded["g_s.0.weight"])
    assert torch.equal(before["latent_codec.hyper.h_s.0.weight"], loaded["latent_codec.hyper.h_s.0.weight"])
    for _ in range(3):
        narrow.train_step()
    changed = {k for k, v in narrow.model.state_dict().items() if v.dtype.is_floating_point and
               v.shape == before[k].shape and not torch.equal(v, before[k])}
    assert {"latent_codec.hyper.h_s.2.weight", "latent_codec.hyper.h_s.4.weight"} <= changed
    assert all(k.startswith("latent_codec.hyper.") for k in changed), changed
    assert not any(k.startswith(("g_a.", "g_s.", "log_", "latent_codec.hyper.h_a.")) for k in changed)

    # The model card traces the warm start: the file's hash, and through a checkpoint its run.
    narrow.save_checkpoint()
    card = json.loads(export_run(tmp_path / "narrow", "narrow", tmp_path / "models").with_suffix(".json").read_text())
    warm = card["training"]["warm_start"]
    assert warm["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    staged = make_config(image_folder, "model.config=gdn-hp", narrow_overrides,
                         f"train.init_from={tmp_path / 'narrow' / 'ckpt-00000003.pt'}")
    Trainer(staged, tmp_path / "stage2").save_checkpoint()
    card = json.loads(export_run(tmp_path / "stage2", "stage2", tmp_path / "models").with_suffix(".json").read_text())
    warm = card["training"]["warm_start"]
    assert warm["steps"] == 3 and warm["train"]["trainable"] == ["latent_codec.hyper.h_s"]
    assert warm["warm_start"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    # ... and through an exported model: its card's own warm start is carried on.
    exported = tmp_path / "models" / "narrow.safetensors"
    staged = make_config(image_folder, "model.config=gdn-hp", narrow_overrides, f"train.init_from={exported}")
    Trainer(staged, tmp_path / "stage3").save_checkpoint()
    card = json.loads(export_run(tmp_path / "stage3", "stage3", tmp_path / "models").with_suffix(".json").read_text())
    warm = card["training"]["warm_start"]
    assert warm["card"]["name"] == "narrow" and warm["card"]["steps"] == 3
    assert warm["card"]["warm_start"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    # ... recorded when the run read the file: shipping the result over the file it started from
    # (how the shipped models are trained further) leaves the card naming what was loaded.
    loaded_sha = hashlib.sha256(exported.read_bytes()).hexdigest()
    exported.write_bytes(source.read_bytes())  # another model now lies at that path
    card = json.loads(export_run(tmp_path / "stage3", "stage3", tmp_path / "models").with_suffix(".json").read_text())
    assert card["training"]["warm_start"]["sha256"] == loaded_sha
    assert card["training"]["warm_start"]["card"]["name"] == "narrow"

    with pytest.raises(ValueError, match="trainable"):
        Trainer(make_config(image_folder, "train.trainable=[no_such_module]"), tmp_path / "bad")


def test_lpips_crop_0_is_the_whole_crop_as_null_is():
    """gan.lpips_crop 0 meant the whole crop (GANLoss takes it as null) and a run's config.yaml may
    hold it: only a negative side is refused."""
    from edgecodec.train.trainer import _check_settings

    for value in ("0", "null", "64"):
        config = load_config("gcrb", [f"gan.lpips_crop={value}"])
        _check_settings(config["train"], config["data"], config["gan"])
    config = load_config("gcrb", ["gan.lpips_crop=-8"])
    with pytest.raises(ValueError, match="lpips_crop=-8"):
        _check_settings(config["train"], config["data"], config["gan"])


def test_numpy_numbers_in_model_overrides_are_stored_as_python_numbers():
    """model.overrides from Python (a sweep's np.int64 widths) passed the checks and then failed
    when the run's config.yaml was written (yaml.safe_dump refuses numpy numbers)."""
    from edgecodec.train.config import complete_config

    config = complete_config({"model": {"config": "crb", "overrides": {"channels": np.int64(32),
                                                                        "min_level": np.float64(-0.5),
                                                                        "transform": "crb", "context": None,
                                                                        "discriminator": True,
                                                                        "disc_conditional": np.bool_(True)}}})
    overrides = config["model"]["overrides"]
    assert overrides == {"channels": 32, "min_level": -0.5, "transform": "crb", "context": None,
                         "discriminator": True, "disc_conditional": True}
    assert type(overrides["channels"]) is int and type(overrides["min_level"]) is float
    assert type(overrides["discriminator"]) is bool and type(overrides["disc_conditional"]) is bool
    assert yaml.safe_load(yaml.safe_dump(config)) == config


def test_paths_from_python_are_stored_as_text(tmp_path):
    """Path objects from Python are the text of their path wherever a setting holds a file or
    folder (config.yaml cannot hold a Path: yaml.safe_dump refuses it)."""
    from edgecodec.train.config import complete_config

    config = complete_config({"data": {"root": tmp_path / "photos"},
                              "train": {"init_from": tmp_path / "weights.safetensors"}})
    assert config["data"]["root"] == str(tmp_path / "photos")
    assert config["train"]["init_from"] == str(tmp_path / "weights.safetensors")
    assert yaml.safe_load(yaml.safe_dump(config)) == config
