"""The learned codec: CAE/CRB transforms around a CompressAI latent codec with gain units.

Variable rate follows Cui et al., "Asymmetric Gained Deep Image Compression With Continuous Rate
Adaptation" (CVPR 2021): each of K quality levels owns a per-channel gain vector (and its inverse)
applied to y before quantization (and to z in the hyperprior). A continuous quality q in [0, 1]
interpolates geometrically between neighbouring levels. CompressAI's ``GainHyperpriorLatentCodec``
implements the gained hyperprior; we only own the gain tables and their interpolation.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterator

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck, EntropyModel
from compressai.latent_codecs import (
    EntropyBottleneckLatentCodec,
    GainHyperLatentCodec,
    GainHyperpriorLatentCodec,
    GaussianConditionalLatentCodec,
)
from compressai.models import CompressionModel
from compressai.ops import quantize_ste
from torch import nn

from ..codec.container import check_quality
from ..errors import FormatError, UsageError
from ..lite.entropy import ExactEntropyModel
from ..lite.qmap import Quality, gains_matched, hyper_quality, over_grid, per_pixel
from ..lite.rans import pad_stream
from .context import checkerboard_latent_codec
from .transforms import STRIDE, analysis_transform, hyper_analysis, hyper_synthesis, synthesis_transform

PRIORS = ("factorized", "scale", "meanscale")
TRANSFORMS = ("cae", "crb", "gdn")
CONTEXTS = ("none", "checkerboard")


class ScaleLatentCodec(GaussianConditionalLatentCodec):
    """y's codec for ``prior: scale`` (zero-mean Gaussians). CompressAI 1.2.8's forward computes
    the straight-through y_hat as ``quantize_ste(y - means) + means`` even when there are no
    means (chunks ("scales",)), a TypeError; this forward rounds y itself then."""

    def forward(self, y: torch.Tensor, ctx_params: torch.Tensor) -> dict[str, Any]:
        scales_hat = self.entropy_parameters(ctx_params)
        _, y_likelihoods = self.gaussian_conditional(y, scales_hat)
        return {"likelihoods": {"y": y_likelihoods}, "y_hat": quantize_ste(y)}


def quality_or_map(quality: Quality) -> Quality:
    """A coding quality: one number in [0, 1] (checked: the gain interpolation would clamp it in
    silence; a 0-d array is one number), or a quality map (an array, lite/qmap.py) as it is."""
    if isinstance(quality, np.ndarray) and quality.ndim == 0:
        quality = quality.item()
    return quality if isinstance(quality, np.ndarray) else check_quality(quality, " or a quality map")


def quality_batch(quality: torch.Tensor | float, batch: int, device: torch.device | None = None) -> torch.Tensor:
    """Qualities (B,) for a batch of ``batch`` images from one number or a (B,) tensor, refused
    (ValueError, TypeError) when not in [0, 1] or not one per image: the gain interpolation would
    clamp any value silently, and NaN made every gain NaN (and entropy coding loop)."""
    if isinstance(quality, torch.Tensor) and not quality.dtype == torch.bool:
        quality = quality.reshape(1).expand(batch) if quality.dim() == 0 else quality
        if quality.shape != (batch,):
            raise ValueError(f"quality: one number, or one per image ({batch}); got shape {tuple(quality.shape)}")
        if not bool(((quality >= 0) & (quality <= 1)).all()):  # NaN fails both comparisons
            raise ValueError(f"quality must be in [0, 1], got {[round(v, 6) for v in quality.tolist()]}")
        return quality if device is None else quality.to(device)  # a CPU tensor beside a GPU batch
    return torch.full((batch,), check_quality(quality, " or a (B,) tensor"), device=device)


def check_image_batch(x: torch.Tensor, stride: int, model: torch.nn.Module, what: str = "the model's stride") -> None:
    """ValueError (TypeError for a dtype other than the model's) naming what is wrong with a model's
    input batch, which the transforms would otherwise fail on deep inside (or, for sides not
    multiples of ``stride``, decode at another size; ``what``: that stride, for the message).
    Values outside [0, 1] are refused too: a 0-255 float image trained or coded as garbage in
    silence, and NaN or extreme values made entropy coding loop. It costs one aminmax and one
    device sync, as forward()'s check of a tensor of qualities (``quality_batch``) does already."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"input must be a (B, 3, H, W) tensor in [0, 1], got {shape}")
    dtype = next((p.dtype for p in model.parameters()), x.dtype)
    if x.dtype != dtype:  # uint8 images, float64 arrays: the convolutions fail on them deep inside
        raise TypeError(f"input must be a {dtype} tensor in [0, 1] (the model's dtype), got {x.dtype}")
    h, w = x.shape[-2:]
    if h % stride or w % stride or not h or not w:
        raise ValueError(f"input of {w}x{h} pixels: height and width must be positive multiples of "
                         f"{what} ({stride}); pad it (edgecodec.compress pads images itself)")
    if not x.shape[0]:  # aminmax fails on an empty batch with a RuntimeError
        raise ValueError("input is an empty batch (0, 3, H, W): give at least one image")
    low, high = torch.stack(torch.aminmax(x.detach())).tolist()  # one sync; NaN fails the test below
    if not (low >= 0 and high <= 1):
        raise ValueError(f"input values must be in [0, 1] (none NaN), got {low:.4g} to {high:.4g}"
                         + (": divide 8-bit pixels by 255" if high > 1.5 else ""))


# The text fields' values (models/transforms.py, models/original.py, the priors and context models below).
MODEL_CHOICES = {"transform": ("cae", "crb", "gdn", "original-cae", "original-crb"),
                 "prior": ("factorized", "scale", "meanscale", "none"), "context": ("none", "checkerboard")}
# Widths and counts that cannot be 0 (the others' 0 means "none" or "the default width").
MODEL_POSITIVE = ("channels", "latent_channels", "hyper_out_kernel", "levels", "disc_channels")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model's architecture. Stored in model cards and checkpoints."""

    # "cae" (plain), "crb" (residual blocks) or "gdn" (GDN instead of BN+ReLU); with prior "none",
    # "original-cae" or "original-crb" (the original experiment's float-latent autoencoders, models/original.py)
    transform: str = "crb"
    channels: int = 64  # width of the main transforms
    latent_channels: int = 128  # channels of y
    hyper_channels: int = 64  # channels of z (hyperprior only)
    # width of the hyper-synthesis' middle layer; 0: (hyper_channels + its output channels) // 2
    hyper_mid_channels: int = 0
    hyper_out_kernel: int = 3  # kernel of the hyper-synthesis' last (stride-1) convolution
    prior: str = "meanscale"  # "factorized", "scale" or "meanscale"; "none": float latent, no entropy model
    res_blocks: int = 1  # residual blocks per stage (crb only)
    # residual blocks after the analysis transform's 2nd and 3rd GDN (gdn only; see transforms.py)
    encoder_res_blocks: int = 0
    # "checkerboard": y's parameters also see the decoded half of y (models/context.py; meanscale only)
    context: str = "none"
    context_channels: int = 0  # output channels of the context convolution; 0: latent_channels
    levels: int = 6  # quality levels with their own gain vectors
    # Level that quality 0 maps to; below 0 extrapolates the gains past the lowest trained level
    # (quality 1 is always level K-1).
    min_level: float = 0.0
    discriminator: bool = False  # trained with a PatchGAN (gcrb); not part of the codec
    disc_channels: int = 64
    disc_conditional: bool = False  # HiFiC-style discriminator conditioned on y_hat
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_fields()
        if self.levels < 2:  # before min_level's check, which named min_level for levels=1
            raise ValueError(f"levels must be at least 2 (quality 0 and quality 1), got {self.levels}")
        # Quality 1 is level K-1, so quality 0 must sit below it; NaN would make every gain NaN.
        if not (isinstance(self.min_level, (int, float)) and math.isfinite(self.min_level)
                and self.min_level < self.levels - 1):
            raise ValueError(f"min_level must be a finite number below levels - 1 = {self.levels - 1}, "
                             f"got {self.min_level!r}")

    def _check_fields(self) -> None:
        """Each field of its default's kind (``model.overrides.channels=abc`` failed deep inside the
        model's construction, and a misspelt transform built a CAE in silence)."""
        for f in fields(self):
            name, value, default = f.name, getattr(self, f.name), f.default
            if name in MODEL_CHOICES:
                ok, want = value in MODEL_CHOICES[name], f"one of {', '.join(MODEL_CHOICES[name])}"
            elif isinstance(default, bool):
                ok, want = isinstance(value, bool), "true or false"
            elif isinstance(default, int):
                least = 1 if name in MODEL_POSITIVE else 0
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= least
                want = f"a whole number of {least} or more"
            else:  # min_level (checked below) and extra (free-form)
                continue
            if not ok:
                raise UsageError(f"model setting {name}={value!r}: expected {want}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (what model cards and checkpoints store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """The config a ``to_dict`` dict describes; ValueError for keys it does not know."""
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


_THREADS_LOCK = threading.Lock()
_threads_state = threading.local()  # this thread's section depth, and whether its count is a stale 1
_open_sections = 0  # threads inside a single_thread() section
_threads_outside = 1  # torch's thread count when the first of them entered, restored by the last


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run on one thread: the hyper-synthesis on both sides of the channel, and the synthesis.

    The Gaussian scales chosen by the hyper-synthesis select the entropy coder's tables; if the
    encoder and decoder computed them with different float reduction orders (thread counts), one
    scale sitting on a table boundary would desynchronise the rANS decoder. One thread makes the
    computation order fixed. The hyper path runs at 1/64 resolution, so this costs little.

    torch.set_num_threads in one thread changes what others run with, so sections overlapping in
    several threads (an app's thread pool) share one setting: the first to enter saves the count
    and sets 1, the last to leave puts it back. A thread that left while others were inside still
    reads 1 for itself (torch keeps a per-thread copy), so it is not asked for the count again
    until it has put it back. Each saving and restoring its own let one section's end run another
    on several threads, and left an app's threads on one.
    """
    global _open_sections, _threads_outside
    depth = getattr(_threads_state, "depth", 0)
    if depth == 0:
        with _THREADS_LOCK:
            if _open_sections == 0 and not getattr(_threads_state, "stale", False):
                _threads_outside = torch.get_num_threads()
            _open_sections += 1
            torch.set_num_threads(1)
    _threads_state.depth = depth + 1
    try:
        yield
    finally:
        _threads_state.depth = depth
        if depth == 0:
            with _THREADS_LOCK:
                _open_sections -= 1
                _threads_state.stale = _open_sections > 0
                if _open_sections == 0:
                    torch.set_num_threads(_threads_outside)


class EdgeCodecModel(CompressionModel):
    """Transforms + quantized latent + learned entropy model, variable rate via gain units."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, not {config.transform!r}")
        if config.prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, not {config.prior!r}")
        if config.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, not {config.context!r}")
        if config.context != "none" and config.prior != "meanscale":
            raise ValueError("a context model needs the meanscale prior")
        self.config = config
        n, m, h, k = config.channels, config.latent_channels, config.hyper_channels, config.levels
        self.g_a = analysis_transform(config.transform, n, m, config.res_blocks, config.encoder_res_blocks)
        self.g_s = synthesis_transform(config.transform, n, m, config.res_blocks)
        if config.prior == "factorized":
            self.latent_codec = EntropyBottleneckLatentCodec(EntropyBottleneck(m))
        else:
            mean_scale = config.prior == "meanscale"
            if config.context == "checkerboard":
                y_codec = checkerboard_latent_codec(m, config.context_channels or m)
            else:
                y_codec = (GaussianConditionalLatentCodec(quantizer="ste") if mean_scale
                           else ScaleLatentCodec(quantizer="ste", chunks=("scales",)))
            self.latent_codec = GainHyperpriorLatentCodec(
                latent_codec={
                    "y": y_codec,
                    "hyper": GainHyperLatentCodec(
                        EntropyBottleneck(h), hyper_analysis(m, h),
                        hyper_synthesis(m, h, mean_scale, config.hyper_mid_channels, config.hyper_out_kernel)
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
    def gaussian_conditional(self) -> nn.Module:
        """The GaussianConditional coding y (inside the checkerboard codec for context models)."""
        y_codec = self.latent_codec["y"]
        return (y_codec["y"] if self.config.context != "none" else y_codec).gaussian_conditional

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

    def forward(self, x: torch.Tensor, quality: torch.Tensor | float) -> dict[str, Any]:
        """Training/evaluation pass with quantization proxies. x (B, 3, H, W) in [0, 1], H and W
        multiples of ``stride``; quality in [0, 1], a (B,) tensor or one number for the whole batch
        (``model(x, 0.5)``)."""
        check_image_batch(x, self.stride, self)
        g = self.gains(quality_batch(quality, x.shape[0], x.device))
        y = self._latent(x)
        if self.config.prior == "factorized":
            out = self.latent_codec(y * g["y_gain"])
            y_hat = out["y_hat"] * g["y_gain_inv"]
        else:
            out = self.latent_codec(y, g["y_gain"], g["z_gain"], g["y_gain_inv"], g["z_gain_inv"])
            y_hat = out["y_hat"]
        return {"x_hat": self._image(y_hat), "likelihoods": out["likelihoods"], "y_hat": y_hat}

    def _check_eval_mode(self, method: str) -> None:
        """Coding needs eval mode: in training mode BatchNorm layers (cae, crb, gcrb) code with the
        batch's statistics and update their running ones, a silently different model."""
        if self.training:
            raise RuntimeError(f"{type(self).__name__}.{method} codes with the trained model: call model.eval() "
                               "first (it is in training mode, as a new module is)")

    @torch.no_grad()
    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        """Analysis transform of images (B, 3, H, W) in [0, 1], H and W multiples of the analysis
        stride (16; ``compress_latent`` needs multiples of ``stride``, tiles' windows are of 16)."""
        self._check_eval_mode("analyze")
        # Other sides gave a latent of the rounded-up size, decoded at another size in silence.
        check_image_batch(x, STRIDE, self, "the analysis transform's stride")
        return self._latent(x)

    def encoder_gains(self, quality: Quality) -> tuple[torch.Tensor, torch.Tensor]:
        """y's and z's gains at a quality, (1, C, 1, 1) each, or with a quality map (lite/qmap.py;
        hyperprior models): y's per latent pixel (1, M, h, w), z's per hyper-latent pixel
        (1, C, h/4, w/4)."""
        if not isinstance(quality, np.ndarray):
            g = self.gains(torch.tensor([quality]))
            return g["y_gain"], g["z_gain"]
        if self.config.prior == "factorized":
            raise ValueError("quality maps need a hyperprior model")

        def laid_out(name: str, q: np.ndarray) -> torch.Tensor:
            values = per_pixel(lambda v: self.gains(torch.from_numpy(v))[name][:, :, 0, 0].detach().numpy(), q)
            return torch.from_numpy(np.ascontiguousarray(over_grid(values)))[None]

        return laid_out("y_gain", quality), laid_out("z_gain", hyper_quality(quality))

    @torch.no_grad()
    def compress_latent(self, y: torch.Tensor, quality: Quality) -> dict[str, Any]:
        """Entropy-code a latent at a quality, or with a quality map (format version 3; 5 or 7 with
        a map). Returns the byte strings (y first, then z for hyperprior models) and y's spatial shape."""
        self._check_eval_mode("compress_latent")
        self._check_latent(y)
        quality = quality_or_map(quality)
        y_gain, z_gain = self.encoder_gains(quality)
        if self.config.prior == "factorized":
            strings = [self.latent_codec.compress(y * y_gain)["strings"][0][0]]
        else:
            z_string, z_symbols = self.compress_hyper(y, z_gain)
            strings = [self.code_y(y, y_gain, self.exact_entropy().side(z_symbols, quality)), z_string]
        return {"strings": strings, "shape": tuple(y.shape[-2:])}

    def _check_latent(self, y: torch.Tensor) -> None:
        """ValueError unless y is one image's latent whose sides the hyperprior can code: a numpy
        broadcast error came from deep inside for sides not multiples of 4 (an image analysed at
        sides not multiples of ``stride``), and a batch's other latents were dropped."""
        m, per_z = self.config.latent_channels, self.stride // STRIDE
        if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[:2] != (1, m):
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"latent must be one image's (1, {m}, h, w) tensor (analyze's output), got {shape}")
        h, w = y.shape[-2:]
        if h % per_z or w % per_z or not h or not w:
            raise ValueError(f"latent of {w}x{h} pixels: height and width must be positive multiples of {per_z}, "
                             f"the latent of an image whose sides are multiples of the model's stride ({self.stride})")

    def compress_hyper(self, y: torch.Tensor, z_gain: torch.Tensor) -> tuple[bytes, np.ndarray]:
        """The hyper-latent's stream and its symbols (C, h, w), which fix y's Gaussian parameters."""
        hyper = self.latent_codec["hyper"]
        eb = hyper.entropy_bottleneck
        with single_thread():
            z = hyper.h_a(y) * z_gain
        symbols = eb.quantize(z, "symbols", eb.quantiles[:, 0, 1].reshape(1, -1, 1, 1))[0].numpy()
        return self.exact_entropy().encode_z(symbols), symbols

    def code_y(self, y: torch.Tensor, y_gain: torch.Tensor, side: np.ndarray) -> bytes:
        """One stream of (a tile of) y, its tables and means from ``side``, the integer
        hyper-synthesis output over the same pixels (``ExactEntropyModel.side``); coded by
        ``ExactEntropyModel.encode_y``, which the torch-free encoder uses too."""
        return self.exact_entropy().encode_y((y * y_gain)[0].numpy(), side)

    def entropy_tables(self) -> dict[str, np.ndarray]:
        """Everything entropy decoding needs, as numpy arrays: the rANS tables of z and y, the
        hyper-synthesis (weights and geometry), the decoder's log gains. ``lite.ExactEntropyModel``
        is built from these, here and (from an exported file) on devices without torch."""
        if self.config.prior == "factorized":
            raise ValueError("the exact entropy model needs a hyperprior model")
        hyper, gc = self.latent_codec["hyper"], self.gaussian_conditional
        eb = hyper.entropy_bottleneck
        t = {"z.quantized_cdf": eb._quantized_cdf, "z.cdf_length": eb._cdf_length, "z.offset": eb._offset,
             "z.medians": eb.quantiles[:, 0, 1], "y.quantized_cdf": gc._quantized_cdf,
             "y.cdf_length": gc._cdf_length, "y.offset": gc._offset, "y.scale_table": gc.scale_table,
             "gain.log_y_gain_inv": self.log_y_gain_inv, "gain.log_z_gain_inv": self.log_z_gain_inv,
             "gain.min_level": torch.tensor([self.config.min_level]),
             "mean_scale": torch.tensor([int(self.config.prior == "meanscale")])}
        t.update(_layer_tables("hs", hyper.h_s))
        if self.config.context == "checkerboard":
            y_codec = self.latent_codec["y"]
            ctx = y_codec.context_prediction
            t.update(_layer_tables("ctx", nn.Sequential(ctx)))
            t["ctx.0.weight"] = ctx.weight * ctx.mask  # masked taps are zeros
            t.update(_layer_tables("ep", y_codec.entropy_parameters.net))
        return {k: v.detach().cpu().numpy().copy() for k, v in t.items()}

    def exact_entropy(self) -> ExactEntropyModel:
        """The format-3 entropy model of these weights (built on first use; ``update`` rebuilds it)."""
        if getattr(self, "_exact_entropy", None) is None:
            if any(m._quantized_cdf.numel() == 0 for m in self.modules() if isinstance(m, EntropyModel)):
                # as CompressAI says for its own coders (a numpy broadcast error came from the empty tables)
                raise RuntimeError("the entropy coders' tables are not built: run update() first (after training "
                                   "or creating a model; load_pretrained does it)")
            self._exact_entropy = ExactEntropyModel.from_tables(self.entropy_tables())
        return self._exact_entropy

    def update(self, *args: Any, **kwargs: Any) -> bool:
        """Rebuild the entropy coders' tables after training (CompressAI's ``update``; pass
        ``force=True`` to rebuild existing ones), and drop the exact entropy model built from them."""
        self._exact_entropy = None
        return super().update(*args, **kwargs)

    def compress(self, x: torch.Tensor, quality: float) -> dict[str, Any]:
        """Entropy-code one image (1, 3, H, W) in [0, 1], H and W multiples of ``stride``, at a
        quality in [0, 1]."""
        self._check_eval_mode("compress")
        check_image_batch(x, self.stride, self)
        if x.shape[0] != 1:  # the streams hold one image: the others would be dropped
            raise ValueError(f"compress codes one image (1, 3, H, W); got a batch of {x.shape[0]}")
        with torch.no_grad():  # analyze's transform, without its second check of the same batch
            y = self._latent(x)
        return self.compress_latent(y, float(quality_batch(quality, 1)[0]))

    @torch.no_grad()
    def decompress(self, strings: list[bytes], shape: tuple[int, int], quality: Quality,
                   version: int = 3) -> torch.Tensor:
        """Decode byte strings into an image (1, 3, H, W) in [0, 1].

        Format version 3 takes y's Gaussian parameters from the integer hyper-synthesis
        (``exact_entropy``); versions 1 and 2 from the float h_s on one thread. ``quality``: the
        file's, or (versions 5 to 7) its quality map."""
        self._check_eval_mode("decompress")
        quality = quality_or_map(quality)
        if self.config.context != "none" and version < 3:
            raise FormatError(f"format version {version} has no context models")
        if isinstance(quality, np.ndarray) and (self.config.prior == "factorized" or version < 3):
            raise FormatError("corrupted .edc file: a quality map for a model or version without an exact hyperprior")
        if self.config.prior != "factorized" and version >= 3:
            y_hat = torch.from_numpy(self.exact_entropy().decode(strings, shape, quality,
                                                                 matched=gains_matched(version)))[None]
            with single_thread():
                return self._image(y_hat).clamp(0, 1)
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
        """Each stream checked and padded for CompressAI's rANS decoder (``lite.rans.pad_stream``)."""
        symbols = [self.config.latent_channels * shape[0] * shape[1]]
        if self.config.prior != "factorized":
            symbols.append(self.config.hyper_channels * (shape[0] // 4) * (shape[1] // 4))
        return [pad_stream(s, n) for s, n in zip(strings, symbols)]

    @property
    def num_streams(self) -> int:
        """Byte strings a ``compress`` returns: y's, and z's for hyperprior models."""
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
        if self.config.context != "none":  # the context convolution counts whole, masked taps included
            decoder += count(self.latent_codec["y"])
        return {"encoder": count(self) - count(self.g_s), "decoder": decoder, "total": count(self)}


def _layer_tables(prefix: str, layers: nn.Sequential) -> dict[str, torch.Tensor]:
    """The (transposed) convolutions of a Sequential as integer-path tables: weight, bias and
    geometry (stride, padding, transposed, output padding, followed by a ReLU) per layer."""
    t, modules = {}, list(layers)
    convs = [m for m in modules if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    for i, conv in enumerate(convs):
        position = modules.index(conv)
        relu = position + 1 < len(modules) and isinstance(modules[position + 1], nn.ReLU)
        transposed = isinstance(conv, nn.ConvTranspose2d)
        t[f"{prefix}.{i}.weight"], t[f"{prefix}.{i}.bias"] = conv.weight, conv.bias
        t[f"{prefix}.{i}.geometry"] = torch.tensor([conv.stride[0], conv.padding[0], int(transposed),
                                                    conv.output_padding[0] if transposed else 0, int(relu)])
    return t
