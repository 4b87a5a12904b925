"""Shipped and user-exported models: weights (safetensors) plus a model card (JSON).

A model is found by name in the folders listed in the ``EDGECODEC_MODEL_PATH`` environment
variable (``os.pathsep``-separated), then in the user model folder that ``export-model`` writes
to, then in the package's ``weights/`` folder. The first 8 bytes of the SHA-256 of the weights
file identify the weights in every stream; the file also holds the model config (safetensors
metadata), so that hash covers the config too.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from .atomic import atomic_path, atomic_write_text, umask
from .errors import OutputWriteError, UnknownModelError, WeightsMismatchError
from .models import EdgeCodecModel, ModelConfig
from .paths import xdg_dir

PACKAGE_WEIGHTS = Path(__file__).parent / "weights"
DEFAULT_MODEL = "perceptual"  # best ST-LPIPS per bit; README, Models
# A model name is a file stem in a model folder, and it arrives from untrusted .edc headers: no
# path separators, no leading dot (so no "..", no hidden files), at most 64 characters.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MODEL_NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def valid_model_name(name: object) -> bool:
    """Whether ``name`` can name a model (``MODEL_NAME_RULE``; such a name is also a safe file name)."""
    return isinstance(name, str) and MODEL_NAME.fullmatch(name) is not None


def user_model_dir() -> Path:
    """Where `edgecodec export-model` registers models by default."""
    return xdg_dir("XDG_DATA_HOME", Path.home() / ".local" / "share") / "edgecodec" / "models"


def path_model_dirs() -> list[Path]:
    """The folders listed in $EDGECODEC_MODEL_PATH, in order."""
    return [Path(p) for p in os.environ.get("EDGECODEC_MODEL_PATH", "").split(os.pathsep) if p]


def model_dirs() -> list[Path]:
    """Search order: $EDGECODEC_MODEL_PATH, the user model folder, the shipped weights."""
    return path_model_dirs() + [user_model_dir(), PACKAGE_WEIGHTS]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    weights: Path
    card: dict[str, Any]
    problem: str | None = None  # why the model cannot be used (its card does not read); None if it can

    @functools.cached_property
    def weights_hash(self) -> bytes:
        return _weights_hash(self.weights)


def _weights_hash(path: Path) -> bytes:
    """The 8-byte hash of a weights file, as streams record it."""
    stat = path.stat()
    return _file_hash(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _file_hash(path: Path, mtime_ns: int, size: int) -> bytes:
    """A file's hash as it is at (mtime, size): read once per process, since a stream's decode
    picks its model by it (load_model) and the files are a few MB."""
    return hashlib.sha256(path.read_bytes()).digest()[:8]


def list_models() -> list[ModelEntry]:
    """Every available model; a name found in several folders resolves to the first."""
    found: dict[str, ModelEntry] = {}
    for entry in all_models():
        found.setdefault(entry.name, entry)
    return list(found.values())


def all_models(name: str | None = None) -> list[ModelEntry]:
    """Every model file of every folder in search order (of one ``name``, if given), hidden ones included."""
    entries = []
    for folder in model_dirs():
        cards = ([folder / f"{name}.json"] if name else sorted(folder.glob("*.json"))) if folder.is_dir() else []
        for card_path in cards:
            weights = card_path.with_suffix(".safetensors")
            if weights.exists() and card_path.is_file() and valid_model_name(card_path.stem):
                entries.append(_entry(card_path, weights))
    return entries


def _entry(card_path: Path, weights: Path) -> ModelEntry:
    """A folder's model; one whose card does not read is listed with the reason, so that it is
    reported where it is used instead of breaking every command (a name still resolves to it)."""
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        return ModelEntry(card_path.stem, weights, {}, f"{card_path} is not a readable model card ({exc})")
    if not isinstance(card, dict):
        return ModelEntry(card_path.stem, weights, {}, f"{card_path} is not a model card (not a JSON object)")
    wrong = _misshapen_fields(card)
    if wrong:  # `models` formats these fields: a card with "config": 5 failed the whole listing
        return ModelEntry(card_path.stem, weights, {}, f"{card_path} is not a model card ({wrong})")
    return ModelEntry(card_path.stem, weights, card)


def half_models(name: str | None = None) -> list[str]:
    """A weights file without its card, or a card without its weights, in a model folder (of one
    ``name``, if given): no model, though a user who copied one file meant one."""
    found = []
    for folder in model_dirs():
        if not folder.is_dir():
            continue
        patterns = [f"{name}.safetensors", f"{name}.json"] if name else ["*.safetensors", "*.json"]
        for path in sorted(p for pattern in patterns for p in folder.glob(pattern)):
            other = path.with_suffix(".json" if path.suffix == ".safetensors" else ".safetensors")
            if valid_model_name(path.stem) and not other.exists():
                found.append(f"{path} has no {other.name} beside it, so it is no model (a model is both files, "
                             "as export-model writes them)")
    return found


def folder_notes() -> list[str]:
    """What is amiss in the model folders, for `edgecodec models`: an EDGECODEC_MODEL_PATH entry
    that is no folder (a typo searched in silence), and half models (``half_models``)."""
    notes = [f"EDGECODEC_MODEL_PATH names {folder}, which is not a folder: no models are looked up there"
             for folder in path_model_dirs() if not folder.is_dir()]
    return notes + half_models()


def _misshapen_fields(card: dict[str, Any]) -> str | None:
    """Which of the fields ``describe`` and ``edgecodec models`` read has the wrong type, if any."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    bpp, params = card.get("bpp_range"), card.get("parameters")
    if not isinstance(card.get("config", {}), dict):
        return "config is not an object"
    if not card.get("config"):  # compress refuses it too ("has no model config")
        return "it has no model config"
    if bpp is not None and not (isinstance(bpp, list) and len(bpp) == 2 and all(map(number, bpp))):
        return "bpp_range is not [low, high]"
    if params is not None and not (isinstance(params, dict) and all(map(number, params.values()))):
        return "parameters is not an object of counts"
    if not isinstance(card.get("summary", ""), str):
        return "summary is not text"
    return None


