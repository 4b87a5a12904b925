"""Model registry, architecture budgets, forward pass, gain interpolation, discriminator."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, TINY, make_tiny

from edgecodec.models import EdgeCodecModel, ModelConfig, PatchDiscriminator, create_model, get_config, list_configs

DECODER_BUDGET = 2_000_000


def test_registry_lists_the_configurations():
    assert set(list_configs()) >= {"cae", "crb", "gcrb"}
    assert get_config("cae").transform == "cae"
    assert get_config("crb").transform == "crb"
    assert get_config("gcrb").discriminator is True
    with pytest.raises(KeyError):
        get_config("no-such-config")
    with pytest.raises(KeyError):
        get_config("crb", no_such_key=1)
    assert get_config("crb", channels=32).channels == 32


def test_registry_takes_underscores_and_dashes_alike(monkeypatch):
    """Configurations are registered under their function's name with dashes (gdn_hp_edge ->
    gdn-hp-edge), and get_config("gdn_hp_edge"), the function's own spelling, was an unknown
    configuration. Names stay dashed (list_configs); lookups take either spelling."""
    from edgecodec.models import register_config, registry

    assert all("_" not in name for name in list_configs())
    assert "gdn-hp-edge" in list_configs() and "original-cae" in list_configs()
    for dashed in ("gdn-hp-edge", "original-cae", "gdn-hp"):
        spelt = dashed.replace("-", "_")
        assert get_config(spelt) == get_config(dashed)
        assert get_config(spelt, levels=4) == get_config(dashed, levels=4)
        assert create_model(spelt).config == get_config(dashed)
    assert get_config("gdn-hp_edge") == get_config("gdn-hp-edge")  # mixed, too
    with pytest.raises(KeyError, match="unknown model configuration 'no_such_config'"):
        get_config("no_such_config")
    with pytest.raises(KeyError, match="unknown model configuration 5"):
        get_config(5)
    monkeypatch.setattr(registry, "_CONFIGS", dict(registry._CONFIGS))

    @register_config
    def my_net() -> ModelConfig:
        return ModelConfig(channels=8)
    assert "my-net" in list_configs() and get_config("my_net").channels == get_config("my-net").channels == 8
    assert registry.config_name("my_net") == "my-net"


def test_a_run_of_an_underscored_configuration_is_recorded_with_dashes(tmp_path):
    """A run's config.yaml may name its configuration gdn_hp_edge now: the card's record of the run
    (export-model) gives the registry's one spelling, as list_configs does."""
    import yaml

    from edgecodec.train.config import load_config
    from edgecodec.train.export import run_record

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(load_config(None, ["model.config=gdn_hp_edge"])))
    assert run_record({"step": 2}, tmp_path)["model_config_name"] == "gdn-hp-edge"


@pytest.fixture(scope="module", params=["cae", "crb", "gcrb"])
def default_model(request) -> EdgeCodecModel:
    torch.manual_seed(0)
    return create_model(request.param).eval()


def test_default_configs_fit_the_decoder_budget(default_model):
    counts = default_model.parameter_counts()
    assert 0 < counts["decoder"] <= DECODER_BUDGET, counts
    assert counts["encoder"] > 0
    assert counts["total"] == sum(p.numel() for p in default_model.parameters())
    synthesis = sum(p.numel() for p in default_model.g_s.parameters())
    assert counts["decoder"] > synthesis  # the hyper-synthesis and inverse gains count too


@pytest.mark.parametrize("name", ["cae", "crb", "gcrb"])
def test_forward_shapes_and_range(name):
    torch.manual_seed(0)
    model = create_model(name, **TINY)
    x = torch.rand(2, 3, 64, 64)
    for mode in (model.train, model.eval):
        mode()
        out = model(x, torch.tensor([0.0, 1.0]))
        assert out["x_hat"].shape == x.shape
        # The decoder ends in tanh, mapped to [0, 1].
        assert out["x_hat"].min() >= 0 and out["x_hat"].max() <= 1
        assert set(out["likelihoods"]) == {"y", "z"}
        for lik in out["likelihoods"].values():
            assert lik.shape[0] == 2 and torch.all(lik > 0) and torch.all(lik <= 1)
        assert out["likelihoods"]["y"].shape[1:] == (TINY["latent_channels"], 4, 4)
    assert model.stride == 64 and model.num_streams == 2


