"""Model architectures: transforms, discriminator, the codec model and the configuration registry."""

from .codec_model import EdgeCodecModel, ModelConfig
from .discriminator import PatchDiscriminator
from .registry import create_model, get_config, list_configs, register_config

__all__ = [
    "EdgeCodecModel",
    "ModelConfig",
    "PatchDiscriminator",
    "create_model",
    "get_config",
    "list_configs",
    "register_config",
]
