"""Model architectures: transforms, discriminator, the codec model and the configuration registry."""

from .codec_model import EdgeCodecModel, ModelConfig
from .discriminator import PatchDiscriminator
from .original import FloatLatentAutoencoder
from .registry import build_model, create_model, get_config, list_configs, register_config

__all__ = [
    "EdgeCodecModel",
    "FloatLatentAutoencoder",
    "ModelConfig",
    "PatchDiscriminator",
    "build_model",
    "create_model",
    "get_config",
    "list_configs",
    "register_config",
]
