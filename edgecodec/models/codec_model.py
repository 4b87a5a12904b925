"""The learned codec: CAE/CRB transforms around a CompressAI latent codec with gain units.

Variable rate follows Cui et al., "Asymmetric Gained Deep Image Compression With Continuous Rate
Adaptation" (CVPR 2021): each of K quality levels owns a per-channel gain vector (and its inverse)
applied to y before quantization (and to z in the hyperprior). A continuous quality q in [0, 1]
interpolates geometrically between neighbouring levels. CompressAI's ``GainHyperpriorLatentCodec``
implements the gained hyperprior; we only own the gain tables and their interpolation.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import (
    EntropyBottleneckLatentCodec,
    GainHyperLatentCodec,
    GainHyperpriorLatentCodec,
    GaussianConditionalLatentCodec,
)
from compressai.models import CompressionModel
from torch import nn

from ..errors import FormatError
from .transforms import STRIDE, analysis_transform, hyper_analysis, hyper_synthesis, synthesis_transform

PRIORS = ("factorized", "scale", "meanscale")
TRANSFORMS = ("cae", "crb", "gdn")
# Stream sanity bounds for the rANS decoder (see EdgeCodecModel._pad_streams).
MAX_BYTES_PER_SYMBOL = 8
BYPASS_STATE_MARGIN = 64 * 1024  # zero padding for bypass runs fed by the decoder state alone


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model's architecture. Stored in model cards and checkpoints."""

    # "cae" (plain), "crb" (residual blocks) or "gdn" (GDN instead of BN+ReLU); with prior "none",
    # "original-cae" or "original-crb" (the original experiment's float-latent autoencoders, models/original.py)
    transform: str = "crb"
    channels: int = 64  # width of the main transforms
    latent_channels: int = 128  # channels of y
    hyper_channels: int = 64  # channels of z (hyperprior only)
    prior: str = "meanscale"  # "factorized", "scale" or "meanscale"; "none": float latent, no entropy model
    res_blocks: int = 1  # residual blocks per stage (crb only)
    levels: int = 6  # quality levels with their own gain vectors
    # Level that quality 0 maps to; below 0 extrapolates the gains past the lowest trained level
    # (quality 1 is always level K-1).
    min_level: float = 0.0
    discriminator: bool = False  # trained with a PatchGAN (gcrb); not part of the codec
    disc_channels: int = 64
    disc_conditional: bool = False  # HiFiC-style discriminator conditioned on y_hat
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)


