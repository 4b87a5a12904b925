"""Checkerboard context models (models/context.py, lite/context.py): the warm start from a
hyperprior model, exact two-pass coding, tiles, and the torch-free decoder."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import TINY, psnr

import edgecodec
from edgecodec.codec import Container, api
from edgecodec.errors import FormatError
from edgecodec.lite import LiteDecoder
from edgecodec.lite.context import anchor_mask
from edgecodec.models import create_model
from edgecodec.zoo import save_model


def plain_and_context(seed: int = 0):
    """A random tiny hyperprior model and a checkerboard model warm-started from it."""
    torch.manual_seed(seed)
    plain = create_model("gdn-hp-edge", **TINY).eval()
    context = create_model("gdn-hp-edge", context="checkerboard", **TINY).eval()
    own = context.state_dict()
    own.update({k: v for k, v in plain.state_dict().items() if k in own})
    context.load_state_dict(own)
    plain.update(force=True)
    context.update(force=True)
    return plain, context


def perturb(model) -> None:
    """Move the context networks off their identity start, as training would."""
    codec = model.latent_codec["y"]
    with torch.no_grad():
        codec.entropy_parameters.net[-1].weight.normal_(0, 0.05)
        codec.context_prediction.weight.normal_(0, 0.05)
    model.update(force=True)


def test_checkerboard_warm_start_codes_as_the_hyperprior_model():
    plain, context = plain_and_context()
    x = torch.rand(1, 3, 64, 128)
    for q in (0.0, 0.7):
        coded, plain_coded = context.compress(x, q), plain.compress(x, q)
        decoded = context.decompress(coded["strings"], coded["shape"], q)
        assert torch.equal(decoded, plain.decompress(plain_coded["strings"], plain_coded["shape"], q))
        # two rANS streams instead of one, packed with two 4-byte lengths
        size, plain_size = (sum(map(len, c["strings"])) for c in (coded, plain_coded))
        assert plain_size < size <= plain_size + 16
    counts = context.parameter_counts()
    assert counts["decoder"] > plain.parameter_counts()["decoder"]
    with pytest.raises(ValueError):
        create_model("gdn-hp-edge", context="checkerboard", prior="scale", **TINY)
    with pytest.raises(ValueError):
        create_model("gdn-hp-edge", context="autoregressive", **TINY)


def test_checkerboard_decodes_what_training_computes():
    """With trained (here: random) context networks the decoded image is the eval-mode forward
    pass's, and differs from the hyperprior's: the non-anchors' parameters see the anchors."""
    plain, context = plain_and_context(1)
    perturb(context)
    x = torch.rand(1, 3, 64, 128)
    for q in (0.0, 0.6):
        coded = context.compress(x, q)
        decoded = context.decompress(coded["strings"], coded["shape"], q)
        with torch.no_grad():
            forward = context(x, torch.tensor([q]))["x_hat"].clamp(0, 1)
        torch.testing.assert_close(decoded, forward, atol=1e-4, rtol=0)
        plain_coded = plain.compress(x, q)
        assert not torch.equal(decoded, plain.decompress(plain_coded["strings"], plain_coded["shape"], q))


def test_anchor_mask_is_compressais_even_parity():
    _, context = plain_and_context()
    ones = torch.ones(1, 1, 5, 6)
    expected = context.latent_codec["y"]._keep_only(ones, "anchor")[0, 0].bool().numpy()
    assert np.array_equal(anchor_mask(5, 6), expected)


@pytest.fixture(scope="module")
def context_model(tmp_path_factory):
    """A perturbed tiny checkerboard model saved as "tiny-context", and its ONNX export."""
    from edgecodec.export.onnx import export_onnx

    folder = tmp_path_factory.mktemp("context_model")
    _, context = plain_and_context(2)
    perturb(context)
    save_model(context, folder, "tiny-context", {"summary": "tiny random checkerboard model"})
    previous = os.environ["EDGECODEC_MODEL_PATH"]
    os.environ["EDGECODEC_MODEL_PATH"] = str(folder) + os.pathsep + previous
    try:
        yield export_onnx("tiny-context", folder / "export")
    finally:
        os.environ["EDGECODEC_MODEL_PATH"] = previous


def test_lite_decoder_reads_checkerboard_files_whole_and_tiled(context_model, kodim23_rgb):
    lite = LiteDecoder(context_model, threads=1)
    rgb = np.ascontiguousarray(kodim23_rgb[:320, :448])
    whole = edgecodec.compress(rgb, quality=0.5, model="tiny-context")
    tiled = api.Encoder(api.load_image(rgb), "tiny-context", tile=16).encode(api.quality_to_q16(0.5))
    assert Container.from_bytes(tiled).header.tile == 16
    for data in (whole, tiled):
        torch_rgb, _ = api.decode_array(data)
        lite_rgb, _ = lite.decode(data)
        assert lite_rgb.shape == torch_rgb.shape == rgb.shape
        assert np.abs(lite_rgb.astype(int) - torch_rgb).max() <= 1
    # tiles see only their own anchors, so the tiled latent differs a little from the whole one
    whole_rgb, tiled_rgb = api.decode_array(whole)[0], api.decode_array(tiled)[0]
    assert abs(psnr(whole_rgb, rgb) - psnr(tiled_rgb, rgb)) < 1.0
    # A damaged half table is named as such (it said "tile stream" in files that have no tiles).
    c = Container.from_bytes(whole)
    damaged = Container(c.header, [c.streams[0] + b"\0", *c.streams[1:]], c.extras).to_bytes()
    for decode in (api.decode_array, lite.decode):
        with pytest.raises(FormatError, match="trailing bytes after the last checkerboard half stream"):
            decode(damaged)


def test_sparse_context_convolution_equals_the_full_one(rng=np.random.RandomState(7)):
    """The decoder convolves only the unmasked taps at the non-anchor positions: the same integers
    as the whole masked convolution (exact sums)."""
    from edgecodec.lite.hyper import run_layers

    _, context = plain_and_context(3)
    perturb(context)
    cb = context.exact_entropy().context
    m = context.config.latent_channels
    y_hat = np.round(rng.normal(0, 3, (m, 7, 9)) * 4096) * (anchor_mask(7, 9) > 0)
    selected = ~anchor_mask(7, 9)
    full = run_layers(y_hat, (cb.context,))[:, selected]
    assert np.array_equal(cb.context_at(y_hat, selected), full)
    assert np.count_nonzero(full)
