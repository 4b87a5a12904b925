"""Run configuration: one YAML file fully describes a training run; key=value overrides on top."""

from __future__ import annotations

import copy
import difflib
import numbers
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DEFAULTS: dict[str, Any] = {
    "name": "run",
    "model": {"config": "crb", "overrides": {}},
    # mode crop: random downscale + crop + flip (crop, scale); resize: whole images centre-cropped and
    # resized to crop x crop once, no augmentation (validation: to val_crop). See train/data.py.
    "data": {"root": "../shared/data/train", "mode": "crop", "crop": 128, "scale": [0.5, 1.0],
             "val_fraction": 0.02, "val_crop": 256, "val_images": 8},
    "train": {
        "steps": 1000,
        "batch_size": 8,
        "lr": 3e-4,
        "optimizer": "adam",  # adam or adamw (codec and discriminator)
        "betas": [0.9, 0.999],
        "weight_decay": 0.0,
        # estimated: R from the entropy model's likelihoods (R + lambda * D); none: no rate term, for the
        # float-latent models (prior none, e.g. original-cae): L = D (+ the GAN terms), lambdas unused
        "rate": "estimated",
        "aux_lr": 1e-3,
        "lr_drop_at": 0.9,  # fraction of steps after which lr is divided by 10
        # wall-clock budget of the training steps over all launches (null: none): the run stops with a
        # checkpoint once it is spent, and the lr drop comes at lr_drop_at of it if that is earlier than
        # lr_drop_at of the steps; for a lent accelerator or a job slot whose speed is unknown beforehand
        "max_seconds": None,
        "grad_clip": 1.0,
        "distortion": "mse",
        "lambdas": [0.0013, 0.0031, 0.0072, 0.0168, 0.0395, 0.0932],
        # each sample's quality is U^exponent, U uniform on [0, 1): 1 trains every rate alike; below 1
        # favours the high qualities (density of q is q^(1/e - 1) / e), e.g. to spend a stage on the top rates
        "quality_exponent": 1.0,
        "threads": 1,
        "seed": 0,
        "log_every": 50,
        "ckpt_every": 500,
        "keep_checkpoints": 3,
        "val_every": 1000,
        "init_from": None,  # weights (.safetensors) or checkpoint to start from
        # false: load only the tensors of init_from whose name and shape match (the rest keep their
        # fresh initialisation and are listed in the log), e.g. to warm-start a narrower hyper-synthesis
        "init_strict": True,
        # true: init_from is a narrower model of the same architecture (fewer `channels`): its
        # convolutions, BatchNorms and GDNs are embedded so the wider model starts as the narrow one's function
        # (models/widen.py) and the new channels train from there
        "init_widen": False,
        # true: init_from has fewer quality levels than model `levels`: its gain tables get new top
        # levels continuing the line of its top two (models/widen.py, extend_levels); give
        # train.lambdas one value per level
        "init_extend_levels": False,
        # parameter-name prefixes to train, the rest frozen (e.g. [latent_codec.hyper.h_s]); null: all
        "trainable": None,
        # --- observability
        "tensorboard": True,  # SummaryWriter in RUN/tb (skipped with a warning if tensorboard is missing)
        "progress": True,  # tqdm bar with ETA on rank 0 (off automatically when stderr is no TTY)
        "log_lpips": True,  # ST-LPIPS of the last batch at every log step (cae/crb; gcrb logs its loss term)
        "val_lpips": True,  # ST-LPIPS in validation
        "metrics_perceptual": "stlpips-alex",  # backend for those two metrics
        # --- scale-out (torchrun) and speed
        "device": "auto",  # auto (cuda when available), cpu, cuda
        "amp": None,  # bf16: autocast on CUDA (ignored on CPU); the entropy model stays fp32
        # on CPU (benchmarks/train_throughput.py, README): channels_last 4-22% faster for every
        # config, compile 12-30% for cae and gdn-hp but 8% slower for gcrb; off until GPUs measure them
        "channels_last": False,
        "compile": False,  # torch.compile the transforms (and the discriminator), static shapes
        "find_unused_parameters": False,  # DistributedDataParallel option
        "rank_hash": False,  # each rank writes RUN/rank-hashes/rankN.json with its weights' sha256 at the end
    },
    # GAN objective of configurations with a discriminator (gcrb); see losses/gan.py.
    "gan": {
        "perceptual": "stlpips-alex",  # stlpips-alex or lpips-alex
        "perceptual_weight": 0.5,  # lambda_LPIPS, inside the lambda-weighted distortion
        "gan_weight": 0.1,  # lambda_GAN, outside lambda, scaled by the adaptive weight w
        "adaptive_weight": True,
        "disc_start": 0,  # first step with the adversarial term and discriminator updates
        "disc_lr": 1.0e-4,
        "disc_betas": [0.5, 0.999],
        "disc_weight_decay": 0.0,
        "disc_grad_clip": 0.0,  # gradient-norm clipping of the discriminator (0: none)
        "disc_init_from": None,  # a GCRB checkpoint whose discriminator (only) starts this run's
        "disc_init_std": None,  # N(0, std) conv init as the original PatchGAN (0.2 there); null: PyTorch's
        "alternate": False,  # from disc_start on, alternate codec and discriminator steps (see losses/gan.py)
        "disc_layers": 3,
        "lpips_crop": 64,  # LPIPS in training on a random crop of this side (null: whole crop)
        "lpips_resize": False,  # downscale the whole crop to lpips_crop instead of cropping
    },
}


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "overrides":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where ``1e-4`` (no dot) is a string, not a float: ``train.lr=1e-4``
    would reach the optimizer as text, and yes / no / on / off are booleans. This loader reads such
    numbers as floats and only true / false as booleans, as YAML 1.2 does (a flag given yes is
    refused, as any value that is not true or false)."""


_BOOL = "tag:yaml.org,2002:bool"
_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_ConfigLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def parse_yaml(text: Any, source: str = "") -> Any:
    """YAML text or stream as config values (``_ConfigLoader``); ValueError naming ``source`` if it is not YAML."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise ValueError(f"{source or 'value'}: not valid YAML ({problem}{where})") from None


