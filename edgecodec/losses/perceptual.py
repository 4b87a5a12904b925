"""Frozen perceptual distances (LPIPS family) behind one small interface.

``build_perceptual(name)`` returns a :class:`PerceptualDistance`: call it on two image batches in
[0, 1] and get one distance per image, shape (B,). The network is frozen (eval mode, no
gradients for its weights) but differentiable with respect to its inputs, so it can be a loss.

Backends:

``stlpips-alex`` (default)
    Shift-tolerant LPIPS (Ghildyal & Liu, ECCV 2022) with the AlexNet trunk, from the
    ``stlpips-pytorch`` package (module ``stlpips_pytorch``). Both the trunk and the linear
    calibration layers ship inside the wheel (``weights/vST0.0/alex_shift_tolerant.pth``); nothing
    is downloaded. The package imports IPython and torchsummary without declaring them.
    Its first convolution runs at full resolution (stride 1), so it costs about 4x an ordinary
    AlexNet LPIPS: the GAN objective can evaluate it on a crop (``gan.lpips_crop``).
``stlpips-vgg``
    The same with the VGG-16 trunk (``weights/vST0.0/vgg_shift_tolerant.pth``, also in the wheel;
    6.6 s for a 768 x 512 pair on one thread of this CPU). The shipped models are not trained on
    it: it is the held-out check of those trained on ``stlpips-alex`` (benchmarks/perceptual_heldout.py).
``lpips-alex``
    The original LPIPS (Zhang et al. 2018) from the ``lpips`` package. Its linear layers ship in
    the wheel, but the AlexNet trunk comes from torchvision's ImageNet weights, which torchvision
    downloads on first use: this backend is only offered when those weights are already in the
    torch hub cache.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

PERCEPTUAL_BACKENDS = ("stlpips-alex", "stlpips-vgg", "lpips-alex")
DEFAULT_PERCEPTUAL = "stlpips-alex"
TORCHVISION_ALEXNET = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet_Weights.IMAGENET1K_V1 file


class PerceptualBackendError(ValueError):
    """The requested perceptual backend cannot be built here (package or weights missing)."""


class PerceptualDistance(nn.Module):
    """A frozen LPIPS-style network: ``forward(a, b)`` on images in [0, 1] -> distances (B,)."""

    def __init__(self, net: nn.Module, name: str) -> None:
        super().__init__()
        self.name = name
        self.net = net
        for p in self.net.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "PerceptualDistance":
        """Always stays in eval mode (LPIPS has dropout layers that must stay off)."""
        return super().train(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distance per image (B,) between two batches of the same shape (B, 3, H, W) in [0, 1]."""
        if a.shape != b.shape:  # LPIPS would broadcast a batch of one against the other
            raise ValueError(f"perceptual distance of batches of different shapes: {tuple(a.shape)} and {tuple(b.shape)}")
        # uint8 batches were read as if in [0, 1], and (B, 1, H, W) ones broadcast in the network
        if not (a.is_floating_point() and b.is_floating_point()):
            raise TypeError(f"perceptual distance of float images in [0, 1], not {a.dtype} and {b.dtype}")
        if a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(f"perceptual distance of RGB batches (B, 3, H, W), not {tuple(a.shape)}")
        # Both LPIPS packages expect inputs in [-1, 1].
        d = self.net(a.float() * 2 - 1, b.float() * 2 - 1)
        return d.flatten(1).mean(1)


def _stlpips(trunk: str) -> nn.Module:
    try:
        from stlpips_pytorch import stlpips
    except ImportError as exc:
        raise PerceptualBackendError(
            f"perceptual backend 'stlpips-{trunk}' needs the stlpips-pytorch package and its undeclared "
            f"dependencies ipython and torchsummary (pip install stlpips-pytorch ipython torchsummary): {exc}"
        ) from None
    return stlpips.LPIPS(net=trunk, variant="shift_tolerant", verbose=False)


def _lpips_alex() -> nn.Module:
    try:
        import lpips
    except ImportError:
        raise PerceptualBackendError(
            "perceptual backend 'lpips-alex' needs the lpips package (pip install lpips); "
            f"or use {DEFAULT_PERCEPTUAL!r}, whose weights ship in its wheel") from None
    trunk = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_ALEXNET
    if not trunk.is_file():
        raise PerceptualBackendError(
            f"perceptual backend 'lpips-alex' needs torchvision's AlexNet weights at {trunk} (torchvision "
            f"downloads them on first use; this trainer does not): put the file there or use "
            f"{DEFAULT_PERCEPTUAL!r}")
    return lpips.LPIPS(net="alex", verbose=False)


def build_perceptual(name: str = DEFAULT_PERCEPTUAL) -> PerceptualDistance:
    """A frozen perceptual distance by backend name (see the module docstring).

    Building it consumes no global random numbers (the networks' throw-away initialisation runs
    under a forked RNG), so building one mid-run leaves exact resume intact.
    """
    builders = {"stlpips-alex": lambda: _stlpips("alex"), "stlpips-vgg": lambda: _stlpips("vgg"),
                "lpips-alex": _lpips_alex}
    if name not in builders:
        raise PerceptualBackendError(f"unknown perceptual backend {name!r}; known: {', '.join(PERCEPTUAL_BACKENDS)}")
    with torch.random.fork_rng(devices=[]):
        net = builders[name]()
    return PerceptualDistance(net, name)
