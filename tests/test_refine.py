"""Encoder refinement (codec/refine.py): fewer bytes for the same objective, same decoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHIPPED, assert_one_error_line

import edgecodec
from edgecodec import cli, zoo
from edgecodec.codec import refine
from edgecodec.codec.api import Encoder, _to_tensor, decode_array
from edgecodec.codec.imageio import load_image


@pytest.fixture(scope="module")
def crop(kodim23_rgb) -> np.ndarray:
    return np.ascontiguousarray(kodim23_rgb[96:224, 256:448])  # 128 x 192: fast enough for 20 steps


def _objective(name: str = SHIPPED):
    model, _ = zoo.load_model(name)
    return model, refine.refinement_objective(name)


@pytest.mark.parametrize("quality", [0.5, 1.0])
def test_refinement_lowers_the_real_objective(crop, quality):
    model, objective = _objective()
    x = _to_tensor(crop, model.stride)
    y = model.analyze(x)
    result = refine.encode_refined(model, objective, x, y, crop, quality, steps=60)
    # The optimiser, not only the keep-best guard: the refined streams were kept because they
    # measured better on real bytes and the real decoded image.
    assert result.refined
    # 3.2% / 8.4% measured with fidelity stage 28. The better trained the model, the less a short
    # run finds on this small crop: 30 steps found 1.3% at quality 0.5 before stage 21, 0.9% at
    # stage 21 and 0.4% at stage 28, so the test now runs 60.
    assert result.objective < 0.99 * result.unrefined_objective
    shape = tuple(y.shape[-2:])
    assert result.objective == pytest.approx(
        refine.real_objective(model, objective, result.strings, shape, quality, crop))


def test_relaxed_objective_at_low_temperature_is_the_training_objective(crop):
    # Near-hard rounding, the objective refinement descends must be the one the model was trained
    # on (the rate of y and z per pixel plus lambda times the distortion), evaluated on the rounded
    # latents of the model's own forward pass.
    model, objective = _objective()
    x = _to_tensor(crop, model.stride)
    quality = torch.tensor([0.5])
    with torch.no_grad():
        expected = objective(model.eval()(x, quality), x, quality)["loss"]
        gains = model.gains(quality)
        u = model.analyze(x) * gains["y_gain"]
        relaxed = refine._relaxed_loss(model, objective, u, x, gains, quality, crop.shape[:2], 1e-4,
                                       torch.Generator().manual_seed(0))
    assert float(relaxed) == pytest.approx(float(expected), rel=1e-3)


def test_a_worse_refinement_is_not_kept(crop, monkeypatch):
    model, objective = _objective()
    x = _to_tensor(crop, model.stride)
    y = model.analyze(x)
    monkeypatch.setattr(refine, "refine_latent", lambda model, objective, x, y, *a: y + 3.0)
    result = refine.encode_refined(model, objective, x, y, crop, 0.5, steps=5)
    assert not result.refined
    assert result.strings == model.compress_latent(y, 0.5)["strings"]
    assert result.refined_objective > result.unrefined_objective == result.objective  # measured, not kept


def test_refined_file_decodes_and_is_smaller_or_better(crop):
    plain = edgecodec.compress(crop, model=SHIPPED, quality=0.5)
    # 60 steps: on this crop 20 found nothing better with fidelity stage 22, and 30 nothing with
    # stage 32 (keep-best kept the plain file); the objective test above finds 1% with 60
    refined = edgecodec.compress(crop, model=SHIPPED, quality=0.5, refine_steps=60)
    assert refined != plain
    assert edgecodec.compress(crop, model=SHIPPED, quality=0.5, refine_steps=60) == refined  # seeded
    assert edgecodec.compress(crop, model=SHIPPED, quality=0.5, refine_steps=0) == plain
    header = edgecodec.read_header(refined)
    assert (header.model, header.width, header.height) == (SHIPPED, 192, 128)
    assert header.quality == pytest.approx(0.5, abs=1e-4)
    decoded, _ = decode_array(refined)
    assert decoded.shape == crop.shape

    def mse(data: bytes) -> float:
        return float(((decode_array(data)[0].astype(float) - crop) ** 2).mean())

    assert len(refined) < len(plain) or mse(refined) < mse(plain)


def test_refinement_with_a_target_size_fits(crop):
    target = len(edgecodec.compress(crop, model=SHIPPED, quality=0.4))
    data = edgecodec.compress(crop, model=SHIPPED, target_size=target, refine_steps=5)
    assert len(data) <= target


def test_perceptual_and_tiled_refinement_refused(crop):
    with pytest.raises(refine.RefinementUnsupported, match="perceptual"):
        edgecodec.compress(crop, model="perceptual", refine_steps=5)
    with pytest.raises(ValueError, match="0 or more"):
        Encoder(load_image(crop), SHIPPED, refine_steps=-1)
    big = np.zeros((1500, 1500, 3), np.uint8)  # 2.25 MP: coded in tiles
    with pytest.raises(ValueError, match="in one piece"):
        Encoder(load_image(big), SHIPPED, refine_steps=5)


def test_cli_refine(crop, tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "crop.png"
    Image.fromarray(crop).save(src)
    assert cli.main(["compress", str(src), "-o", str(tmp_path / "r.edc"), "--model", SHIPPED, "--refine", "5"]) == 0
    assert "model fidelity" in capsys.readouterr().out
    assert (tmp_path / "r.edc").read_bytes() == edgecodec.compress(crop, model=SHIPPED, refine_steps=5)
    # The default model is perceptual: refused up front with one line, nothing written.
    assert cli.main(["compress", str(src), "-o", str(tmp_path / "p.edc"), "--refine", "5"]) == 2
    assert_one_error_line(capsys.readouterr().err, "perceptual", "--model fidelity")
    assert not (tmp_path / "p.edc").exists()
    with pytest.raises(SystemExit) as info:
        cli.main(["compress", str(src), "--refine", "-3"])
    assert info.value.code == 2


def test_eval_labels_refined_models(crop, tmp_path):
    from PIL import Image

    from edgecodec.eval import runner

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(crop).save(folder / "a.png")
    assert runner.parse_model_label("fidelity+refine25") == ("fidelity", 25)
    assert runner.parse_model_label("fidelity") == ("fidelity", 0)
    from edgecodec.errors import UsageError
    for misspelt in ("fidelity+refineX", "fidelity+refine0", "fidelity+x"):
        with pytest.raises(UsageError, match="NAME\\+refineN"):
            runner.parse_model_label(misspelt)
    label = f"{SHIPPED}+refine3"
    result = runner.run_sweep(folder, tmp_path / "out", models=[SHIPPED, label], qualities=[0.5], codecs=[],
                              model_qualities={label: [0.25, 0.5]}, st_lpips=False, progress=False)
    rows = {(r["codec"], r["quality"]): r for r in result.rows}
    assert sorted(rows) == [(SHIPPED, 0.5), (label, 0.25), (label, 0.5)]
    assert rows[(label, 0.5)]["version"] == result.summary["models"][label]
    assert rows[(label, 0.5)]["version"].startswith(rows[(SHIPPED, 0.5)]["version"] + "+refine3-")
    assert rows[(label, 0.5)]["bytes"] == len(edgecodec.compress(crop, model=SHIPPED, quality=0.5, refine_steps=3))
    # The report's matched-rate crops include the refined label, matched with refinement.
    from edgecodec.eval.report import DEFAULT_CROP_BPP, make_crops

    sections = make_crops(result.summary, tmp_path / "out", n_images=1, st_lpips=False)
    entries = {e["label"]: e for e in sections[0]["entries"]}
    assert list(entries) == ["original", SHIPPED, label]
    target = int(DEFAULT_CROP_BPP * crop.shape[0] * crop.shape[1] / 8)
    refined = edgecodec.compress(crop, model=SHIPPED, target_size=target, refine_steps=3)
    assert entries[label]["bpp"] == 8 * len(refined) / (crop.shape[0] * crop.shape[1])
    with pytest.raises(refine.RefinementUnsupported):
        runner.run_sweep(folder, tmp_path / "out2", models=["perceptual+refine3"], qualities=[0.5], codecs=[],
                         st_lpips=False, progress=False)
    assert not (tmp_path / "out2").exists()


def test_eval_sweep_option_for_models(crop, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(crop).save(folder / "a.png")
    out = tmp_path / "out"
    code = cli.main(["eval", str(folder), "--out", str(out), "--models", f"{SHIPPED}+refine2", "--codecs", "jpeg",
                     "--sweep", f"{SHIPPED}+refine2=0.5", "--sweep", "jpeg=50", "--no-st-lpips", "--no-report",
                     "-q"])
    assert code == 0
    assert f"{SHIPPED}+refine2" in capsys.readouterr().out
    assert cli.main(["eval", str(folder), "--out", str(out), "--codecs", "jpeg", "--models", "none",
                     "--sweep", "jpeg=50.5"]) == 2
    assert_one_error_line(capsys.readouterr().err, "integers")