def apply_override(config: dict, assignment: str) -> None:
    """Apply ``section.key=value`` (value parsed as YAML) in place."""
    if "=" not in assignment:
        raise ValueError(f"override must look like key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {assignment!r}: {part} is a value, not a section")
    node[leaf] = parse_yaml(raw, f"override {assignment!r}")


# The shipped configurations, package data so that an installed edgecodec trains without a
# checkout (the repository's configs/ is a link to this folder, for people; code uses this path).
PACKAGE_DIR = Path(__file__).resolve().parents[1]
CONFIG_DIR = PACKAGE_DIR / "configs"


def shipped_training_configs() -> list[str]:
    """The shipped training configurations' names: ``crb``, ``edge/fidelity-context``, ..."""
    return sorted(p.relative_to(CONFIG_DIR).with_suffix("").as_posix() for p in CONFIG_DIR.rglob("*.yaml"))


def resolve_config(path: str | Path) -> Path:
    """The config file ``--config`` names: the file itself when there is one, else the shipped
    configuration it names, as ``crb``, ``edge/fidelity-context`` or the README's
    ``configs/crb.yaml`` (so the README's commands work where edgecodec is installed without
    the repository). FileNotFoundError listing the shipped names otherwise."""
    given = Path(path)
    if given.is_file():
        return given
    name = given.as_posix().removesuffix(".yaml").removeprefix("./").removeprefix("configs/")
    shipped = shipped_training_configs()
    if name in shipped:
        return CONFIG_DIR / f"{name}.yaml"
    if given.is_dir():
        raise ValueError(f"--config {path} is a folder: give a config file or a shipped config's name "
                         f"({', '.join(shipped)})")
    raise FileNotFoundError(f"{path} (no such file, nor a shipped config: {', '.join(shipped)})")


def in_package(path: str | Path) -> Path:
    """A file as the shipped configs name it, from the repository's root
    (``edgecodec/weights/fidelity.safetensors``): that path when it exists from the working
    folder, else the installed package's file of that name (a wheel has no repository)."""
    given = Path(path)
    if given.exists() or given.is_absolute() or given.parts[:1] != ("edgecodec",):
        return given
    packaged = PACKAGE_DIR.joinpath(*given.parts[1:])
    return packaged if packaged.exists() else given