def _check_name(name: str) -> None:
    """Before any folder is searched for ``name``: it may come from an untrusted stream header,
    and must never be able to name a path."""
    if not isinstance(name, str):
        raise TypeError(f"a model name is text, not {type(name).__name__}")
    if not valid_model_name(name):
        raise UnknownModelError(f"invalid model name {name!r}: a model name is {MODEL_NAME_RULE}")


def find_model(name: str, for_stream: bool = False) -> ModelEntry:
    """The model called ``name`` (checked first, ``_check_name``). ``for_stream``: the name a file's
    header gives, whose message, when no such model is installed, says so and how to install it."""
    _check_name(name)
    entries = list_models()
    for entry in entries:
        if entry.name == name:
            if entry.problem:
                raise UnknownModelError(f"model {name!r} cannot be used: {entry.problem}")
            return entry
    known = ", ".join(e.name for e in entries if not e.problem) or "none"
    unknown = f"unknown model {name!r}; available: {known}"
    if for_stream:  # not a mistyped --model: the file needs it
        unknown = (f"unknown model {name!r}: the stream was written with it, and it is not installed here "
                   f"(installed: {known}): put its {name}.safetensors and {name}.json in a folder on "
                   "EDGECODEC_MODEL_PATH, or decode the file where that model is installed")
    raise UnknownModelError("; ".join([unknown, *half_models(name)]))


CONFIG_METADATA = "edgecodec.config"


def _saved_config(weights: Path) -> ModelConfig | None:
    """The config saved inside the weights file (files exported before 2026-12-02 have none)."""
    with safe_open(str(weights), "pt") as f:
        text = (f.metadata() or {}).get(CONFIG_METADATA)
    return None if text is None else ModelConfig.from_dict(json.loads(text))


_LOAD_LOCK = threading.Lock()


class CardError(ValueError):
    """A model's card cannot be used with its weights; the message names the card."""