def test_factorized_prior_forward():
    torch.manual_seed(0)
    model = create_model("cae", prior="factorized", **TINY)
    out = model(torch.rand(1, 3, 32, 48), torch.tensor([0.5]))
    assert out["x_hat"].shape == (1, 3, 32, 48)
    assert set(out["likelihoods"]) == {"y"}
    assert model.stride == 16 and model.num_streams == 1


def test_scale_prior_trains_and_codes():
    """``prior: scale`` (zero-mean Gaussians): CompressAI 1.2.8's latent codec subtracted means it
    does not have in the forward pass (a TypeError); its coded files decode to the forward pass."""
    torch.manual_seed(0)
    model = create_model("crb", prior="scale", **TINY)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    out = model(x, torch.tensor([0.2, 0.8]))
    assert set(out["likelihoods"]) == {"y", "z"} and out["x_hat"].shape == x.shape
    out["x_hat"].mean().backward()
    assert x.grad is not None and model.g_a[0].weight.grad is not None
    model.eval()
    model.update(force=True)
    coded = model.compress(x[:1].detach(), 0.6)
    decoded = model.decompress(coded["strings"], coded["shape"], 0.6)
    with torch.no_grad():
        forward = model(x[:1].detach(), 0.6)["x_hat"].clamp(0, 1)
    torch.testing.assert_close(decoded, forward, atol=1e-4, rtol=0)


def test_model_refuses_inputs_it_cannot_code():
    """Bad inputs are one ValueError / TypeError naming the problem: a NaN quality or pixel made
    entropy coding loop forever, a batch lost all but its first image, a quality outside [0, 1]
    was clamped, sides off the stride failed deep inside CompressAI."""
    model = make_tiny(0)
    model.update(force=True)
    x = torch.rand(1, 3, 64, 64)
    nan_pixel = x.clone()
    nan_pixel[0, 0, 0, 0] = math.nan
    for args, error, fragment in (
            ((x, math.nan), ValueError, "quality must be in"), ((x, 1.5), ValueError, "quality must be in"),
            ((x, "0.5"), TypeError, "quality must be a number"), ((x, torch.tensor([0.5, 0.5])), ValueError, "one per"),
            ((nan_pixel, 0.5), ValueError, r"\[0, 1\]"), ((x * 1e30, 0.5), ValueError, r"\[0, 1\]"),
            ((torch.rand(2, 3, 64, 64), 0.5), ValueError, "one image"),
            ((torch.rand(1, 3, 100, 130), 0.5), ValueError, "multiples of the model's stride"),
            ((torch.rand(3, 64, 64), 0.5), ValueError, r"\(B, 3, H, W\)")):
        with pytest.raises(error, match=fragment):
            model.compress(*args)
    for quality, error in ((1.5, ValueError), (-0.1, ValueError), (math.nan, ValueError), (None, TypeError),
                           (torch.tensor([0.1, 0.2, 0.3]), ValueError)):
        with pytest.raises(error, match="quality"):
            model(torch.rand(2, 3, 64, 64), quality)
    with pytest.raises(ValueError, match="stride"):
        model(torch.rand(1, 3, 64, 80), 0.5)
    with pytest.raises(ValueError, match="stride"):
        create_model("original-cae")(torch.rand(1, 3, 100, 130))  # decoded at 128x160 before