def load_config(path: str | Path | None, overrides: list[str] = ()) -> dict:
    """A run's configuration: the defaults, the config file ``path`` (a file, or a shipped
    config's name: ``resolve_config``) on top, then ``section.key=value`` overrides; checked."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = resolve_config(path)
        with open(path) as f:
            loaded = parse_yaml(f, str(path)) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config is a mapping of sections (model, data, train, ...), "
                             f"not a {type(loaded).__name__}")
        config = _merge(config, loaded)
    for assignment in overrides:
        apply_override(config, assignment)
    _check_known(config, DEFAULTS)
    _check_values(config, DEFAULTS)
    return config


def complete_config(config: dict) -> dict:
    """A configuration given as a dict (``Trainer(config, RUN)`` from Python): the defaults with
    ``config`` merged on top, as ``load_config`` merges a file's sections, and checked as it checks
    them. A partial dict (``{"data": {"root": ...}, "train": {"steps": 100}}``) failed with a bare
    KeyError deep in the trainer. ``config`` itself is left as it was."""
    if not isinstance(config, dict):
        raise TypeError(f"a config is a dict of sections (model, data, train, ...), not a {type(config).__name__}: "
                        "load one with edgecodec.train.config.load_config(PATH)")
    merged = _merge(DEFAULTS, copy.deepcopy(config))
    _check_known(merged, DEFAULTS)
    _check_values(merged, DEFAULTS)
    return merged


def _check_known(config: dict, defaults: dict, prefix: str = "") -> None:
    """Every setting must be one the trainer reads: a misspelt key (``train.lrr=0.1``, ``trian:``)
    was silently ignored, and the run trained with the default it meant to change. Only
    ``model.overrides`` (the model constructor's arguments) is free-form."""
    for key, value in config.items():
        if key not in defaults:
            close = difflib.get_close_matches(str(key), [str(k) for k in defaults], n=1)
            hint = f"did you mean {prefix}{close[0]}?" if close else \
                f"known in {prefix.rstrip('.') or 'a config'}: {', '.join(defaults)}"
            raise ValueError(f"unknown setting {prefix}{key} ({hint})")
        if isinstance(value, dict) and isinstance(defaults[key], dict) and key != "overrides":
            _check_known(value, defaults[key], f"{prefix}{key}.")


# Numbers that may also be null (null: no budget, PyTorch's initialisation, the whole crop), and
# whether they are whole numbers; every other setting has its default's type.
NUMBERS_OR_NULL = {"train.max_seconds": False, "gan.disc_init_std": False, "gan.lpips_crop": True}
# Files that may also be null (null: none): a number, a list or a mapping there was an internal
# TypeError when the trainer opened it.
PATHS_OR_NULL = ("train.init_from", "gan.disc_init_from")


def _check_values(config: dict, defaults: dict, prefix: str = "") -> None:
    """Each setting must have its default's type: a number for a number (a whole one for a whole
    one), numbers for a list of numbers, true/false for a flag, text for text, a number or null for
    ``NUMBERS_OR_NULL``; the other settings whose default is null (paths, lists of names) are free.
    An empty override (``train.steps=``) is null, and ``lr: fast``, ``lambdas: [a, b]`` or
    ``steps: 1.5`` would otherwise fail deep inside the trainer or train another schedule. Whole
    numbers written as floats (``train.steps=1e4``) become ints."""
    for key, default in defaults.items():
        name, value = f"{prefix}{key}", config.get(key)
        if isinstance(value, os.PathLike):  # data.root=Path(...), train.init_from=Path(...) from Python
            value = os.fspath(value)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ValueError(f"{name}={value!r}: expected a section (a mapping of settings)")
            if key != "overrides":  # the model's own arguments, checked by the model
                _check_values(value, default, f"{name}.")
            else:  # numpy numbers as Python's: config.yaml cannot hold them (yaml.safe_dump refuses them)
                config[key] = {k: _plain(v) for k, v in value.items()}
        elif name in NUMBERS_OR_NULL:
            if value is not None:
                config[key] = _number(name, value, whole=NUMBERS_OR_NULL[name], default=default)
        elif name == "train.trainable":  # null (everything) or parameter-name prefixes
            if value is not None and not (isinstance(value, (list, tuple)) and value
                                          and all(isinstance(v, str) and v for v in value)):
                raise ValueError(f"{name}={value!r}: expected null or a list of parameter-name prefixes such as "
                                 "[g_s.] (in brackets)")
            if value is not None:
                config[key] = [str(v) for v in value]
        elif name in PATHS_OR_NULL:
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
                    raise ValueError(f"{name}={value!r}: expected the path of a file, or null")
                config[key] = str(value)
        elif default is None:
            continue
        elif value is None:
            raise ValueError(f"{name} is empty (null): give a value (default {default!r})")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{name}={value!r}: expected true or false")
        elif isinstance(default, (int, float)):
            config[key] = _number(name, value, whole=isinstance(default, int), default=default)
        elif isinstance(default, list):
            if not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"{name}={value!r}: expected a list of numbers such as {default!r}")
            config[key] = [_number(f"{name}[{i}]", v, whole=False, default=default) for i, v in enumerate(value)]
        elif isinstance(default, str):
            if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
                raise ValueError(f"{name}={value!r}: expected text (default {default!r})")
            config[key] = str(value)


def _plain(value: Any) -> Any:
    """A numpy number as the Python number it holds (bools, text and other values as they are)."""
    if isinstance(value, (bool, np.bool_)):  # numbers.Integral, but a flag (disc_conditional: true)
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _number(name: str, value: Any, whole: bool, default: Any) -> int | float:
    # numbers.Real: numpy's too (a sweep's np.geomspace lambdas), given back as Python numbers,
    # which the run's config.yaml can hold (yaml.safe_dump refused numpy's)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={value!r}: expected a number (default {default!r})")
    if whole:
        if not (isinstance(value, numbers.Integral) or float(value).is_integer()):
            raise ValueError(f"{name}={value!r}: expected a whole number (default {default!r})")
        return int(value)
    return value if type(value) in (int, float) else float(value)