def _card_config(card_path: Path) -> ModelConfig:
    try:
        config = json.loads(card_path.read_text())["config"]
        return ModelConfig.from_dict(config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CardError(f"its card {card_path} holds no usable model config ({type(exc).__name__}: {exc})") from None


@functools.lru_cache(maxsize=8)
def _load(weights: Path, mtime_ns: int, size: int) -> tuple[EdgeCodecModel, bytes]:
    """The model of a weights file as it is at (mtime_ns, size): a replaced file is loaded again,
    even one copied with its old time kept (``cp -p``), since its size or time differs."""
    card_path = weights.with_suffix(".json")
    config = _card_config(card_path)
    saved = _saved_config(weights)
    if saved is not None and saved != config:
        raise CardError(f"its card {card_path} describes another configuration than the one saved in "
                        f"{weights.name} ({saved.to_dict()}): export the model again")
    model = EdgeCodecModel(config)
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, _weights_hash(weights)


def load_model(name: str, weights_hash: bytes | None = None) -> tuple[EdgeCodecModel, bytes]:
    """The model in eval mode and its 8-byte weights hash (cached per process). ``weights_hash``:
    a stream's, which only those weights decode: the first model of that name in search order
    that has them is used, so a model hidden by another of its name (the shipped file behind a
    user's export of the same name, or behind a damaged one) still decodes its files."""
    if weights_hash is None:
        return _load_entry(find_model(name))
    _check_name(name)
    entries = all_models(name)
    for entry in entries:
        if not entry.problem and entry.weights_hash == weights_hash:
            model, found = _load_entry(entry)
            if found != weights_hash:  # the file changed since it was hashed
                break
            return model, found
    first = find_model(name, for_stream=True)  # UnknownModelError when there is none, or the first cannot be used
    others = [e for e in entries if e.weights != first.weights]
    hidden = f" (and {len(others)} it hides)" if others else ""
    raise WeightsMismatchError(
        f"stream was written by weights {weights_hash.hex()} of model {name!r}, but the model of that name here "
        f"({first.weights}{hidden}) has other weights: decode it where the weights that wrote it are kept "
        "(the edgecodec version, or the model folder, that wrote it)")


def _load_entry(entry: ModelEntry) -> tuple[EdgeCodecModel, bytes]:
    try:
        with _LOAD_LOCK:  # threads (compress --jobs, the web page) share one instance per file
            stat = entry.weights.stat()
            return _load(entry.weights, stat.st_mtime_ns, stat.st_size)
    except CardError as exc:
        raise UnknownModelError(f"model {entry.name!r} cannot be used: {exc}") from None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        # A damaged or foreign file in a model folder: name it, not a traceback from deep inside.
        raise UnknownModelError(f"model {entry.name!r} cannot be loaded from {entry.weights}: "
                                f"{type(exc).__name__}: {exc}") from None


def load_pretrained(name: str) -> EdgeCodecModel:
    """A model's own copy, for research: its forward pass (``model(x, quality)``: ``x_hat``,
    ``likelihoods``), gradients, fine-tuning. Eval mode with frozen parameters, as the codec uses
    it (``requires_grad_(True)`` and ``train()`` to train); ``load_model``'s instance is shared by
    every compress and decompress in the process, so it is not handed out for changes."""
    return copy.deepcopy(load_model(name)[0])


def save_model(model: EdgeCodecModel, folder: str | Path, name: str, card: dict[str, Any]) -> Path:
    """Write ``name.safetensors`` and ``name.json`` (the card, with the model config) into folder.

    Entropy-model tables are refreshed first, so the file codes with what it was trained to.
    """
    from safetensors.torch import save_file

    if not valid_model_name(name):
        raise ValueError(f"invalid model name {name!r}: a model name is {MODEL_NAME_RULE}")
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in its place or on its path: exit 11, not an internal error
        raise OutputWriteError.making(folder, exc, "into the model folder") from None
    model.update(force=True)
    _clear_gain_tables(model)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    weights = folder / f"{name}.safetensors"
    # The config rides in the file's metadata, so the weights hash that every stream records covers
    # everything decoding depends on: the same tensors with another min_level (quality -> gain
    # mapping) are another file, and a card edited apart from its weights is caught on load.
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={CONFIG_METADATA: json.dumps(model.config.to_dict(), sort_keys=True)})
        os.chmod(tmp, 0o666 & ~umask())  # safetensors writes its file anew, 0600: others could not read the weights
    card = {**card, "name": name, "config": model.config.to_dict(),
            "parameters": model.parameter_counts(),
            "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    atomic_write_text(folder / f"{name}.json", json.dumps(card, indent=2) + "\n")
    return weights


def _clear_gain_tables(model: EdgeCodecModel) -> None:
    """Move the inverse gain tables that integer decoding rounds to fixed point off rounding
    boundaries (lite.hyper.clear_of_rounding_boundaries), so every platform decodes the file alike."""
    from .lite.hyper import clear_of_rounding_boundaries

    with torch.no_grad():
        for table in (model.log_y_gain_inv, model.log_z_gain_inv):
            cleared = clear_of_rounding_boundaries(table.detach().cpu().numpy(), model.config.min_level)
            table.copy_(torch.from_numpy(cleared).to(table.device))


def shipped_models() -> list[str]:
    """Names of the models shipped inside the package (``edgecodec/weights``), default first."""
    names = sorted(p.stem for p in PACKAGE_WEIGHTS.glob("*.safetensors"))
    return sorted(names, key=lambda n: n != DEFAULT_MODEL)


def card_mismatch(entry: ModelEntry) -> str | None:
    """Why a model's card does not describe its weights file (another model's file, or a damaged
    one: the card's ``weights_sha256`` differs), or None. Such a model is still used as its weights
    allow (files record the weights' own hash); its card's figures are not of them. Cards without
    ``weights_sha256`` are taken as they are."""
    recorded = entry.card.get("weights_sha256")
    if entry.problem or not isinstance(recorded, str):
        return None
    try:
        actual = entry.weights_hash.hex()
    except OSError as exc:
        return f"{entry.weights} cannot be read ({exc.strerror or exc})"
    if not recorded.lower().startswith(actual):
        return (f"{entry.weights} is not the weights file its card describes (sha256 {actual}..., the card's "
                f"{recorded[:16]}...): the card's figures are not of these weights")
    return None


def describe(entry: ModelEntry) -> dict[str, Any]:
    """A model's row in ``edgecodec models``: name, transform, prior, rate range, parameters, ..."""
    card = entry.card
    measured = card.get("kodak") if isinstance(card.get("kodak"), dict) else None
    return {"name": entry.name, "config": card.get("config", {}).get("transform"),
            "prior": card.get("config", {}).get("prior"), "bpp_range": card.get("bpp_range"),
            # export-model --kodak measures any folder and records which; cards from before that
            # measured Kodak; a card without the record (written by hand) does not say
            "bpp_measured_on": None if measured is None else measured.get("folder_name", "Kodak"),
            "parameters": card.get("parameters"), "summary": card.get("summary", "")}


__all__ = ["DEFAULT_MODEL", "ModelEntry", "all_models", "describe", "find_model", "folder_notes", "list_models",
           "load_model", "load_pretrained", "shipped_models", "save_model", "valid_model_name"]
