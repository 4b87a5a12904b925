"""Training loop: rate-distortion (cae, crb, gdn-hp) and GAN (gcrb) objectives, checkpoints with
exact resume, CSV + TensorBoard logs, and torchrun data parallelism.

``train.rate: none`` trains the original experiment's float-latent autoencoders (models/original.py,
configs/original/): no entropy model, no rate term, no auxiliary optimizer; the loss is the
distortion (plus, with a discriminator, LPIPS and the adaptive GAN term, optionally alternating
codec and discriminator steps), and validation logs one PSNR / SSIM / ST-LPIPS per step instead
of one per quality.

Batches are drawn in the main process from an in-memory dataset with RNGs that are saved in
every checkpoint, so a resumed run sees the same data as an uninterrupted one.

Under ``torchrun --nproc_per_node N`` (WORLD_SIZE > 1) every process trains on its own batches
(``train.batch_size`` is per process, so the global batch is N times it), drawn with RNGs seeded
``seed + rank``. The codec is wrapped in DistributedDataParallel, except for the entropy
bottlenecks' quantiles: they are trained by the auxiliary loss outside the forward pass, so DDP
ignores them and their gradients are averaged by hand, as are the discriminator's (it is
stepped by its own optimizer on a second loss). Rank 0 alone logs, validates and writes
checkpoints; batch-norm statistics are taken from rank 0 (DDP broadcasts them at every forward,
the trainer before checkpoints and at the end), so all ranks end with identical weights.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import pickle
import random
import time
import weakref
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml

from ..atomic import LockHeld, atomic_path, atomic_write_text, hold_lock, release_lock, remove_stale_temps
from ..errors import OutputExistsError, OutputWriteError, UsageError
from ..losses import GANRateDistortionLoss, RateDistortionLoss, build_perceptual, last_layer
from ..losses.perceptual import PERCEPTUAL_BACKENDS, PerceptualBackendError, PerceptualDistance
from ..models import EdgeCodecModel, PatchDiscriminator, create_model
from ..models.original import original_init_
from . import distributed
from .config import complete_config, in_package
from .data import data_digest, make_datasets
from .monitor import Monitor, drop_rows_after

log = logging.getLogger(__name__)

VAL_QUALITIES = (0.0, 0.5, 1.0)
MS_SSIM_MIN_SIDE = 161  # 5 scales with an 11-pixel window


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save through atomic_path: a kill never leaves a half-written checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def checkpoints(run_dir: Path) -> list[Path]:
    """RUN/ckpt-STEP.pt files, oldest first. Temporary files of atomic_save (.ckpt-STEP.pt.XXXXXXXX.tmp,
    possibly half-written by a killed run) never match."""
    return sorted(p for p in Path(run_dir).glob("ckpt-*.pt") if p.is_file())


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def load_checkpoint(path: Path, data: bytes | None = None) -> dict[str, Any]:
    """A checkpoint's state, or a one-line ValueError naming it for a damaged or foreign file
    (torch's messages run to 10 lines, and its unpickling one advises the unsafe weights_only=False).
    Only the first sentence of torch's reason is kept: a truncated file's goes on for four more.
    ``data``: the file's bytes, when the caller has read them already. A file torch loads but that
    is no training checkpoint (a state dict saved by hand, a list) is refused too: its missing
    keys were internal errors in export-model, resume and train.init_from."""
    try:
        state = torch.load(io.BytesIO(data) if data is not None else path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, I/O error
        reason = "not a checkpoint of plain tensors" if isinstance(exc, pickle.UnpicklingError) \
            else (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0].rstrip(".")
        raise ValueError(f"cannot load checkpoint {path}: {reason}") from None
    if not (isinstance(state, dict) and isinstance(state.get("model"), dict)
            and isinstance(state.get("model_config"), dict) and "step" in state):
        raise ValueError(f"cannot load checkpoint {path}: not a training checkpoint (no model weights, model "
                         "config and step)")
    return state


def read_weights_file(path: Path, setting: str) -> bytes:
    """The bytes of a warm-start file (``setting``: train.init_from=PATH, ...), or a one-line
    ValueError: a folder or an unreadable file was an internal error."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{setting}={path}: {exc.strerror or exc}") from None


def split_parameters(model: EdgeCodecModel) -> tuple[list, list]:
    """Main parameters and the entropy bottlenecks' quantiles (trained by the auxiliary loss)."""
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return main, aux


LOCK_NAME = ".training.lock"  # held in a run folder by the training that writes to it
LR_DROP_FACTOR = 0.1  # the learning rate from lr_drop_step on, as a fraction of train.lr


