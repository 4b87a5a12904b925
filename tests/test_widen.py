"""Function-preserving growth (models/widen.py, ``train.init_widen``, ``train.init_extend_levels``)."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY
from test_train import image_folder, make_config  # noqa: F401 (pytest fixture)

from edgecodec.models import create_model
from edgecodec.models.widen import extend_levels, widen_state_dict
from edgecodec.train.trainer import Trainer

WIDER = {**TINY, "channels": TINY["channels"] + 8}


def trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every weight off its initialisation (GDN cross terms included, which start at zero),
    so that a widening that ignored one of them would change the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gamma", "beta")):  # GDN's, kept positive
                p.add_(torch.rand(p.shape, generator=gen) * 0.1)
            elif not name.endswith("quantiles"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.add_(torch.randn(b.shape, generator=gen) * 0.1)
            elif name.endswith("running_var"):
                b.mul_(1 + torch.rand(b.shape, generator=gen))
    return model.eval()


@pytest.mark.parametrize("config, options, widened_names", [
    ("gdn-hp-edge", {}, {"g_a.0.weight", "g_a.1.gamma", "g_s.5.gamma", "g_s.6.weight"}),
    ("gdn-hp-edge", {"context": "checkerboard", "encoder_res_blocks": 1}, {"g_a.3r0.conv1.weight", "g_s.6.weight"}),
    ("crb", {}, {"g_a.1.running_var", "g_a.3.body.0.weight", "g_s.12.weight"}),  # BatchNorm, residual blocks
])
def test_widened_model_computes_what_the_narrow_one_did(config, options, widened_names):
    torch.manual_seed(0)
    narrow = trained_like(create_model(config, **options, **TINY))
    wide = create_model(config, **options, **WIDER).eval()
    state = widen_state_dict(wide, narrow.state_dict())
    widened = {k for k, v in state.items() if v.shape != narrow.state_dict()[k].shape}
    assert widened_names <= widened
    wide.load_state_dict({**wide.state_dict(), **state})
    x = torch.rand(2, 3, 128, 192)
    quality = torch.tensor([0.0, 1.0])
    with torch.no_grad():
        a, b = narrow(x, quality), wide(x, quality)
    torch.testing.assert_close(b["y_hat"], a["y_hat"], rtol=0, atol=1e-5)
    torch.testing.assert_close(b["x_hat"], a["x_hat"], rtol=0, atol=1e-5)
    for key in a["likelihoods"]:
        torch.testing.assert_close(b["likelihoods"][key], a["likelihoods"][key], rtol=0, atol=1e-6)

    # The new channels can grow: the zeroed weights out of them get gradients.
    wide.train()
    out = wide(x, quality)
    ((out["x_hat"] - x) ** 2).mean().backward()
    new_in = TINY["channels"]
    assert wide.g_s[-2 if config == "crb" else -1].weight.grad[new_in:].abs().sum() > 0  # ConvTranspose2d: (in, out, k, k)
    assert wide.g_a[-1].weight.grad[:, new_in:].abs().sum() > 0  # Conv2d: (out, in, k, k)


def test_narrowing_is_refused():
    wide = create_model("gdn-hp-edge", **WIDER)
    narrow = create_model("gdn-hp-edge", **TINY)
    with pytest.raises(ValueError, match="cannot widen"):
        widen_state_dict(narrow, wide.state_dict())


def test_trainer_widens_the_warm_start(image_folder, tmp_path):  # noqa: F811
    """``train.init_widen`` loads a narrower model's weights into the wider one's leading block."""
    from safetensors.torch import save_file

    narrow = trained_like(create_model("gdn-hp-edge", **TINY))
    narrow.update(force=True)  # entropy tables of a real size, which the wide model's load must resize
    source = tmp_path / "narrow.safetensors"
    save_file({k: v.contiguous() for k, v in narrow.state_dict().items()}, str(source))
    overrides = "model.overrides={" + ", ".join(f"{k}: {v}" for k, v in WIDER.items()) + "}"
    config = make_config(image_folder, "model.config=gdn-hp-edge", overrides, f"train.init_from={source}",
                         "train.init_widen=true")  # strict: every tensor is loaded, widened or as it was
    trainer = Trainer(config, tmp_path / "wide")
    g_s0 = trainer.model.g_s[0].weight
    c = TINY["channels"]
    assert g_s0.shape[1] == WIDER["channels"]
    assert torch.equal(g_s0[:, :c], narrow.g_s[0].weight)
    assert torch.equal(trainer.model.g_s[2].weight[c:, :c], torch.zeros_like(trainer.model.g_s[2].weight[c:, :c]))
    trainer.train_step()


def test_extend_levels_continues_the_top_gains_and_refuses_fewer_levels():
    model = trained_like(create_model("gdn-hp-edge", **TINY))
    state = model.state_dict()
    k = model.config.levels
    extended = extend_levels(state, k + 2)
    for name in ("log_y_gain", "log_y_gain_inv", "log_z_gain", "log_z_gain_inv"):
        table, new = state[name], extended[name]
        assert new.shape[0] == k + 2
        assert torch.equal(new[:k], table)
        torch.testing.assert_close(new[k + 1] - new[k], table[-1] - table[-2])
        torch.testing.assert_close(new[k], 2 * table[-1] - table[-2])
    assert extended["g_s.0.weight"] is state["g_s.0.weight"]  # everything else passes through
    with pytest.raises(ValueError, match="cannot extend 6 quality levels to 5"):
        extend_levels(state, k - 1)


def test_trainer_extends_the_warm_start_to_more_levels(image_folder, tmp_path):  # noqa: F811
    """``train.init_extend_levels`` starts an 8-level model from a 6-level one, trained levels kept;
    without it the shapes differ and the warm start is refused."""
    from safetensors.torch import save_file

    source_model = trained_like(create_model("gdn-hp-edge", **TINY))
    source_model.update(force=True)
    source = tmp_path / "six.safetensors"
    save_file({k: v.contiguous() for k, v in source_model.state_dict().items()}, str(source))
    options = {**TINY, "levels": 8}
    overrides = ["model.config=gdn-hp-edge",
                 "model.overrides={" + ", ".join(f"{k}: {v}" for k, v in options.items()) + "}",
                 f"train.init_from={source}", "train.lambdas=[0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128]"]
    with pytest.raises(ValueError, match="log_y_gain"):
        Trainer(make_config(image_folder, *overrides), tmp_path / "refused")
    trainer = Trainer(make_config(image_folder, *overrides, "train.init_extend_levels=true"), tmp_path / "eight")
    assert trainer.model.log_y_gain.shape[0] == 8
    assert torch.equal(trainer.model.log_y_gain[:6], source_model.log_y_gain)
    assert torch.equal(trainer.model.g_s[0].weight, source_model.g_s[0].weight)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():  # level 5 of 0..7 is the source's top level (quality 1)
        torch.testing.assert_close(trainer.model.eval()(x, torch.tensor([5 / 7]))["x_hat"],
                                   source_model(x, torch.tensor([1.0]))["x_hat"])
    trainer.train_step()