def test_analyze_and_compress_latent_refuse_sides_they_cannot_code():
    """The model API's analyze() took any side: 65x70 gave a latent of 5x5 that decoded at 80x80 in
    silence (a factorized model) or failed in compress_latent with a numpy broadcast error
    (hyperprior); 8x8 coded as 16x16. Now a ValueError names the requirement: sides multiples of
    the analysis stride (16) for analyze, latent sides multiples of 4 (images of multiples of
    ``stride``) for a hyperprior's compress_latent."""
    for prior in ("meanscale", "factorized"):
        torch.manual_seed(0)
        model = create_model("crb", prior=prior, **TINY).eval()
        model.update(force=True)
        for h, w in ((65, 70), (8, 8), (1, 1), (64, 72), (0, 64)):
            with pytest.raises(ValueError, match=r"multiples of the analysis transform's stride \(16\)"):
                model.analyze(torch.rand(1, 3, h, w))
        assert model.analyze(torch.rand(2, 3, 48, 80)).shape == (2, 32, 3, 5)  # tiles' windows: multiples of 16
        y = model.analyze(torch.rand(1, 3, 48, 80))
        if prior == "factorized":  # no hyperprior: any latent side
            coded = model.compress_latent(y, 0.5)
            assert model.decompress(coded["strings"], coded["shape"], 0.5).shape == (1, 3, 48, 80)
        else:
            with pytest.raises(ValueError, match=r"latent of 5x3 pixels: .*multiples of 4.*model's stride \(64\)"):
                model.compress_latent(y, 0.5)
        with pytest.raises(ValueError, match=r"one image's \(1, 32, h, w\)"):
            model.compress_latent(model.analyze(torch.rand(2, 3, 64, 64)), 0.5)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            model.analyze(torch.rand(1, 3, 64, 64) * 255)


def test_forward_refuses_values_outside_0_1():
    """forward() took a 0-255 float batch, or NaN, in silence and trained or measured garbage; the
    codec models and the float-latent ones refuse it as compress does, naming the values found."""
    for model in (make_tiny(0), create_model("original-cae")):
        model(torch.rand(2, 3, 64, 64), 0.5)
        model(torch.zeros(1, 3, 64, 64), 0.5)
        model(torch.ones(1, 3, 64, 64), 0.5)
        for x, fragment in ((torch.rand(2, 3, 64, 64) * 255, r"got .* to 25\d.*: divide 8-bit pixels by 255"),
                            (torch.rand(2, 3, 64, 64) - 0.5, r"got -0\.\d+ to 0\.\d+$"),
                            (torch.full((1, 3, 64, 64), math.nan), "none NaN")):
            with pytest.raises(ValueError, match=r"input values must be in \[0, 1\].*" + fragment):
                model(x, 0.5)
            with pytest.raises(ValueError, match=r"\[0, 1\]"):  # in training mode too
                model.train()(x.requires_grad_(), 0.5)
            model.eval()
        with pytest.raises(ValueError, match="empty batch"):  # aminmax's RuntimeError
            model(torch.rand(0, 3, 64, 64), 0.5)


def test_entropy_coder_refuses_symbols_it_would_never_finish():
    """CompressAI's rANS coder loops forever on a symbol near the int32 limits (NaN latents cast
    to int32): refused before it is called."""
    from edgecodec.lite.rans import CdfTable

    model = make_tiny(0)
    model.update(force=True)
    table = model.exact_entropy().z_table
    indexes = torch.zeros(4, dtype=torch.int32).numpy()
    assert table.encode(torch.tensor([0, 1, -1, 2], dtype=torch.int32).numpy(), indexes)
    for symbols in (torch.tensor([0, -2**31, 0, 0], dtype=torch.int32).numpy(),
                    torch.tensor([0.0, math.nan, 0.0, 0.0]).numpy()):
        with pytest.raises(ValueError, match="NaN or too large"):
            table.encode(symbols, indexes)
    assert isinstance(table, CdfTable)


def test_invalid_configs():
    for bad in (dict(transform="vit"), dict(prior="gmm"), dict(levels=1)):
        with pytest.raises(ValueError):
            EdgeCodecModel(ModelConfig(**{**TINY, **bad}))
    with pytest.raises(ValueError):
        ModelConfig.from_dict({"channels": 8, "bogus": 1})
    for min_level in (float("nan"), float("inf"), 5.0):  # NaN made every gain NaN; 5 = levels - 1 is quality 1's
        with pytest.raises(ValueError, match="min_level"):
            ModelConfig(**{**TINY, "levels": 6, "min_level": min_level})
    config = get_config("crb", **TINY)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="levels must be at least 2"):  # it blamed min_level
        get_config("crb", levels=1)
    for name, fields in (("nosuch", {}), ("crb", {"bogus": 1})):  # KeyErrors whose text prints unquoted
        with pytest.raises(KeyError) as info:
            get_config(name, **fields)
        assert str(info.value).startswith("unknown model config")


