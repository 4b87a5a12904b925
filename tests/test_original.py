"""The original experiment (configs/original/, models/original.py, eval/original.py): published
shapes, `train.rate: none` training (GCRB with the discriminator starting mid-run), the 8-bit
latent file and its bpp. Synthetic images only (never Kodak); small widths and 32 px images keep
it fast."""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from test_train import image_folder, state_equal  # noqa: F401  (image_folder is a fixture)

from edgecodec.eval import original as ev
from edgecodec.losses import GANRateDistortionLoss, RateDistortionLoss
from edgecodec.models import FloatLatentAutoencoder, PatchDiscriminator, create_model, get_config
from edgecodec.train.config import load_config
from edgecodec.train.plot import plot_runs
from edgecodec.train.trainer import Trainer, run

SMALL = "model.overrides={channels: 8}"  # CAE widths 8..64, CRB list [8, 16, 32, 64]; latents unchanged


def small_config(name: str, folder: Path, *extra: str) -> dict:
    """configs/original/NAME.yaml on 32 px images, batch 2, narrow transforms."""
    return load_config(REPO / "edgecodec" / "configs" / "original" / f"{name}.yaml", [
        SMALL, f"data.root={folder}", "data.crop=32", "data.val_crop=32", "train.batch_size=2",
        "train.steps=4", "train.log_every=2", "train.val_every=2", "train.ckpt_every=4",
        "train.tensorboard=false", "train.progress=false", "gan.disc_start=2", *extra])


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- the published shapes -------------------------------------------------------------------------
def test_original_cae_has_the_published_shapes():
    torch.manual_seed(0)
    model = create_model("original-cae").eval()
    assert isinstance(model, FloatLatentAutoencoder) and model.stride == 32
    x = torch.rand(1, 3, 128, 128)
    y = model.analyze(x)
    assert y.shape == (1, 64, 4, 4) and y.numel() == 1024
    assert x.numel() / y.numel() == 48 == model.compression_ratio(128, 128)
    assert y.min() >= 0  # the original's last encoder layer is conv + ReLU
    # CAE_model.py's encoder, counted layer by layer: bias-free 3x3 convs 3-64-128-256-512 with
    # BatchNorm (2 parameters a channel), then 512 -> 64 with bias.
    expected = (27 * 64 + 128) + (576 * 128 + 256) + (1152 * 256 + 512) + (2304 * 512 + 1024) + (4608 * 64 + 64)
    assert sum(p.numel() for p in model.g_a.parameters()) == expected == 1_846_912
    widths = [m.out_channels for m in model.g_s if isinstance(m, torch.nn.ConvTranspose2d)]
    assert widths == [512, 256, 128, 64, 3]
    out = model(x)
    assert out["x_hat"].shape == x.shape and out["likelihoods"] == {}