def interpolate_levels(table: torch.Tensor, quality: torch.Tensor, min_level: float = 0.0) -> torch.Tensor:
    """Rows of a per-level table (K, ...) interpolated linearly at qualities (B,) in [0, 1].

    Quality 0 sits at level ``min_level`` and quality 1 at level K-1; a negative ``min_level``
    extrapolates the first segment. Gains (log) and lambdas (log) both use this, so a quality
    means the same trade-off in training and in coding."""
    k = table.shape[0]
    pos = min_level + quality.clamp(0, 1).to(table.dtype) * (k - 1 - min_level)
    lower = pos.floor().long().clamp(0, k - 2)
    t = (pos - lower).reshape(-1, *[1] * (table.dim() - 1))
    return (1 - t) * table[lower] + t * table[lower + 1]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run on one thread: the hyper-synthesis on both sides of the channel, and the synthesis.

    The Gaussian scales chosen by the hyper-synthesis select the entropy coder's tables; if the
    encoder and decoder computed them with different float reduction orders (thread counts), one
    scale sitting on a table boundary would desynchronise the rANS decoder. One thread makes the
    computation order fixed. The hyper path runs at 1/64 resolution, so this costs little.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class EdgeCodecModel(CompressionModel):
    """Transforms + quantized latent + learned entropy model, variable rate via gain units."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, not {config.transform!r}")
        if config.prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, not {config.prior!r}")
        if config.levels < 2:
            raise ValueError("need at least 2 quality levels")
        self.config = config
        n, m, h, k = config.channels, config.latent_channels, config.hyper_channels, config.levels
        self.g_a = analysis_transform(config.transform, n, m, config.res_blocks)
        self.g_s = synthesis_transform(config.transform, n, m, config.res_blocks)
        if config.prior == "factorized":
            self.latent_codec = EntropyBottleneckLatentCodec(EntropyBottleneck(m))
        else:
            mean_scale = config.prior == "meanscale"
            self.latent_codec = GainHyperpriorLatentCodec(
                latent_codec={
                    "y": GaussianConditionalLatentCodec(
                        quantizer="ste", chunks=("scales", "means") if mean_scale else ("scales",)
                    ),
                    "hyper": GainHyperLatentCodec(
                        EntropyBottleneck(h), hyper_analysis(m, h), hyper_synthesis(m, h, mean_scale)
                    ),
                }
            )
        # Gains live in log space: positive by construction, and geometric interpolation between
        # levels becomes linear. Level 0 (lowest rate) starts with small gains, level K-1 large.
        init = torch.linspace(-1.0, 1.0, k)[:, None]
        self.log_y_gain = nn.Parameter(init.repeat(1, m))
        self.log_y_gain_inv = nn.Parameter(-init.repeat(1, m))
        self.log_z_gain = nn.Parameter(torch.zeros(k, h))
        self.log_z_gain_inv = nn.Parameter(torch.zeros(k, h))

    @property
    def stride(self) -> int:
        """Inputs must have height and width divisible by this."""
        return STRIDE * (1 if self.config.prior == "factorized" else 4)

    def gains(self, quality: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gain vectors for qualities in [0, 1] (shape (B,)), each shaped (B, C, 1, 1)."""
        def interp(table: torch.Tensor) -> torch.Tensor:
            return interpolate_levels(table, quality, self.config.min_level).exp()[:, :, None, None]

        return {
            "y_gain": interp(self.log_y_gain),
            "y_gain_inv": interp(self.log_y_gain_inv),
            "z_gain": interp(self.log_z_gain),
            "z_gain_inv": interp(self.log_z_gain_inv),
        }

    def _latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.g_a(x * 2 - 1)

    def _image(self, y_hat: torch.Tensor) -> torch.Tensor:
        return (self.g_s(y_hat) + 1) / 2

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict[str, Any]:
        """Training/evaluation pass with quantization proxies. x in [0, 1], quality (B,)."""
        g = self.gains(quality)
        y = self._latent(x)
        if self.config.prior == "factorized":
            out = self.latent_codec(y * g["y_gain"])
            y_hat = out["y_hat"] * g["y_gain_inv"]
        else:
            out = self.latent_codec(y, g["y_gain"], g["z_gain"], g["y_gain_inv"], g["z_gain_inv"])
            y_hat = out["y_hat"]
        return {"x_hat": self._image(y_hat), "likelihoods": out["likelihoods"], "y_hat": y_hat}

    @torch.no_grad()
    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        """Analysis transform of one image (1, 3, H, W) in [0, 1], H and W multiples of ``stride``."""
        return self._latent(x)

    @torch.no_grad()
    def compress_latent(self, y: torch.Tensor, quality: float) -> dict[str, Any]:
        """Entropy-code a latent at a quality. Returns the byte strings (y first, then z for
        hyperprior models) and y's spatial shape."""
        g = self.gains(torch.tensor([quality]))
        if self.config.prior == "factorized":
            out = self.latent_codec.compress(y * g["y_gain"])
        else:
            with single_thread():
                out = self.latent_codec.compress(y, g["y_gain"], g["z_gain"], g["y_gain_inv"], g["z_gain_inv"])
        strings = [s[0] for s in out["strings"]]
        return {"strings": strings, "shape": tuple(y.shape[-2:])}

    def compress(self, x: torch.Tensor, quality: float) -> dict[str, Any]:
        """Entropy-code one image (1, 3, H, W), H and W multiples of ``stride``."""
        return self.compress_latent(self.analyze(x), quality)

    @torch.no_grad()
    def decompress(self, strings: list[bytes], shape: tuple[int, int], quality: float) -> torch.Tensor:
        """Decode byte strings into an image (1, 3, H, W) in [0, 1]."""
        strings = self._pad_streams(strings, shape)
        g = self.gains(torch.tensor([quality]))
        if self.config.prior == "factorized":
            y_hat = self.latent_codec.decompress([[strings[0]]], shape)["y_hat"] * g["y_gain_inv"]
        else:
            z_shape = (shape[0] // 4, shape[1] // 4)
            with single_thread():
                y_hat = self.latent_codec.decompress(
                    [[strings[0]], [strings[1]]], {"y": shape, "hyper": z_shape},
                    y_gain_inv=g["y_gain_inv"], z_gain_inv=g["z_gain_inv"],
                )["y_hat"]
        # The synthesis also runs on one thread: with GDN, 1 and 2 threads gave pixels differing
        # by one level in a few places (float reduction order), and decoding must not depend on
        # the machine's thread count.
        with single_thread():
            return self._image(y_hat).clamp(0, 1)

    def _pad_streams(self, strings: list[bytes], shape: tuple[int, int]) -> list[bytes]:
        """Check each stream's length, then append enough zero bytes that the decoder never
        reads past the buffer.

        CompressAI's C++ rANS decoder reads 32-bit words without bounds checks. Outside its bypass
        mode it reads at most one word per symbol (4 bytes a symbol). In bypass mode it first
        reads 4-bit chunks while they equal 15, adding them up into ``n_bypass``, then reads
        ``n_bypass`` more 4-bit chunks: every 0xF nibble the stream contains can make it read up
        to 15 nibbles (7.5 bytes) further, so a stream of 0xFF bytes used to run megabytes past
        its end and crash the process (found by benchmarks/fuzz.py). Zero padding ends every
        such chain, so the over-read is bounded by 8 bytes per 0xF nibble in the stream, plus
        the 64-bit decoder state (at most 16 nibbles of 15, i.e. 120 bytes a bypass symbol; a
        long bypass read of zeros drives the state to 0, where it stays). Our encoder writes at
        most 7 bytes per symbol (16 bits, or 16 + 10 four-bit bypass chunks for any int32), so a
        longer stream is malformed; the length check also bounds the padding's memory.
        """
        symbols = [self.config.latent_channels * shape[0] * shape[1]]
        if self.config.prior != "factorized":
            symbols.append(self.config.hyper_channels * (shape[0] // 4) * (shape[1] // 4))
        padded = []
        for s, n in zip(strings, symbols):
            if len(s) > MAX_BYTES_PER_SYMBOL * n + 64:
                raise FormatError(f"corrupted .edc file: a stream of {len(s)} bytes for {n} symbols "
                                  f"(at most {MAX_BYTES_PER_SYMBOL} bytes a symbol)")
            b = np.frombuffer(s, dtype=np.uint8)
            nibbles_15 = int(np.count_nonzero((b & 0x0F) == 0x0F) + np.count_nonzero(b >= 0xF0))
            padded.append(s + bytes(4 * n + 8 * nibbles_15 + BYPASS_STATE_MARGIN))
        return padded

    @property
    def num_streams(self) -> int:
        return 1 if self.config.prior == "factorized" else 2

    def parameter_counts(self) -> dict[str, int]:
        """Parameters that the encoder and the decoder each need, and in total.

        Both sides run the hyper-synthesis (the encoder needs the same Gaussian parameters), so
        it counts in both and encoder + decoder exceeds total."""
        def count(*modules: nn.Module) -> int:
            return sum(p.numel() for mod in modules for p in mod.parameters())

        decoder = count(self.g_s) + self.log_y_gain_inv.numel() + self.log_z_gain_inv.numel()
        if self.config.prior != "factorized":
            decoder += count(self.latent_codec["hyper"].h_s)
        return {"encoder": count(self) - count(self.g_s), "decoder": decoder, "total": count(self)}