def lr_drop_step(train: dict[str, Any]) -> int:
    """First step at the lowered learning rate: train.lr_drop_at of train.steps (a train config section)."""
    return math.ceil(train["lr_drop_at"] * train["steps"])


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str, target: str,
                  hint: str = "") -> None:
    """``module.load_state_dict(state)``, failing with one readable line (a ValueError, which the
    CLI reports as a usage error) instead of torch's lists of every key when the weights were made
    for another architecture."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        own = module.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        reshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        parts = [f"{len(names)} {what} (e.g. {names[0]})" for names, what in
                 ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape")) if names]
        raise ValueError(f"{source} does not fit the {target} (tensors: {', '.join(parts) or exc}){hint}") from None


class Trainer:
    def __init__(self, config: dict, run_dir: str | Path, defer_warm_start: bool = False) -> None:
        """``config``: a ``load_config`` result, or a dict of only the settings that differ from the
        defaults (merged onto them and checked as ``load_config`` does: ``complete_config``).
        ``defer_warm_start``: leave ``train.init_from`` to ``resume``, which applies it only
        when the run has no checkpoint to continue from."""
        config = complete_config(config)
        self.config = config
        self.run_dir = Path(run_dir)
        tc, dc = config["train"], config["data"]
        self.dist = distributed.setup(str(tc.get("device", "auto")))
        self.device = self.dist.device
        self.is_main = self.dist.is_main
        _check_settings(tc, dc, config.get("gan"))
        seed = int(tc["seed"])
        torch.manual_seed(seed)  # the same initial weights on every rank
        random.seed(seed)
        try:
            self.model = create_model(config["model"]["config"], **config["model"].get("overrides", {}))
        except KeyError as exc:  # the registry's lookup error: a bad config, said plainly
            raise ValueError(exc.args[0]) from exc
        mc = self.model.config
        rate = tc.get("rate", "estimated")
        if rate not in ("estimated", "none"):
            raise ValueError(f"train.rate must be estimated or none, not {rate!r}")
        self.rate = rate == "estimated"
        if self.rate != (mc.prior != "none"):
            raise ValueError(f"train.rate={rate} does not suit model {config['model']['config']!r} (prior "
                             f"{mc.prior!r}): float-latent models (prior none) train with rate none, codecs "
                             "with rate estimated")
        if self.rate and len(tc["lambdas"]) != mc.levels:
            raise ValueError(f"{len(tc['lambdas'])} lambdas for {mc.levels} quality levels")
        self.quality_exponent = float(tc["quality_exponent"])
        if not self.quality_exponent > 0:
            raise ValueError(f"train.quality_exponent must be positive, not {tc['quality_exponent']!r}")
        lambdas = tc["lambdas"] if self.rate else None
        self.gan = bool(mc.discriminator)
        self.discriminator: PatchDiscriminator | None = None
        if self.gan:
            gc = config.get("gan", {})
            self.discriminator = PatchDiscriminator(
                mc.disc_channels, layers=int(gc.get("disc_layers", 3)),
                cond_channels=mc.latent_channels if mc.disc_conditional else 0)
            if gc.get("disc_init_std"):
                original_init_(self.discriminator, float(gc["disc_init_std"]))
            perceptual = build_perceptual(gc["perceptual"]) if float(gc["perceptual_weight"]) > 0 else None
            self.criterion: torch.nn.Module = GANRateDistortionLoss(
                lambdas, self.discriminator, perceptual, distortion=tc["distortion"],
                perceptual_weight=gc["perceptual_weight"], gan_weight=gc["gan_weight"],
                disc_start=gc["disc_start"], adaptive_weight=gc["adaptive_weight"],
                lpips_crop=gc.get("lpips_crop"), lpips_resize=gc.get("lpips_resize", False),
                conditional=mc.disc_conditional, min_level=mc.min_level, alternate=gc.get("alternate", False))
        else:
            self.criterion = RateDistortionLoss(lambdas, tc["distortion"], mc.min_level)
        self._place_modules()
        self.warm_start: dict[str, Any] | None = None  # set when init_from is loaded, or by resume
        self.disc_warm_start: dict[str, Any] | None = None  # likewise for gan.disc_init_from
        # A resumed run takes its weights from its checkpoint: it must not need (or read) the
        # init_from file, which may have been replaced or deleted since the first launch.
        if not defer_warm_start:
            self._apply_warm_start()
        if tc.get("trainable"):
            self._freeze_all_but(list(tc["trainable"]))
        main, aux = split_parameters(self.model)
        self.optimizer = _optimizer(tc, main, tc["lr"], tc.get("betas", (0.9, 0.999)), tc.get("weight_decay", 0.0))
        # Float-latent models have no entropy bottleneck, hence no quantiles and no auxiliary optimizer.
        self.aux_optimizer = torch.optim.Adam(aux, lr=tc["aux_lr"]) if aux else None
        self.aux_params = aux
        self.disc_optimizer = None
        if self.discriminator is not None:
            gc = config["gan"]
            self.disc_optimizer = _optimizer(tc, self.discriminator.parameters(), gc["disc_lr"],
                                             gc.get("disc_betas", (0.5, 0.999)), gc.get("disc_weight_decay", 0.0))
        self.step = 0
        self.elapsed_s = 0.0  # training wall time over all launches of this run
        self.time_drop_step: int | None = None  # where train.max_seconds moved the lr drop, if it did
        self.best_val_loss = math.inf
        self.data_rng = torch.Generator().manual_seed(seed + self.dist.rank)
        for key in ("crop", "val_crop"):
            if dc[key] < self.model.stride or dc[key] % self.model.stride:
                raise ValueError(f"data.{key}={dc[key]} must be a positive multiple of the model's stride "
                                 f"{self.model.stride}")
        self.train_set, self.val_set = make_datasets(dc["root"], dc["crop"], tuple(dc["scale"]),
                                                     dc["val_fraction"], dc["val_crop"], dc.get("mode", "crop"))
        self.data = data_digest(dc["root"], self.train_set, self.val_set)
        if self.dist.rank:  # per-rank noise and augmentation streams (rank 0 keeps `seed`)
            torch.manual_seed(seed + self.dist.rank)
            random.seed(seed + self.dist.rank)
        self._last_layer = last_layer(self.model) if self.gan else None
        self._metric_net: PerceptualDistance | None | bool = None  # built on first use; False: unavailable
        self._last_batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self.net = self._wrap_ddp()
        self._recorded = False
        self._drop_pending = False  # a resume at the run's last step left its launch record to fit()
        self._unlock: weakref.finalize | None = None  # gives the run folder's lock back (close, or garbage collection)
        self._run_locked = False  # the same on every rank (rank 0 holds the lock): they enter its collective together
        # A folder holding a run already (Trainer(config, RUN).resume(), the programmatic resume)
        # records this launch once resume() has loaded it; fit() without resume() is refused: it
        # logged into the old run's files and replaced its checkpoints (run() checks up front).
        self._other_run = [] if defer_warm_start else _run_files(self.run_dir)
        if not defer_warm_start and not self._other_run:  # a resumed run records itself once loaded
            self._record_start(new_run=True)
        # Last: a Trainer that could not be made leaves the caller's thread count alone
        self._threads_before = torch.get_num_threads()  # given back by close(), for a caller's later work
        torch.set_num_threads(int(tc["threads"]))

    def _lock_run_dir(self) -> None:
        """Hold RUN/.training.lock while this Trainer lives: a second training in the same folder
        (a --resume of a run still going, two launches with one --out) would log every step twice
        and overwrite the other's checkpoints. Rank 0 holds it for a torchrun job, and every rank
        stops with its refusal (the others went on alone and failed in the next collective, with
        a connection error that did not say why)."""
        if self._run_locked:
            return
        refusal: Exception | None = None
        if self.is_main:
            try:
                key = hold_lock(self.run_dir / LOCK_NAME)
            except LockHeld as exc:
                refusal = OutputExistsError(f"{self.run_dir} is in use by another training "
                                            f"({exc.owner or 'a process'}): let it finish or stop it, then --resume "
                                            "the run")
            except OSError as exc:  # a read-only run folder: exit 11, not an internal error
                refusal = OutputWriteError.making(self.run_dir / LOCK_NAME, exc, "the run folder's lock")
            except Exception as exc:  # anything else too: rank 0 leaving alone left the others waiting
                refusal = RuntimeError(f"cannot lock {self.run_dir}: {type(exc).__name__}: {exc}")
            else:
                self._unlock = weakref.finalize(self, release_lock, key)
        refusal = distributed.gather_objects(self.dist, refusal)[0]  # rank 0's outcome, on every rank
        if refusal is not None:
            raise refusal
        self._run_locked = True

    def _record_start(self, new_run: bool = False) -> None:
        """Create and lock the run folder, write its config.yaml and log this launch. Only once every
        check passed: a config that cannot train leaves no run folder behind, and a resume whose config
        does not fit the checkpoint leaves the run's own config.yaml as it was. ``new_run``: a fresh
        start, whose launch record starts over when the folder holds no checkpoint or log (a run
        stopped before its first log left a launch line that is not this run's)."""
        if self._recorded:
            return
        self._recorded = True
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file on its path: exit 11, not an internal error
            raise OutputWriteError.making(self.run_dir, exc, "the run folder") from None
        self._lock_run_dir()
        if self.is_main:
            atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(self.config, sort_keys=False))
            launches = self.run_dir / "launches.jsonl"
            if new_run and not _run_files(self.run_dir):
                launches.unlink(missing_ok=True)
            _record_launch(launches, self.config["train"]["threads"], self.dist.world_size)

    # --- set-up ------------------------------------------------------------------------------
    def _place_modules(self) -> None:
        """Device, memory format, torch.compile and (under AMP) an fp32 entropy model."""
        tc = self.config["train"]
        modules = [self.model] + ([self.discriminator] if self.discriminator is not None else [])
        fmt = torch.channels_last if tc.get("channels_last") else torch.preserve_format
        for module in modules:
            module.to(self.device, memory_format=fmt)
        self.criterion.to(self.device)
        amp = tc.get("amp")
        if amp in (None, False, "none", "fp32"):
            self.amp = None
        elif amp == "bf16":
            self.amp = "bf16" if self.device.type == "cuda" else None
            if self.amp is None:
                log.warning("train.amp=bf16 is ignored on CPU (autocast is used on CUDA only)")
        else:
            raise ValueError(f"train.amp must be bf16 or null, not {amp!r}")
        if self.amp:
            _keep_fp32(self.model.latent_codec)
        if tc.get("compile"):
            # static shapes: training crops and batches have one shape. The modules recompile once
            # (their submodule count changes after the first call), and torch then turns to dynamic
            # shapes, whose backward pass the CPU backend (torch 2.14) failed to compile at batch 8
            if self.gan:
                # the adaptive GAN weight takes two gradients through the decoder with
                # retain_graph=True, which compiled backward passes that donate buffers refuse
                import torch._functorch.config as functorch_config

                functorch_config.donated_buffer = False
            self.model.g_a.compile(dynamic=False)
            self.model.g_s.compile(dynamic=False)
            if self.discriminator is not None:
                self.discriminator.compile(dynamic=False)

    def _wrap_ddp(self) -> torch.nn.Module:
        if not self.dist.enabled:
            return self.model
        from torch.nn.parallel import DistributedDataParallel as DDP

        # Identical starting point everywhere, the parameters DDP ignores included.
        distributed.broadcast_module(self.dist, self.model)
        if self.discriminator is not None:
            distributed.broadcast_module(self.dist, self.discriminator)
        ignored = [n for n, _ in self.model.named_parameters() if n.endswith(".quantiles")]
        DDP._set_params_and_buffers_to_ignore_for_model(self.model, ignored)
        return DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                   find_unused_parameters=bool(self.config["train"].get("find_unused_parameters")))

    def _apply_warm_start(self) -> None:
        """Load ``train.init_from`` and ``gan.disc_init_from`` (once) and record where they came from."""
        self._apply_disc_warm_start()
        tc = self.config["train"]
        if not tc.get("init_from") or self.warm_start is not None:  # none asked, or loaded already
            return
        from .export import warm_start_record  # (export imports this module)

        path = in_package(tc["init_from"])  # the edge/ configs name the shipped weights
        data = read_weights_file(path, "train.init_from")  # read once: the record's hash is of the bytes loaded
        if path.suffix == ".safetensors":
            from safetensors.torch import load as load_safetensors
            try:
                checkpoint, state, disc = None, load_safetensors(data), None
            except Exception as exc:  # SafetensorError: a damaged or foreign file
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ValueError(f"train.init_from={path}: not a .safetensors model ({reason})") from None
        else:
            try:
                checkpoint = load_checkpoint(path, data)
            except ValueError as exc:
                raise ValueError(f"train.init_from: {exc} (give a run's checkpoint or a .safetensors model)") from None
            state, disc = checkpoint["model"], checkpoint.get("disc")
        # Taken as the file is read: the card must name these weights even if the file is
        # replaced before export (a shipped model trained further in place, then shipped).
        self.warm_start = warm_start_record(path, 1, data=data, checkpoint=checkpoint)
        parent_seed = self.warm_start.get("card", self.warm_start.get("train", {})).get("seed")
        if parent_seed is not None and int(parent_seed) == int(tc["seed"]):
            # Data order is a function of the seed alone, so a stage that continues a model with
            # its own seed sees the very crops, in the same order, that the model started on.
            log.warning("%s was trained with train.seed=%s too: this run replays its batch sequence "
                        "from the start; set train.seed to a new value for fresh batches", path, parent_seed)
        if tc.get("init_widen"):
            from ..models.widen import widen_state_dict

            narrow = state
            state = widen_state_dict(self.model, narrow)
            log.info("widened %d tensors of %s into the model's shapes",
                     sum(v.shape != narrow[k].shape for k, v in state.items()), path)
        if tc.get("init_extend_levels"):
            from ..models.widen import extend_levels

            state = extend_levels(state, self.model.config.levels)
            log.info("extended the gain tables of %s to %d quality levels", path, self.model.config.levels)
        self._init_weights(path, state, disc, strict=bool(tc.get("init_strict", True)))

    def _apply_disc_warm_start(self) -> None:
        """``gan.disc_init_from``: the discriminator of a GCRB checkpoint, the codec from elsewhere
        (``train.init_from``, applied after this and overriding any discriminator it carries). A fresh
        PatchGAN needed 1,000-1,800 steps before it told real from decoded crops
        (results/shipped-runs/perceptual-cpu-s8), a whole short stage."""
        name = (self.config.get("gan") or {}).get("disc_init_from")
        if not name or self.discriminator is None or self.disc_warm_start is not None:
            return
        from .export import warm_start_record  # (export imports this module)

        path = Path(name)
        data = read_weights_file(path, "gan.disc_init_from")
        try:
            checkpoint = load_checkpoint(path, data)
        except ValueError as exc:
            raise ValueError(f"gan.disc_init_from: {exc}") from None
        if "disc" not in checkpoint:
            raise ValueError(f"gan.disc_init_from={path}: not a checkpoint with a discriminator")
        load_matching(self.discriminator, checkpoint["disc"], f"gan.disc_init_from={path}", "discriminator")
        self.disc_warm_start = warm_start_record(path, 1, data=data, checkpoint=checkpoint)
        log.info("discriminator from %s (step %s)", path, checkpoint.get("step"))

    def _init_weights(self, path: Path, state: dict[str, torch.Tensor],
                      disc: dict[str, torch.Tensor] | None, strict: bool = True) -> None:
        """Warm start: codec weights (and, from a GCRB checkpoint, the discriminator's) read from
        ``path``, a .safetensors model or a checkpoint (a CRB checkpoint for GCRB). Not ``strict``:
        only tensors whose name and shape match are loaded."""
        if not strict:
            own = self.model.state_dict()
            kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
            fresh = sorted(set(own) - set(kept))
            if not kept:
                raise ValueError(f"{path}: no tensor matches the model {self.config['model']['config']!r}")
            log.info("partial warm start: %d tensors loaded, %d kept fresh: %s", len(kept), len(fresh),
                     ", ".join(fresh))
            state = {**own, **kept}
        load_matching(self.model, state, f"train.init_from={path}",
                      f"model config {self.config['model']['config']!r} with its overrides",
                      "; give the config it was trained with, or train.init_strict=false to load only the "
                      "tensors whose name and shape match")
        with_disc = disc is not None and self.discriminator is not None and self.disc_warm_start is None
        if with_disc:
            load_matching(self.discriminator, disc, f"train.init_from={path}", "discriminator")
        log.info("initialised weights from %s%s", path, " (with discriminator)" if with_disc else "")

    def _freeze_all_but(self, prefixes: list[str]) -> None:
        """Train only the parameters whose names start with one of ``prefixes`` (the entropy
        bottleneck's quantiles always keep their auxiliary update)."""
        names = [n for n, _ in self.model.named_parameters()]
        unmatched = [p for p in prefixes if not any(n.startswith(p) for n in names)]
        if unmatched:
            raise ValueError(f"train.trainable: no parameter starts with {unmatched}")
        for name, param in self.model.named_parameters():
            param.requires_grad_(name.endswith(".quantiles") or any(name.startswith(p) for p in prefixes))
        log.info("training only %s (%d of %d parameters)", ", ".join(prefixes),
                 sum(p.numel() for p in self.model.parameters() if p.requires_grad),
                 sum(p.numel() for p in self.model.parameters()))

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.amp == "bf16":
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                yield
        else:
            yield

    # --- checkpoints -------------------------------------------------------------------------
    def _rng_state(self) -> dict[str, Any]:
        rng = {"torch_rng": torch.get_rng_state(), "data_rng": self.data_rng.get_state(),
               "python_rng": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return rng

    def _set_rng_state(self, rng: dict[str, Any]) -> None:
        torch.set_rng_state(rng["torch_rng"])
        self.data_rng.set_state(rng["data_rng"])
        random.setstate(rng["python_rng"])
        if "cuda_rng" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda_rng"], self.device)

    def state(self, gather: bool = True) -> dict[str, Any]:
        """Everything a resume needs. ``gather`` (a collective under torchrun) adds every rank's
        RNG states so that a resumed multi-process run continues every rank's data stream."""
        rng = self._rng_state()
        state = {
            "model": self.model.state_dict(),
            "model_config": self.model.config.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": self.aux_optimizer.state_dict() if self.aux_optimizer is not None else None,
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "time_drop_step": self.time_drop_step,
            "best_val_loss": self.best_val_loss,
            "data": self.data,
            "world_size": self.dist.world_size,
            **rng,
        }
        if self.warm_start is not None:
            state["warm_start"] = self.warm_start
        if self.disc_warm_start is not None:
            state["disc_warm_start"] = self.disc_warm_start
        if gather and self.dist.enabled:
            state["rank_rng"] = distributed.gather_objects(self.dist, rng)
        if self.discriminator is not None:
            state["disc"] = self.discriminator.state_dict()
            state["disc_optimizer"] = self.disc_optimizer.state_dict()
        return state

    def _sync_buffers(self) -> None:
        """Rank 0's batch-norm statistics on every rank (no-op in a single process)."""
        distributed.broadcast_module(self.dist, self.model, buffers_only=True)
        if self.discriminator is not None:
            distributed.broadcast_module(self.dist, self.discriminator, buffers_only=True)

    def save_checkpoint(self) -> Path:
        """Write RUN/ckpt-STEP.pt (rank 0, atomically) and keep the last train.keep_checkpoints.
        Under torchrun every rank must call it (it gathers RNG states); barrier at the end."""
        self._sync_buffers()
        state = self.state(gather=True)
        path = self.run_dir / f"ckpt-{self.step:08d}.pt"
        if self.is_main:
            atomic_save(state, path)
            keep = int(self.config["train"]["keep_checkpoints"])
            for old in sorted(self.run_dir.glob("ckpt-*.pt"))[:-keep]:
                old.unlink()
        distributed.barrier(self.dist)
        return path

    def _load_latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that loads. atomic_save never leaves a partial ckpt-STEP.pt, but
        a damaged one (disk trouble, a bad copy) makes resume fall back to the one before, with
        a warning: resume is exact, so the run only redoes those steps. Leftover temporary files
        of a killed save are removed."""
        if self.is_main:
            removed = remove_stale_temps(self.run_dir)
            if removed:
                log.warning("removed %d temporary file(s) left by an interrupted write (checkpoint, log)", removed)
        candidates = checkpoints(self.run_dir)[::-1]
        for path in candidates:
            try:
                return path, load_checkpoint(path)
            except ValueError as exc:
                log.warning("%s: trying the previous checkpoint", exc)
        if candidates:  # a ValueError: the CLI's one-line usage error, not an internal error
            raise ValueError(f"no readable checkpoint in {self.run_dir} "
                             f"({len(candidates)} found, none loads)")
        return None

    def final_step(self, steps: int | None = None) -> int:
        """The step a launch trains to: ``steps`` (--steps, a budget cut or stretch) or train.steps."""
        if steps is None:
            return int(self.config["train"]["steps"])
        # fit(0) trained the whole schedule, fit(-1) returned at once having trained nothing, and
        # fit(2.5) stopped at 2 (the CLI's --steps takes whole numbers from 1 only)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps={steps!r}: expected a whole number of at least 1 (None: train.steps)")
        return steps

    def resume(self, path: Path | None = None, until: int | None = None) -> bool:
        """Continue from ``path``, else from the newest readable RUN/ckpt-STEP.pt; False (and a
        fresh start) when the run has no checkpoint. ``until``: the step this launch trains to
        (default train.steps); one below the checkpoint's step is refused before the run's
        config.yaml is rewritten with it."""
        self._other_run = []  # continued, not overwritten
        if self.run_dir.is_dir():  # before anything in it is read, cleaned or rewritten
            self._lock_run_dir()
        if path is not None:
            state = load_checkpoint(path)
        else:
            found = self._load_latest()
            if found is None:  # killed before its first checkpoint: what it logged is redone
                self._apply_warm_start()
                self._record_start()
                self._drop_logged_after(0)
                return False
            path, state = found
        # A config that does not fit the checkpoint (--config of another model) is one clear error,
        # raised before _record_start could replace the run's own config.yaml with it.
        load_matching(self.model, state["model"], str(path), f"model of this config ({self.config['model']['config']})",
                      hint="; resume with the run's own config.yaml (without --config)")
        if "optimizer" not in state:  # scripts/gpu/strip_checkpoint.py keeps the weights only
            raise UsageError(f"{path} holds no optimizer state (a stripped checkpoint), so it cannot be resumed: "
                             f"start a new run from its weights with train.init_from={path}")
        self.optimizer.load_state_dict(state["optimizer"])
        if self.aux_optimizer is not None:
            self.aux_optimizer.load_state_dict(state["aux_optimizer"])
        if self.discriminator is not None:
            if "disc" in state:
                self.discriminator.load_state_dict(state["disc"])
                self.disc_optimizer.load_state_dict(state["disc_optimizer"])
            else:
                log.warning("%s has no discriminator state: the discriminator starts afresh", path)
        self.step = int(state["step"])
        target = self.final_step(until)
        if target < self.step:  # it trained nothing and recorded a schedule the run never had
            raise UsageError(f"{path} is at step {self.step}, beyond the {target} steps asked for: a resumed run "
                             "continues; give train.steps (or --steps) of at least its step")
        self.elapsed_s = float(state.get("elapsed_s", 0.0))
        budget = self.config["train"].get("max_seconds")
        if budget is not None and self.elapsed_s >= budget and self.step < target:  # it would train one step
            raise UsageError(f"{path} is at step {self.step} with train.max_seconds={budget:g} spent ({self.elapsed_s:,.0f} s "
                             "trained): give a larger train.max_seconds to continue it")
        self.time_drop_step = state.get("time_drop_step")
        self.warm_start = state.get("warm_start", self.warm_start)  # the first launch's record
        self.disc_warm_start = state.get("disc_warm_start", self.disc_warm_start)
        self.best_val_loss = float(state.get("best_val_loss", math.inf))
        before = state.get("data")
        if before is not None and before.get("sha256") != self.data["sha256"]:
            (train_before, val_before), (train_now, val_now) = before["files"], self.data["files"]
            log.warning("the data folder changed since %s: training images %d -> %d, validation images %d -> %d; the "
                        "run goes on with the images there now, and best.pt's validation loss was measured on the "
                        "set before", path, train_before, train_now, val_before, val_now)
        processes = int(state.get("world_size", 1))
        if processes != self.dist.world_size and self.is_main:  # train.batch_size is per process
            batch = int(self.config["train"]["batch_size"])
            log.warning("%s was trained by %d process(es) and resumes on %d: the batch of a step changes from %d to "
                        "%d images (train.batch_size %d a process), and so the schedule's meaning", path, processes,
                        self.dist.world_size, processes * batch, self.dist.world_size * batch, batch)
        rng: dict[str, Any] | None = state
        if self.dist.enabled:
            ranks = state.get("rank_rng")
            if ranks and len(ranks) == self.dist.world_size:
                rng = ranks[self.dist.rank]
            elif self.dist.rank:
                rng = None
                log.warning("checkpoint from %s process(es): rank %d starts new data streams",
                            state.get("world_size", 1), self.dist.rank)
                seed = int(self.config["train"]["seed"]) + 1_000_003 * self.step + self.dist.rank
                torch.manual_seed(seed)
                random.seed(seed)
                self.data_rng.manual_seed(seed)
        if rng is not None:
            self._set_rng_state(rng)
        if self.step >= target:
            # A finished run (a re-run of scripts/ablation.sh, a --resume too many): nothing trains, so
            # nothing is recorded either. It logged a launch that trained nothing, and settings
            # changed with it (train.lr=..., --data) replaced the run's config.yaml, though no step
            # ever trained with them; those are refused.
            changed = self._changed_settings()
            if changed:
                raise UsageError(f"{path} is at step {self.step}, the last of the {target} steps asked for: nothing "
                                 f"would train with the changed settings ({changed}); give train.steps (or --steps) "
                                 f"over {self.step} to continue the run")
            log.info("%s is at step %d, the last of the %d steps asked for: nothing to train, the run folder is left "
                     "as it is (give train.steps over %d to lengthen the run)", path, self.step, target, self.step)
            self._drop_pending = True  # done by fit() if it is asked for more steps
            return True
        self._record_start()
        self._drop_logged_after(self.step)
        log.info("resumed from %s at step %d", path, self.step)
        return True

    def _changed_settings(self) -> str:
        """The settings of this launch that differ from the run's config.yaml, as ``key old -> new``
        (empty if none, or if the run's config.yaml is missing or unreadable)."""
        from .config import load_config

        try:
            saved = load_config(self.run_dir / "config.yaml")
        except (OSError, ValueError):
            return ""

        def flat(node: Any, prefix: str = "") -> dict[str, Any]:
            if not isinstance(node, dict) or prefix == "model.overrides.":
                return {prefix.rstrip("."): node}
            return {k: v for key, value in node.items() for k, v in flat(value, f"{prefix}{key}.").items()}

        before, now = flat(saved), flat(self.config)
        return ", ".join(f"{key} {before.get(key)!r} -> {now.get(key)!r}" for key in sorted(set(before) | set(now))
                         if before.get(key) != now.get(key))

    def _drop_logged_after(self, step: int) -> None:
        """Rows logged past ``step`` are redone by this launch: drop them so each step is logged once."""
        if not self.is_main:
            return
        for name in ("log.csv", "val.csv"):
            dropped = drop_rows_after(self.run_dir / name, step)
            if dropped:
                log.info("%s: dropped %d row(s) logged after step %d (they are redone)", name, dropped, step)

    # --- training ----------------------------------------------------------------------------
    def lr_drop_step(self) -> int:
        by_steps = lr_drop_step(self.config["train"])
        return by_steps if self.time_drop_step is None else min(by_steps, self.time_drop_step)

    def lr_at(self, step: int) -> float:
        return self.config["train"]["lr"] * (LR_DROP_FACTOR if step >= self.lr_drop_step() else 1.0)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        bs = int(self.config["train"]["batch_size"])
        idx = torch.randint(len(self.train_set), (bs,), generator=self.data_rng)
        x = torch.stack([self.train_set[int(i)] for i in idx])
        quality = torch.rand(bs, generator=self.data_rng) ** self.quality_exponent
        return x, quality

    def train_step(self) -> dict[str, float]:
        """One codec update (plus the auxiliary quantile update) and, for GCRB from
        gan.disc_start on, one discriminator update on the same batch (with gan.alternate, one
        or the other, by the step's parity)."""
        tc = self.config["train"]
        self.net.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        x, quality = self.next_batch()
        x, quality = x.to(self.device, non_blocking=True), quality.to(self.device)
        if tc.get("channels_last"):
            x = x.contiguous(memory_format=torch.channels_last)
        if self.gan and not self.criterion.updates_codec(self.step):
            return self._discriminator_only_step(x, quality)
        with self._autocast():
            out = self.net(x, quality)
            out = {**out, "x_hat": out["x_hat"].float(), "y_hat": out["y_hat"].float()}
            if self.gan:
                self.discriminator.train()
                terms = self.criterion.generator_loss(out, x, quality, self.step, self._last_layer)
            else:
                terms = self.criterion(out, x, quality)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if tc["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], tc["grad_clip"])
        self.optimizer.step()
        record = {k: float(v.detach()) for k, v in terms.items() if k != "rate"}
        if self.aux_optimizer is not None:
            aux_loss = self.model.aux_loss()
            self.aux_optimizer.zero_grad(set_to_none=True)
            aux_loss.backward()
            distributed.all_reduce_grads(self.dist, self.aux_params)
            self.aux_optimizer.step()
            record["aux_loss"] = float(aux_loss.detach())
        if self.gan:
            d_terms = {"d_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
            if self.criterion.updates_discriminator(self.step):
                d_terms = self._discriminator_update(out, x)
            if not self.criterion.alternate:  # alternating: D terms are logged by the D steps only
                record.update(d_terms)
        self._last_batch = (x.detach(), out["x_hat"].detach())
        self.step += 1
        return record

    def _discriminator_update(self, out: dict, x: torch.Tensor) -> dict[str, float]:
        with self._autocast():
            d = self.criterion.discriminator_loss(out, x)
        self.disc_optimizer.zero_grad(set_to_none=True)
        d["d_loss"].backward()
        distributed.all_reduce_grads(self.dist, self.discriminator.parameters())
        clip = float(self.config["gan"].get("disc_grad_clip") or 0)
        if clip:
            torch.nn.utils.clip_grad_norm_(self.discriminator.parameters(), clip)
        self.disc_optimizer.step()
        return {k: float(v.detach()) for k, v in d.items()}

    def _discriminator_only_step(self, x: torch.Tensor, quality: torch.Tensor) -> dict[str, float]:
        """A discriminator step of the alternating schedule: the codec runs forward in training
        mode (its BatchNorm statistics update, as in the original) but is not updated."""
        self.discriminator.train()
        with torch.no_grad(), self._autocast():
            out = self.net(x, quality)
            out = {**out, "x_hat": out["x_hat"].float(), "y_hat": out["y_hat"].float()}
        record = self._discriminator_update(out, x)
        self._last_batch = (x.detach(), out["x_hat"].detach())
        self.step += 1
        return record

    # --- metrics -----------------------------------------------------------------------------
    def _metric_perceptual(self) -> PerceptualDistance | None:
        """ST-LPIPS (train.metrics_perceptual) for logging; None (one warning) if unavailable."""
        if self._metric_net is None:
            crit = getattr(self.criterion, "perceptual", None)
            name = self.config["train"].get("metrics_perceptual", "stlpips-alex")
            if crit is not None and crit.name == name:
                self._metric_net = crit
            else:
                try:
                    self._metric_net = build_perceptual(name).to(self.device)
                except PerceptualBackendError as exc:
                    if self.is_main:  # every rank builds it (batch_metrics): one warning
                        log.warning("LPIPS metric off: %s", exc)
                    self._metric_net = False
        return self._metric_net or None

    @torch.no_grad()
    def batch_metrics(self) -> dict[str, float]:
        """SSIM (and, for cae/crb, ST-LPIPS) of this process's last training batch (under torchrun
        the log averages every rank's)."""
        from pytorch_msssim import ssim

        if self._last_batch is None:
            return {}
        x, x_hat = self._last_batch
        x_hat = x_hat.clamp(0, 1)
        metrics = {"ssim": float(ssim(x_hat, x, data_range=1.0))}
        if not self.rate:  # the original's curves: PSNR of the batch's pixels (torchmetrics' definition)
            metrics["batch_psnr"] = float(-10 * torch.log10((x_hat - x).pow(2).mean().clamp_min(1e-10)))
        if not self.gan and self.config["train"].get("log_lpips", True):
            net = self._metric_perceptual()
            if net is not None:
                metrics["lpips"] = float(net(x_hat, x).mean())
        return metrics

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Held-out crops at the lowest, middle and highest quality: estimated bpp, PSNR, loss
        (rate + lambda-weighted distortion; for GCRB with the LPIPS term, without the GAN term),
        SSIM, MS-SSIM (crops over 160 px only) and ST-LPIPS; ``val_loss`` averages the losses."""
        from pytorch_msssim import ms_ssim, ssim

        self.model.eval()
        n = min(len(self.val_set), int(self.config["data"]["val_images"]))
        x = torch.stack([self.val_set[i] for i in range(n)]).to(self.device)
        metric_net = self._metric_perceptual() if self.config["train"].get("val_lpips", True) else None
        if not self.rate:
            return self._validate_float_latent(x, metric_net)
        result: dict[str, float] = {}
        losses = []
        for q in VAL_QUALITIES:
            quality = torch.full((n,), q, device=self.device)
            with self._autocast():
                out = self.model(x, quality)
                out = {**out, "x_hat": out["x_hat"].float()}
                if self.gan:
                    terms = self.criterion.reconstruction_terms(out, x, quality, crop=False)
                else:
                    terms = self.criterion(out, x, quality)
            x_hat = out["x_hat"].clamp(0, 1)
            result[f"val_bpp_q{q}"] = float(terms["bpp"])
            result[f"val_psnr_q{q}"] = float(terms["psnr"])
            result[f"val_loss_q{q}"] = float(terms["loss"])
            losses.append(float(terms["loss"]))
            result[f"val_ssim_q{q}"] = float(ssim(x_hat, x, data_range=1.0))
            if min(x.shape[-2:]) >= MS_SSIM_MIN_SIDE:
                value = float(ms_ssim(x_hat, x, data_range=1.0))
                if math.isfinite(value):
                    result[f"val_ms_ssim_q{q}"] = value
            if self.gan and self.criterion.perceptual is not None and \
                    self.criterion.perceptual.name == self.config["train"].get("metrics_perceptual", "stlpips-alex"):
                result[f"val_lpips_q{q}"] = float(terms["lpips"])  # computed for the loss anyway
            elif metric_net is not None:
                result[f"val_lpips_q{q}"] = float(metric_net(x_hat, x).mean())
        result["val_loss"] = sum(losses) / len(losses)
        return result

    @torch.no_grad()
    def _validate_float_latent(self, x: torch.Tensor, metric_net: PerceptualDistance | None) -> dict[str, float]:
        """Validation without rate (one pass, no qualities): loss (for GCRB without the GAN term),
        mean per-image PSNR, SSIM, MS-SSIM (crops over 160 px only) and ST-LPIPS."""
        from pytorch_msssim import ms_ssim, ssim

        with self._autocast():
            out = self.model(x)
            out = {**out, "x_hat": out["x_hat"].float()}
            terms = (self.criterion.reconstruction_terms(out, x, None, crop=False) if self.gan
                     else self.criterion(out, x, None))
        x_hat = out["x_hat"].clamp(0, 1)
        result = {"val_loss": float(terms["loss"]), "val_psnr": float(terms["psnr"]),
                  "val_ssim": float(ssim(x_hat, x, data_range=1.0))}
        if min(x.shape[-2:]) >= MS_SSIM_MIN_SIDE:
            result["val_ms_ssim"] = float(ms_ssim(x_hat, x, data_range=1.0))
        if self.gan and self.criterion.perceptual is not None and \
                self.criterion.perceptual.name == self.config["train"].get("metrics_perceptual", "stlpips-alex"):
            result["val_lpips"] = float(terms["lpips"])
        elif metric_net is not None:
            result["val_lpips"] = float(metric_net(x_hat, x).mean())
        return result

    def _validate_and_keep_best(self, monitor: Monitor) -> None:
        """Rank 0 validates (other ranks wait) and writes best.pt when val_loss improves."""
        if self.is_main:
            devices = [self.device.index] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                val = self.validate()
            monitor.log("val", self.step, val)
            log.info("validation at step %d: %s", self.step,
                     ", ".join(f"{k} {v:.4g}" for k, v in val.items()))
            if val["val_loss"] < self.best_val_loss:
                self.best_val_loss = val["val_loss"]
                atomic_save(self.state(gather=False), self.run_dir / "best.pt")
        distributed.barrier(self.dist)

    def fit(self, steps: int | None = None) -> None:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        tc = self.config["train"]
        total = self.final_step(steps)
        if self.step >= total:  # a finished run resumed: nothing to train or record (resume said so)
            return
        _check_fresh(self.run_dir, self._other_run, "resume() first, or train in a new folder")
        self._record_start()  # (done already, unless a deferred Trainer is fitted without resume)
        self._lock_run_dir()  # again after close(): a Trainer fitted once more holds its folder again
        torch.set_num_threads(int(tc["threads"]))  # again after close(), which gave the caller's back
        if self._drop_pending:  # resumed at its last step, now asked for more
            self._drop_pending = False
            self._drop_logged_after(self.step)
        if total != int(tc["steps"]) and self.is_main:  # a budget cut (or stretch), the schedule unchanged
            log.info("stopping at step %d of a train.steps=%d schedule (lr drop at step %d)", total,
                     int(tc["steps"]), self.lr_drop_step())
        monitor = Monitor(self.run_dir, enabled=self.is_main, tensorboard=bool(tc.get("tensorboard", True)),
                          purge_step=self.step + 1)  # what a killed launch logged after this step is redone
        show = self.is_main and tc.get("progress", True)
        bar = tqdm(total=total, initial=self.step, unit="step", desc=str(self.config.get("name", "train")),
                   dynamic_ncols=True, disable=None if show else True)
        running: dict[str, list[float]] = {}  # key: [sum, count] (alternating GAN steps log different keys)
        count, trained_before, start = 0, self.elapsed_s, time.time()
        budget = float(tc["max_seconds"]) if tc.get("max_seconds") is not None else None
        try:
            with logging_redirect_tqdm() if not bar.disable else contextlib.nullcontext():
                while self.step < total:
                    step_start = time.time()
                    record = self.train_step()
                    self.elapsed_s += time.time() - step_start
                    for k, v in record.items():
                        acc = running.setdefault(k, [0.0, 0])
                        acc[0] += v
                        acc[1] += 1
                    count += 1
                    bar.update(1)
                    out_of_time = False
                    if budget is not None:  # one collective a step: the rank that has spent the most decides
                        spent = distributed.max_over_ranks(self.dist, self.elapsed_s)
                        out_of_time = spent >= budget
                        if self.time_drop_step is None and self.step < self.lr_drop_step() \
                                and spent >= tc["lr_drop_at"] * budget:
                            self.time_drop_step = self.step  # every later step runs at the lowered rate
                            if self.is_main:
                                log.info("train.max_seconds: lr drop at step %d", self.step)
                    last = self.step == total or out_of_time
                    if self.step % tc["log_every"] == 0 or last:
                        self._log_train(monitor, bar, running, count, self.elapsed_s - trained_before, start)
                        running, count, trained_before = {}, 0, self.elapsed_s
                    if self.step % tc["val_every"] == 0 or last:
                        self._validate_and_keep_best(monitor)
                    if self.step % tc["ckpt_every"] == 0 or last:
                        self.save_checkpoint()
                    if out_of_time:
                        if self.is_main:
                            log.info("train.max_seconds=%g spent: stopping at step %d", budget, self.step)
                        break
        finally:
            bar.close()
            monitor.close()
        self._sync_buffers()
        if tc.get("rank_hash"):
            self.write_rank_hash()

    def _log_train(self, monitor: Monitor, bar: Any, running: dict[str, list[float]], count: int, seconds: float,
                   start: float) -> None:
        """Log the ``count`` steps since the last log, trained in ``seconds`` (the steps' own time:
        steps_per_s counted the validation and checkpoint of the previous log step as training)."""
        # every rank's steps, not rank 0's share (a collective: every rank logs at the same steps)
        means = {k: total / n for k, (total, n) in distributed.sum_over_ranks(self.dist, running).items()}
        if not all(math.isfinite(v) for v in means.values()):
            raise FloatingPointError(f"non-finite loss at step {self.step}: {means}")
        # every rank's last batch too, averaged as the losses are (a collective): they were rank 0's
        # batch alone, 1/N of the step's images, beside losses of all N
        batch = {k: total / n for k, (total, n) in
                 distributed.sum_over_ranks(self.dist, {k: [v, 1] for k, v in self.batch_metrics().items()}).items()}
        if not self.is_main:
            return
        row = {"time": round(time.time() - start, 1), "lr": self.lr_at(self.step - 1), **means, **batch,
               "steps_per_s": count / max(seconds, 1e-9)}
        monitor.log("train", self.step, row)
        shown = {k: f"{row[k]:{fmt}}" for k, fmt in (("loss", ".4f"), ("bpp", ".3f"), ("psnr", ".2f"), ("w", ".3g"),
                                                      ("d_loss", ".3f")) if k in row}  # no bpp without rate
        log.info("step %d %s (%.2f steps/s)", self.step, " ".join(f"{k} {v}" for k, v in shown.items()),
                 row["steps_per_s"])
        bar.set_postfix({k: shown[k] for k in ("loss", "bpp", "psnr") if k in shown}, refresh=False)

    def write_rank_hash(self) -> str:
        """RUN/rank-hashes/rankN.json: sha256 of this rank's codec and discriminator state."""
        digest = distributed.state_hash(self.model.state_dict(),
                                        self.discriminator.state_dict() if self.discriminator is not None else {})
        folder = self.run_dir / "rank-hashes"
        folder.mkdir(exist_ok=True)
        record = {"rank": self.dist.rank, "world_size": self.dist.world_size, "step": self.step, "sha256": digest}
        atomic_write_text(folder / f"rank{self.dist.rank}.json", json.dumps(record) + "\n")
        hashes = distributed.gather_objects(self.dist, digest)
        if self.is_main and len(set(hashes)) > 1:
            log.warning("ranks ended with different weights: %s", hashes)
        return digest

    def close(self) -> None:
        if self._unlock is not None:
            self._unlock()  # once: a finalizer runs at most once
            self._unlock = None
        self._run_locked = False
        torch.set_num_threads(self._threads_before)
        distributed.teardown(self.dist)


def _optimizer(tc: dict, params: Any, lr: float, betas: Any, weight_decay: float) -> torch.optim.Optimizer:
    """train.optimizer (adam or adamw) over ``params``."""
    kind = str(tc.get("optimizer", "adam")).lower()
    options = {"lr": float(lr), "betas": tuple(float(b) for b in betas), "weight_decay": float(weight_decay)}
    if kind == "adam":
        return torch.optim.Adam(params, **options)
    if kind == "adamw":
        return torch.optim.AdamW(params, **options)
    raise ValueError(f"train.optimizer must be adam or adamw, not {kind!r}")


def _keep_fp32(module: torch.nn.Module) -> None:
    """Run ``module`` (the latent codec: entropy models, likelihoods) outside autocast, in fp32."""
    forward = module.forward

    def fp32_forward(*args: Any, **kwargs: Any) -> Any:
        def cast(v: Any) -> Any:
            return v.float() if torch.is_tensor(v) and v.is_floating_point() else v

        with torch.autocast(device_type="cuda", enabled=False):
            return forward(*map(cast, args), **{k: cast(v) for k, v in kwargs.items()})

    module.forward = fp32_forward


def _record_launch(path: Path, threads: int, world_size: int = 1) -> None:
    """One line per launch of a run: command, host hardware, versions (for model cards)."""
    import platform
    import sys

    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv),
              "cwd": os.getcwd(),  # where the command's relative paths (--data, init_from) start
              "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "threads": threads, "processes": world_size, "cuda": torch.cuda.is_available(),
              "torch": torch.__version__, "python": platform.python_version()}
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _run_files(run_dir: Path) -> list[str]:
    """The files that make a folder a run's: checkpoints and logs."""
    return [p.name for p in (*checkpoints(run_dir), run_dir / "best.pt", run_dir / "log.csv", run_dir / "val.csv")
            if p.is_file()]


def _check_fresh(run_dir: Path, found: list[str] | None = None, how: str = "") -> None:
    """A fresh start must not land in another run's folder: its checkpoints would be pruned in
    favour of the old run's (they sort after the new ones) and its logs would mix with the old.
    ``found``: the folder's run files when already listed; ``how``: how to continue it instead."""
    found = _run_files(run_dir) if found is None else found
    if found:
        raise OutputExistsError(f"{run_dir} already holds a run ({', '.join(found[:3])}"
                                f"{', ...' if len(found) > 3 else ''}): continue it with "
                                f"{how or f'--resume {run_dir}, or give a new --out'}")


def _check_settings(tc: dict, dc: dict, gc: dict | None = None) -> None:
    """Settings that would otherwise fail mid-run (a modulo by zero at the first log step), or
    silently do nothing (no steps: an empty run folder and exit status 0), refused up front."""
    for key in ("steps", "batch_size", "threads", "log_every", "val_every", "ckpt_every", "keep_checkpoints"):
        if int(tc[key]) < 1:
            raise ValueError(f"train.{key}={tc[key]} must be at least 1")
    if int(dc["val_images"]) < 1:
        raise ValueError(f"data.val_images={dc['val_images']} must be at least 1")
    if tc.get("max_seconds") is not None and not tc["max_seconds"] > 0:
        raise ValueError(f"train.max_seconds={tc['max_seconds']} must be positive (or null: no limit)")
    if not tc["lr_drop_at"] > 0:  # 0 or below: the whole run at lr/10 from its first step
        raise ValueError(f"train.lr_drop_at={tc['lr_drop_at']} must be above 0 (a fraction of train.steps; "
                         "1 or more: no drop)")
    if tc["metrics_perceptual"] not in PERCEPTUAL_BACKENDS:  # a typo turned the metric off mid-run, with a warning
        raise ValueError(f"train.metrics_perceptual={tc['metrics_perceptual']!r}: expected one of "
                         f"{', '.join(PERCEPTUAL_BACKENDS)}")
    # a negative clip norm reversed the gradients (torch scales them by max_norm / norm), a negative
    # perceptual weight turned the term off in silence, a negative lpips_crop failed inside LPIPS
    for name, value in (("train.grad_clip", tc["grad_clip"]), *(
            (f"gan.{key}", (gc or {}).get(key)) for key in ("disc_grad_clip", "perceptual_weight", "gan_weight"))):
        if value is not None and value < 0:
            raise ValueError(f"{name}={value} must be at least 0 (0: off)")
    lpips_crop = (gc or {}).get("lpips_crop")
    if lpips_crop is not None and lpips_crop < 0:  # 0, as null, is the whole crop (GANLoss)
        raise ValueError(f"gan.lpips_crop={lpips_crop} must be a side in pixels, or null (or 0) for the whole crop")
    if not 0 <= dc["val_fraction"] < 1:
        raise ValueError(f"data.val_fraction={dc['val_fraction']} must be at least 0 and below 1")
    scale = dc["scale"]
    if not (isinstance(scale, (list, tuple)) and len(scale) == 2 and 0 < scale[0] <= scale[1]):
        raise ValueError(f"data.scale={scale} must be [low, high] with 0 < low <= high")
    # Adam's (beta1, beta2): a list of another length was a bare IndexError from inside torch
    for name, betas in (("train.betas", tc.get("betas")), ("gan.disc_betas", (gc or {}).get("disc_betas"))):
        if betas is not None and not (isinstance(betas, (list, tuple)) and len(betas) == 2):
            raise ValueError(f"{name}={betas!r} must be two numbers, such as [0.9, 0.999]")


def run(config: dict, run_dir: str | Path, resume: bool = False, steps: int | None = None) -> Trainer:
    """Train ``config`` in ``run_dir``: a new folder, or with ``resume`` one to continue."""
    if not resume:
        _check_fresh(Path(run_dir))
    trainer = Trainer(config, run_dir, defer_warm_start=resume)
    try:
        if resume:
            trainer.resume(until=steps)
        trainer.fit(steps)
    finally:
        trainer.close()
    return trainer