@pytest.mark.parametrize("name", ["original-crb", "original-gcrb"])
def test_original_crb_has_twelve_to_one(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    assert model.stride == 8
    y = model.analyze(torch.rand(1, 3, 128, 128))
    assert y.shape == (1, 16, 16, 16) and y.numel() == 4096 == 3 * 128 * 128 // 12
    assert model.compression_ratio() == 12
    # The published code's channel list without our projection: 256x16x16, more than the input.
    published = create_model(name, latent_channels=256).eval()
    assert published.analyze(torch.rand(1, 3, 128, 128)).shape == (1, 256, 16, 16)
    assert published.compression_ratio() == 0.75
    assert get_config(name).discriminator == (name == "original-gcrb")


@pytest.mark.parametrize("name", ["original-cae", "original-crb"])
def test_decoder_output_is_tanh_bounded(name):
    torch.manual_seed(0)
    model = create_model(name, channels=8).eval()
    c, h, w = model.latent_shape(64, 64)
    with torch.no_grad():
        raw = model.g_s(torch.randn(2, c, h, w) * 1000)  # saturates
        assert raw.shape == (2, 3, 64, 64)
        assert raw.min() >= -1 and raw.max() <= 1 and raw.abs().max() > 0.99
        x_hat = model.synthesize(torch.randn(2, c, h, w))
        assert x_hat.min() >= 0 and x_hat.max() <= 1


def test_original_patchgan_layout():
    disc = PatchDiscriminator(64, layers=3)
    convs = [m for m in disc.net if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1] and all(c.kernel_size == (4, 4) for c in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in disc.net) == 3
    assert disc(torch.rand(1, 3, 128, 128)).shape == (1, 1, 14, 14)  # GCRB_model.py's comment


# --- the objective without rate -------------------------------------------------------------------
def test_no_rate_losses():
    x = torch.full((2, 3, 8, 8), 0.5)
    x_hat = x + torch.tensor([0.1, -0.2]).view(2, 1, 1, 1)
    out = {"x_hat": x_hat, "likelihoods": {}}
    terms = RateDistortionLoss(None, "mse")(out, x, None)
    assert "bpp" not in terms  # no rate
    assert float(terms["loss"]) == pytest.approx(4 * (0.01 + 0.04) / 2)  # MSE of [-1, 1] images
    disc = PatchDiscriminator(8, layers=1)
    crit = GANRateDistortionLoss(None, disc, None, distortion="l1", perceptual_weight=0.7, gan_weight=0.05,
                                 disc_start=4, alternate=True)
    rec = crit.reconstruction_terms(out, x, None)
    assert float(rec["loss"]) == pytest.approx(2 * (0.1 + 0.2) / 2) and "rate" not in rec
    # The original's schedule: codec only before disc_start, then codec / discriminator in turn.
    assert [crit.updates_codec(s) for s in range(2, 8)] == [True, True, True, False, True, False]
    assert [crit.updates_discriminator(s) for s in range(2, 8)] == [False, False, False, True, False, True]
    with pytest.raises(ValueError):
        RateDistortionLoss(None, "mse").lambdas_for(torch.zeros(1))


def test_rate_must_suit_the_model(image_folder, tmp_path):
    with pytest.raises(ValueError, match="rate"):
        Trainer(small_config("cae", image_folder, "train.rate=estimated"), tmp_path / "a")
    with pytest.raises(ValueError, match="rate"):
        Trainer(load_config(REPO / "edgecodec" / "configs" / "crb.yaml", [f"data.root={image_folder}", "train.rate=none"]),
                tmp_path / "b")


# --- training -------------------------------------------------------------------------------------
def test_cae_rate_none_run_logs_psnr_and_ssim(image_folder, tmp_path):
    run_dir = tmp_path / "original-cae"
    trainer = run(small_config("cae", image_folder), run_dir)
    assert trainer.step == 4 and trainer.aux_optimizer is None
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert trainer.optimizer.defaults["weight_decay"] == 0.005 and trainer.train_set.images.shape[1:] == (3, 32, 32)
    val = rows(run_dir / "val.csv")
    assert [int(r["step"]) for r in val] == [2, 4]
    assert all(np.isfinite(float(r[k])) for r in val for k in ("val_psnr", "val_ssim", "val_loss"))
    assert not any(k.startswith("val_bpp") for k in val[0])
    log = rows(run_dir / "log.csv")
    assert "bpp" not in log[0] and np.isfinite(float(log[-1]["batch_psnr"]))
    state = torch.load(run_dir / "ckpt-00000004.pt", map_location="cpu", weights_only=True)
    assert state["aux_optimizer"] is None and state["model_config"]["prior"] == "none"
    # plot-training draws PSNR and SSIM for it, and no (empty) bpp panel.
    out = plot_runs([run_dir], tmp_path / "charts.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rate_none_resume_is_exact(image_folder, tmp_path):
    config = small_config("crb", image_folder)
    straight = Trainer(config, tmp_path / "a")
    losses_a = [straight.train_step()["loss"] for _ in range(4)]
    first = Trainer(config, tmp_path / "b")
    losses_b = [first.train_step()["loss"] for _ in range(2)]
    first.save_checkpoint()
    second = Trainer(config, tmp_path / "b")
    assert second.resume() and second.step == 2
    losses_b += [second.train_step()["loss"] for _ in range(2)]
    assert losses_a == losses_b
    assert not state_equal(straight.model.state_dict(), second.model.state_dict())


def test_gcrb_discriminator_starts_mid_run_and_alternates(image_folder, tmp_path):
    """disc_start=2: steps 0-1 train the codec alone; from step 2 the codec (with the adaptive GAN
    term) and the discriminator take turns, each step leaving the other's weights alone."""
    config = small_config("gcrb", image_folder)
    trainer = Trainer(config, tmp_path / "run")
    assert trainer.gan and trainer.criterion.alternate and not trainer.criterion.rate
    assert isinstance(trainer.disc_optimizer, torch.optim.AdamW)
    assert trainer.disc_optimizer.defaults["betas"] == (0.5, 0.999)

    def weights(module):  # parameters only: both steps run both networks in training mode (BN statistics)
        return {k: v.detach().clone() for k, v in module.named_parameters()}

    def snapshot():
        return weights(trainer.model), weights(trainer.discriminator)

    g, d = snapshot()
    records = []
    for step in range(4):
        records.append(trainer.train_step())
        g2, d2 = snapshot()
        codec_changed, disc_changed = bool(state_equal(g, g2)), bool(state_equal(d, d2))
        assert (codec_changed, disc_changed) == ((True, False) if step in (0, 1, 2) else (False, True)), step
        g, d = g2, d2
    assert records[0]["w"] == 0 and records[2]["w"] > 0 and np.isfinite(records[2]["g_loss"])
    assert records[2]["loss"] == pytest.approx(records[2]["rec"] + 0.05 * records[2]["w"] * records[2]["g_loss"],
                                               rel=1e-5)
    assert set(records[3]) == {"d_loss", "d_real", "d_fake"}
    val = trainer.validate()
    assert {"val_psnr", "val_ssim", "val_lpips", "val_loss"} <= set(val)


# --- the 8-bit latent file ------------------------------------------------------------------------
def test_latent_file_known_case():
    y = np.array([0.0, 1.0, 2.0, 3.0], np.float32).reshape(1, 2, 2)
    codes, lo, hi = ev.quantize_latent(y, "tensor")
    assert codes.ravel().tolist() == [0, 85, 170, 255] and lo.tolist() == [0.0] and hi.tolist() == [3.0]
    data = ev.pack_latent(y, "tensor")
    expected = (struct.pack("<BHHH", 0, 1, 2, 2) + struct.pack("<ff", 0.0, 3.0)
                + zlib.compress(bytes([0, 85, 170, 255]), 9))
    assert data == expected and len(data) == 15 + len(zlib.compress(bytes([0, 85, 170, 255]), 9))
    assert ev.latent_bpp(data, 4, 4) == 8 * len(data) / 16
    np.testing.assert_allclose(ev.unpack_latent(data), y, atol=1e-6)
    # CAE-sized: 64x4x4 zeros -> 1,024 zero codes, zlib'd: the file is far below the 0.5 bpp of raw codes.
    zeros = ev.pack_latent(np.zeros((64, 4, 4), np.float32), "channel")
    assert len(zeros) == 7 + 8 * 64 + len(zlib.compress(bytes(1024), 9))
    assert ev.latent_bpp(zeros, 128, 128) == pytest.approx(8 * len(zeros) / 16384)
    assert not ev.unpack_latent(zeros).any()


@pytest.mark.parametrize("mode", ev.MODES)
def test_latent_file_round_trip(mode):
    rng = np.random.RandomState(0)
    y = (rng.randn(16, 16, 16) * np.linspace(0.1, 5, 16)[:, None, None] + 3).astype(np.float32)
    y[3] = 7.0  # a constant channel
    data = ev.pack_latent(y, mode)
    back = ev.unpack_latent(data)
    assert back.shape == y.shape and back.dtype == np.float32
    if mode == "tensor":
        step = (y.max() - y.min()) / 255
        assert len(data) == 7 + 8 + len(zlib.compress(ev.quantize_latent(y, mode)[0].tobytes(), 9))
    else:
        step = ((y.max(axis=(1, 2)) - y.min(axis=(1, 2))) / 255)[:, None, None]
        assert back[3].tolist() == y[3].tolist()  # scale 0: exact
    assert np.all(np.abs(back - y) <= step / 2 + 1e-5)
    np.testing.assert_allclose(ev.unpack_latent(ev.pack_latent(back, mode)), back, atol=1e-5)  # idempotent
    with pytest.raises(ValueError):
        ev.pack_latent(y, "row")


def test_evaluate_run_reports_cr_and_real_bpp(tmp_path):
    torch.manual_seed(0)
    model = create_model("original-cae", channels=8).eval()
    rng = np.random.RandomState(1)
    images = [rng.randint(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    result = ev.evaluate_run(model, images)
    assert result["cr"] == 48 and result["latent_shape"] == [64, 2, 2]
    for mode in ev.MODES:
        q = result[f"q8_{mode}"]
        assert q["bpp"] == pytest.approx(np.mean([8 * b / (64 * 64) for b in q["bytes"]]))
        assert 0 < q["psnr"] < 60 and -1 <= q["ssim"] <= 1
    assert result["q8_tensor"]["bytes"][0] < result["q8_channel"]["bytes"][0]  # 8 vs 512 bytes of min/max
    codec = ev.evaluate_codec_at_sizes(images, result["q8_tensor"]["bytes"], "tiny")
    assert codec["images"] == 2 and codec["bpp"] > 0 and np.isfinite(codec["psnr"])


def test_update_measures_our_codec_again_and_keeps_the_runs_rows(image_folder, tmp_path):
    """``--update``: our codec's rows of a results file measured again with another model, on the
    same held-out images at the stored latent sizes; the runs' rows untouched."""
    import json

    from edgecodec.zoo import find_model

    names, images = ev.held_out_images(image_folder, 0.02, 64)
    n = len(images)
    q8 = {"bpp": 0.5, "psnr": 20.0, "ssim": 0.5}
    result = {"images": {"root": str(image_folder), "val_fraction": 0.02, "size": 64, "count": n, "names": names},
              "codec_model": "old", "codec_curve": [],
              "runs": {"original-cae": {"cr": 48, "latent_shape": [64, 2, 2], "label": "CPU", "float": q8,
                                        "q8_tensor": {**q8, "bytes": [200] * n},
                                        "q8_channel": {**q8, "bytes": [300] * n}}}}
    path = tmp_path / "original.json"
    path.write_text(json.dumps(result))
    assert ev.main(["--update", str(path), "--codec-model", "tiny"]) == 0
    updated = json.loads(path.read_text())
    assert updated["codec_model"] == "tiny"
    assert updated["codec_weights_hash"] == find_model("tiny").weights_hash.hex()
    row = updated["runs"]["original-cae"]
    assert row["q8_tensor"] == result["runs"]["original-cae"]["q8_tensor"] and row["cr"] == 48
    for mode, size in (("tensor", 200), ("channel", 300)):
        codec = row[f"codec_at_q8_{mode}"]
        assert codec["images"] == n and codec["target_bpp"] == pytest.approx(8 * size / 64**2)
        assert codec["bpp"] > 0 and np.isfinite(codec["psnr"])
    assert [p["quality"] for p in updated["codec_curve"]] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    # other held-out images than the file's are refused; and one of RUNs or --update is needed
    with pytest.raises(ValueError, match="held-out images"):
        ev.update_codec({**result, "images": {**result["images"], "names": names[1:]}}, "tiny")
    with pytest.raises(SystemExit):
        ev.main([])
