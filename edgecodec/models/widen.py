"""Function-preserving growth: warm-start a model with more channels or more quality levels.

Channels, Net2Net-style (Chen et al., ICLR 2016), written here because no maintained library widens
convolutions with GDN between them. Each narrow tensor fills the top-left block of the wide
model's freshly initialised one; the weights from a new input channel into an old output channel
are zeroed (GDN: the cross terms are set to the reparametrised zero), so every old channel, and
the model's output, is what the narrow model computed. The new channels keep their fresh
incoming weights: their outgoing weights are zero but get gradients, so training grows them.

Quality levels: the gain tables (one row per level) get new rows above the top one that continue
the line of the top two (in log gain), so every trained level codes as before and the new ones
start where the model's own trend points (``extend_levels``).
"""

from __future__ import annotations

import torch
from compressai.layers import GDN
from torch import nn


def _embed(fresh: torch.Tensor, old: torch.Tensor, name: str) -> torch.Tensor:
    """``fresh`` with ``old`` in its leading block (every dimension of old at most fresh's)."""
    if old.dim() != fresh.dim() or any(o > f for o, f in zip(old.shape, fresh.shape)):
        raise ValueError(f"{name}: cannot widen {tuple(old.shape)} into {tuple(fresh.shape)}")
    out = fresh.detach().clone()
    out[tuple(slice(0, n) for n in old.shape)] = old.to(out.dtype)
    return out


def widen_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (a narrower model of the same architecture) resized to ``model``'s shapes.

    Only convolutions, BatchNorms and GDNs are widened; every other tensor passes through as it
    is (the entropy models' tables are resized by the model's own loading, as in any warm start).
    Tensors absent from ``state`` are absent from the result too."""
    own = model.state_dict()
    out = {k: v for k, v in state.items() if k in own}
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            key = f"{dot}weight"
            if key not in state or state[key].shape == own[key].shape:
                continue
            old = state[key]
            weight = _embed(own[key], old, key)
            # Conv2d weights are (out, in, ...), ConvTranspose2d (in, out, ...).
            out_dim, in_dim = (1, 0) if isinstance(module, nn.ConvTranspose2d) else (0, 1)
            old_out, old_in = old.shape[out_dim], old.shape[in_dim]
            new_inputs_to_old_outputs = [slice(None)] * weight.dim()
            new_inputs_to_old_outputs[out_dim] = slice(0, old_out)
            new_inputs_to_old_outputs[in_dim] = slice(old_in, None)
            weight[tuple(new_inputs_to_old_outputs)] = 0
            out[key] = weight
            if module.bias is not None and f"{dot}bias" in state:
                out[f"{dot}bias"] = _embed(own[f"{dot}bias"], state[f"{dot}bias"], f"{dot}bias")
        elif isinstance(module, nn.BatchNorm2d):  # per-channel: new channels keep their fresh values
            for key in (f"{dot}weight", f"{dot}bias", f"{dot}running_mean", f"{dot}running_var"):
                if key in state and state[key].shape != own[key].shape:
                    out[key] = _embed(own[key], state[key], key)
        elif isinstance(module, GDN):
            beta, gamma = f"{dot}beta", f"{dot}gamma"
            if gamma not in state or state[gamma].shape == own[gamma].shape:
                continue
            out[beta] = _embed(own[beta], state[beta], beta)
            wide = _embed(own[gamma], state[gamma], gamma)
            old = state[gamma].shape[0]
            # An old channel's norm must not see the new channels: their gamma entries are zero
            # after the reparametrisation (the fresh matrix is 0.1 * identity, so they are already).
            wide[:old, old:] = module.gamma_reparam.init(torch.zeros(old, wide.shape[1] - old))
            out[gamma] = wide
    return out


GAIN_TABLES = ("log_y_gain", "log_y_gain_inv", "log_z_gain", "log_z_gain_inv")


def extend_levels(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """``state`` with each gain table extended to ``levels`` rows (quality levels) past its top one.

    Row K-1+k is the top row plus k times the step from the second-highest row to the top one (log
    gains, so the gains continue geometrically); the trained rows are kept as they are. Tables
    that already have ``levels`` rows pass through; fewer levels than a table has is refused."""
    out = dict(state)
    for name in GAIN_TABLES:
        if name not in state:
            continue
        table = state[name]
        if table.shape[0] > levels:
            raise ValueError(f"{name}: cannot extend {table.shape[0]} quality levels to {levels}")
        if table.shape[0] < 2:
            raise ValueError(f"{name}: need at least two quality levels to continue their line")
        step = table[-1] - table[-2]
        extra = [table[-1:] + k * step for k in range(1, levels - table.shape[0] + 1)]
        out[name] = torch.cat([table, *extra])
    return out