def test_encoder_residual_blocks_warm_start_as_identities():
    """A model trained without encoder_res_blocks loads into one with them (the plain layers keep
    their names) and encodes exactly as before; the decoder's parameters are unchanged."""
    torch.manual_seed(0)
    plain = create_model("gdn-hp-edge", **TINY).eval()
    deeper = create_model("gdn-hp-edge", encoder_res_blocks=2, **TINY).eval()
    result = deeper.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert sorted({k.split(".")[1] for k in result.missing_keys}) == ["3r0", "3r1", "5r0", "5r1"]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(deeper.g_a(x), plain.g_a(x))
        deeper.g_a.get_submodule("3r0").conv2.weight.normal_()
        assert not torch.equal(deeper.g_a(x), plain.g_a(x))
    counts, plain_counts = deeper.parameter_counts(), plain.parameter_counts()
    assert counts["decoder"] == plain_counts["decoder"] and counts["encoder"] > plain_counts["encoder"]
    with pytest.raises(ValueError):
        create_model("crb", encoder_res_blocks=1, **TINY)


def test_gain_interpolation_hits_the_table_at_levels():
    torch.manual_seed(0)
    model = make_tiny(0)
    k = model.config.levels
    with torch.no_grad():  # distinct values per level and channel
        for table in (model.log_y_gain, model.log_y_gain_inv, model.log_z_gain, model.log_z_gain_inv):
            table.copy_(torch.randn_like(table))
    for level in range(k):
        gains = model.gains(torch.tensor([level / (k - 1)]))
        for key, table in (("y_gain", model.log_y_gain), ("y_gain_inv", model.log_y_gain_inv),
                           ("z_gain", model.log_z_gain), ("z_gain_inv", model.log_z_gain_inv)):
            assert gains[key].shape == (1, table.shape[1], 1, 1)
            torch.testing.assert_close(gains[key][0, :, 0, 0], table[level].exp())
    # Between levels: geometric interpolation (linear in log space).
    q = torch.tensor([(1 + 0.25) / (k - 1)])
    expected = (0.75 * model.log_y_gain[1] + 0.25 * model.log_y_gain[2]).exp()
    torch.testing.assert_close(model.gains(q)["y_gain"][0, :, 0, 0], expected)
    # Clamped outside [0, 1]; a batch gets one gain vector per sample.
    torch.testing.assert_close(model.gains(torch.tensor([1.5]))["y_gain"], model.gains(torch.tensor([1.0]))["y_gain"])
    torch.testing.assert_close(model.gains(torch.tensor([-1.0]))["y_gain"], model.gains(torch.tensor([0.0]))["y_gain"])
    batch = model.gains(torch.tensor([0.0, 1.0]))["y_gain"]
    assert batch.shape == (2, TINY["latent_channels"], 1, 1)
    assert not torch.allclose(batch[0], batch[1])


