"""Named model configurations (timm-style registry): ``create_model("crb", channels=96)``."""

from __future__ import annotations

from typing import Any, Callable

from .codec_model import EdgeCodecModel, ModelConfig

_CONFIGS: dict[str, Callable[[], ModelConfig]] = {}


def register_config(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
    """Register a function returning a ModelConfig under the function's name (underscores become dashes)."""
    _CONFIGS[fn.__name__.replace("_", "-")] = fn
    return fn


def list_configs() -> list[str]:
    return sorted(_CONFIGS)


def get_config(name: str, **overrides: Any) -> ModelConfig:
    if name not in _CONFIGS:
        raise KeyError(f"unknown model configuration {name!r}; known: {', '.join(list_configs())}")
    base = _CONFIGS[name]().to_dict()
    unknown = set(overrides) - set(base)
    if unknown:
        raise KeyError(f"unknown model config keys: {sorted(unknown)}")
    base.update(overrides)
    return ModelConfig.from_dict(base)


def create_model(name: str, **overrides: Any) -> EdgeCodecModel:
    return EdgeCodecModel(get_config(name, **overrides))


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
