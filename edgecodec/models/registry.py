"""Named model configurations (timm-style registry): ``create_model("crb", channels=96)``."""

from __future__ import annotations

import warnings
from typing import Any, Callable

from .codec_model import EdgeCodecModel, ModelConfig
from .original import FloatLatentAutoencoder

_CONFIGS: dict[str, Callable[[], ModelConfig]] = {}


class UnknownConfigError(KeyError):
    """An unknown configuration name or field: a KeyError (a lookup) whose message prints as
    written (KeyError's own str() quotes it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def config_name(name: str) -> str:
    """A configuration name in the registry's spelling: dashes, as ``list_configs`` gives them.
    Registered names come from function names (``gdn_hp_edge``), so either spelling is taken
    (``gdn_hp_edge`` and ``gdn-hp-edge`` name one configuration)."""
    return name.replace("_", "-")


def register_config(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
    """Register a function returning a ModelConfig under the function's name (underscores become
    dashes). A name taken already is replaced with a warning, as timm's registry does."""
    name = config_name(getattr(fn, "__name__", ""))
    if not callable(fn) or not name.replace("-", "_").isidentifier():
        raise ValueError(f"register_config takes a named function returning a ModelConfig (def NAME(): ...), "
                         f"not {fn!r}")
    if name in _CONFIGS:
        warnings.warn(f"model configuration {name!r} is registered already: replaced", stacklevel=2)
    _CONFIGS[name] = fn
    return fn


def list_configs() -> list[str]:
    """Names of the registered model configurations, sorted (``create_model`` builds them)."""
    return sorted(_CONFIGS)


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The named configuration with ``overrides`` (ModelConfig fields) applied; KeyError for an
    unknown name or field, ValueError for a value ModelConfig refuses (a flag that is not true or false).
    ``name`` in either spelling (``config_name``)."""
    if not isinstance(name, str) or config_name(name) not in _CONFIGS:
        raise UnknownConfigError(f"unknown model configuration {name!r}; known: {', '.join(list_configs())}")
    config = _CONFIGS[config_name(name)]()
    if not isinstance(config, ModelConfig):
        raise TypeError(f"model configuration {name!r} returned a {type(config).__name__}, not a ModelConfig")
    base = config.to_dict()
    unknown = set(overrides) - set(base)
    if unknown:
        raise UnknownConfigError(f"unknown model config keys: {sorted(unknown)}")
    base.update(overrides)
    return ModelConfig.from_dict(base)


def build_model(config: ModelConfig) -> EdgeCodecModel | FloatLatentAutoencoder:
    """The model a config describes: a codec, or (``prior: none``) a float-latent autoencoder."""
    return FloatLatentAutoencoder(config) if config.prior == "none" else EdgeCodecModel(config)


def create_model(name: str, **overrides: Any) -> EdgeCodecModel | FloatLatentAutoencoder:
    """A freshly initialised model of the named configuration, e.g. ``create_model("crb",
    channels=96)`` (``load_pretrained`` gives the shipped weights)."""
    return build_model(get_config(name, **overrides))


@register_config
def cae() -> ModelConfig:
    """Plain strided-conv encoder / transposed-conv decoder, BatchNorm + ReLU, tanh output."""
    return ModelConfig(transform="cae")


@register_config
def crb() -> ModelConfig:
    """CAE plus residual blocks after each inner stage."""
    return ModelConfig(transform="crb")


@register_config
def gcrb() -> ModelConfig:
    """CRB generator trained against a PatchGAN discriminator with a perceptual loss."""
    return ModelConfig(transform="crb", discriminator=True)


@register_config
def gdn_hp() -> ModelConfig:
    """GDN transforms (Balle et al.) with the gained mean-scale hyperprior: the fidelity default."""
    return ModelConfig(transform="gdn")


@register_config
def gdn_hp_edge() -> ModelConfig:
    """gdn-hp with a lighter hyper-synthesis: its last layer is a 1x1 instead of a 3x3 convolution.
    The decoder (synthesis + hyper-synthesis + gains) falls from 1.16 M to 0.83 M parameters and the
    integer hyper-synthesis, which both sides run, from 1.7 to 0.4 kMAC per pixel. The shipped
    models' configuration (configs/edge/)."""
    return ModelConfig(transform="gdn", hyper_out_kernel=1)


# --- the original experiment (models/original.py): float latents, trained with `train.rate: none` ---
@register_config
def original_cae() -> ModelConfig:
    """The original CAE: five stride-2 3x3 convs, BatchNorm + ReLU, 64x4x4 float latent (CR 48:1 at 128x128)."""
    return ModelConfig(transform="original-cae", channels=64, latent_channels=64, hyper_channels=0, prior="none",
                       res_blocks=0)


@register_config
def original_crb() -> ModelConfig:
    """The original CRB: channels [32, 64, 128, 256], two residual blocks per level, 16x16x16 float latent
    (CR 12:1 at 128x128; latent_channels=256 is the published code's 0.75:1, see models/original.py)."""
    return ModelConfig(transform="original-crb", channels=32, latent_channels=16, hyper_channels=0, prior="none",
                       res_blocks=2)


@register_config
def original_gcrb() -> ModelConfig:
    """original-crb trained against the original PatchGAN (64, 128, 256, 512, 1; 4x4 convs)."""
    return ModelConfig(transform="original-crb", channels=32, latent_channels=16, hyper_channels=0, prior="none",
                       res_blocks=2, discriminator=True, disc_channels=64)