def test_ablation_ceiling_extends_the_gain_line_past_the_top_level():
    """benchmarks/ablation_ceiling.py's extrapolated model keeps every trained level and steps on
    from the top one by the top two levels' difference (log gains)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from ablation_ceiling import extrapolated

    model = make_tiny(0)
    with torch.no_grad():
        for table in (model.log_y_gain, model.log_y_gain_inv, model.log_z_gain, model.log_z_gain_inv):
            table.copy_(torch.randn_like(table))
    k = model.config.levels
    bigger = extrapolated(model, 2)
    assert bigger.config.levels == k + 2
    for level in range(k):
        old, new = model.gains(torch.tensor([level / (k - 1)])), bigger.gains(torch.tensor([level / (k + 1)]))
        for key in old:
            torch.testing.assert_close(new[key], old[key])
    for key, table in (("y_gain", model.log_y_gain), ("z_gain_inv", model.log_z_gain_inv)):
        top, step = table[-1], table[-1] - table[-2]
        torch.testing.assert_close(bigger.gains(torch.tensor([k / (k + 1)]))[key][0, :, 0, 0], (top + step).exp())
        torch.testing.assert_close(bigger.gains(torch.tensor([1.0]))[key][0, :, 0, 0], (top + 2 * step).exp())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():  # the transforms are the same: the top trained level decodes alike
        torch.testing.assert_close(bigger(x, torch.tensor([(k - 1) / (k + 1)]))["x_hat"],
                                   model(x, torch.tensor([1.0]))["x_hat"])


def test_default_gain_tables_grow_with_quality():
    model = make_tiny(0)
    low = model.gains(torch.tensor([0.0]))
    high = model.gains(torch.tensor([1.0]))
    assert torch.all(high["y_gain"] > low["y_gain"])
    torch.testing.assert_close(low["y_gain"] * low["y_gain_inv"], torch.ones_like(low["y_gain"]))
    assert math.isclose(float(high["y_gain"].detach().mean()), math.e, rel_tol=1e-5)


def test_entropy_coding_round_trip_matches_forward_quantisation():
    """What the bitstream decodes to equals the eval-mode forward pass (no coding drift)."""
    model = make_tiny(0)
    model.update(force=True)
    x = torch.rand(1, 3, 64, 128)
    for q in (0.0, 0.6):
        coded = model.compress(x, q)
        assert [type(s) for s in coded["strings"]] == [bytes, bytes]
        decoded = model.decompress(coded["strings"], coded["shape"], q)
        assert decoded.shape == x.shape
        with torch.no_grad():
            forward = model(x, torch.tensor([q]))["x_hat"].clamp(0, 1)
        torch.testing.assert_close(decoded, forward, atol=1e-4, rtol=0)


def test_patch_discriminator_shapes():
    torch.manual_seed(0)
    disc = PatchDiscriminator()
    logits = disc(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert logits.shape == (1, 1, 6, 6)
    assert torch.isfinite(logits).all()
    small = PatchDiscriminator(channels=8, layers=2)
    assert small(torch.rand(2, 3, 64, 64)).shape == (2, 1, 14, 14)
    conditional = PatchDiscriminator(channels=8, cond_channels=4)
    assert conditional(torch.rand(1, 3, 64, 64), torch.rand(1, 4, 4, 4)).shape == (1, 1, 6, 6)
    with pytest.raises(ValueError):
        conditional(torch.rand(1, 3, 64, 64))


def test_coding_needs_eval_mode():
    """A new module is in training mode: compress then coded with the batch's BatchNorm statistics
    and updated the running ones (cae, crb, gcrb), a silently different model."""
    model = create_model("crb", channels=16, latent_channels=32, hyper_channels=16)
    model.update(force=True)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    x = torch.rand(1, 3, 64, 64)
    for call in (lambda: model.compress(x, 0.5), lambda: model.analyze(x),
                 lambda: model.compress_latent(torch.zeros(1, 32, 4, 4), 0.5)):
        with pytest.raises(RuntimeError, match=r"call model.eval\(\) first"):
            call()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    model.eval()
    out = model.compress(x, 0.5)
    assert model.decompress(out["strings"], out["shape"], 0.5).shape == x.shape
    model.train()
    with pytest.raises(RuntimeError, match="call model.eval"):
        model.decompress(out["strings"], out["shape"], 0.5)
    model.eval()  # a quality out of [0, 1] was clamped by the gain interpolation, in silence
    with pytest.raises(ValueError, match=r"quality must be in \[0, 1\], got 1.5"):
        model.compress_latent(model.analyze(x), 1.5)
    with pytest.raises(ValueError, match=r"quality must be in \[0, 1\], got 7.0"):
        model.decompress(out["strings"], out["shape"], 7.0)
    assert model.decompress(out["strings"], out["shape"], np.array(0.5)).shape == x.shape  # a 0-d array: one number


def test_a_quality_tensor_follows_the_batch_to_its_device():
    """A (B,) quality tensor stayed where it was made: beside a GPU batch, torch's device error
    from inside the gain interpolation."""
    from edgecodec.models.codec_model import quality_batch

    quality = quality_batch(torch.tensor([0.5, 1.0]), 2, torch.device("meta"))
    assert quality.device.type == "meta" and quality.shape == (2,)
    assert quality_batch(torch.tensor([0.5]), 1).device.type == "cpu"


def test_shipped_models_are_listed_default_first():
    from edgecodec import zoo

    names = zoo.shipped_models()
    assert names[0] == zoo.DEFAULT_MODEL
    assert set(names) == {p.stem for p in zoo.PACKAGE_WEIGHTS.glob("*.safetensors")}
    assert {"fidelity", "perceptual"} <= set(names)
    for name in names:  # every shipped model has its card
        assert (zoo.PACKAGE_WEIGHTS / f"{name}.json").is_file()


def test_weights_file_holds_its_config(tmp_path, monkeypatch):
    """The config is saved inside the .safetensors, so the weights hash streams record covers it:
    the same tensors with another quality -> gain mapping are another file, and a card whose
    config was changed apart from its weights is refused instead of decoding garbage."""
    import dataclasses
    import json

    from safetensors.torch import load_file, save_file

    from edgecodec import zoo
    from edgecodec.errors import UnknownModelError

    def load(folder: str) -> tuple:
        weights = tmp_path / folder / "tiny.safetensors"
        return zoo._load.__wrapped__(weights, 0, 0)  # uncached: the files change below

    model = make_tiny(0)
    zoo.save_model(model, tmp_path / "a", "tiny", {})
    shifted = EdgeCodecModel(dataclasses.replace(model.config, min_level=-1.0))
    shifted.load_state_dict(model.state_dict())
    zoo.save_model(shifted, tmp_path / "b", "tiny", {})
    assert load("a")[1] != load("b")[1]

    card = tmp_path / "a" / "tiny.json"
    edited = json.loads(card.read_text())
    edited["config"]["min_level"] = -1.0
    card.write_text(json.dumps(edited))
    with pytest.raises(zoo.CardError, match="export the model again"):
        load("a")
    # As a user meets it: a model that cannot be used (exit 9), its card named, not the weights
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", str(tmp_path / "a"))
    with pytest.raises(UnknownModelError, match=r"cannot be used: its card .*tiny\.json describes another"):
        zoo.load_model("tiny")

    legacy = tmp_path / "a" / "tiny.safetensors"  # exported before the config was saved inside
    save_file(load_file(str(legacy)), str(legacy))
    assert load("a")[0].config.min_level == -1.0


def test_load_pretrained_gives_an_own_copy_whose_rate_estimate_matches_the_files(kodim23_rgb):
    """README, Models, "From PyTorch": the shipped model's forward pass estimates the rate that
    compress writes (the real file adds its header and the coder's overhead), and changing the copy
    leaves the codec's instance alone."""
    import edgecodec
    from edgecodec.zoo import load_model, load_pretrained

    model = load_pretrained("fidelity")
    shared, _ = load_model("fidelity")
    assert model is not shared and not model.training and not any(p.requires_grad for p in model.parameters())
    image = kodim23_rgb[128:384, 256:512]
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    for quality in (0.0, 0.5, 1.0):
        with torch.no_grad():
            out = model(x, torch.tensor([quality]))
        estimated = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values()).item() / x[0, 0].numel()
        real = 8 * len(edgecodec.compress(image, model="fidelity", quality=quality)) / x[0, 0].numel()
        assert estimated < real < 1.05 * estimated + 8 * 64 / x[0, 0].numel(), (quality, estimated, real)
        assert out["x_hat"].shape == x.shape
    with torch.no_grad():  # one number for the batch, as well as a (B,) tensor
        assert torch.equal(model(x, 0.5)["x_hat"], model(x, torch.tensor([0.5]))["x_hat"])
    before = {k: v.clone() for k, v in shared.state_dict().items()}
    for p in model.parameters():
        p.data.zero_()
    assert all(torch.equal(v, before[k]) for k, v in shared.state_dict().items())


def test_coding_before_update_says_to_run_update():
    """A model just created has no entropy tables: compress said 'operands could not be broadcast'
    (numpy, from the exact entropy model) for the hyperprior models."""
    model = create_model("gdn-hp-edge").eval()
    with pytest.raises(RuntimeError, match=r"run update\(\) first"):
        model.compress(torch.rand(1, 3, 64, 64), 0.5)
    model.update(force=True)
    assert model.compress(torch.rand(1, 3, 64, 64), 0.5)["strings"]


def test_bits_per_pixel_of_no_likelihoods_is_a_tensor():
    """The float-latent original-* models have no likelihoods: 0 bpp, as a tensor (was the float 0.0)."""
    from edgecodec.losses.rate_distortion import bits_per_pixel

    bpp = bits_per_pixel({}, 64 * 64)
    assert isinstance(bpp, torch.Tensor) and float(bpp) == 0.0
