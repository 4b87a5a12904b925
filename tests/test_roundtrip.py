"""compress -> decompress round trips: sizes, modes, rate, and bit-exact deterministic decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHIPPED, psnr, run_cli
from PIL import Image

import edgecodec
from edgecodec.codec.api import decode_array
from edgecodec.codec.container import Container
from edgecodec.errors import WeightsMismatchError


@pytest.mark.parametrize("height,width", [(1, 1), (17, 31), (1, 2000), (2000, 1), (63, 65)])
def test_round_trip_odd_sizes(height, width):
    rng = np.random.RandomState(height * 7 + width)
    x = rng.randint(0, 256, (height, width, 3), dtype=np.uint8)
    data = edgecodec.compress(x, quality=0.5, model="tiny")
    assert isinstance(data, bytes) and len(data) > 0
    header = edgecodec.read_header(data)
    assert (header.width, header.height, header.channels, header.bit_depth, header.conversions) == \
        (width, height, 3, 8, 0)
    image = edgecodec.decompress(data)
    assert isinstance(image, Image.Image)
    assert image.size == (width, height) and image.mode == "RGB"
    rgb, _ = decode_array(data)
    assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
    assert np.array_equal(np.asarray(image), rgb)


def test_round_trip_kodak_path(kodim23):
    data = edgecodec.compress(kodim23, model="tiny")
    image = edgecodec.decompress(data)
    assert image.size == (768, 512) and image.mode == "RGB"
    header = edgecodec.read_header(data)
    assert header.model == "tiny" and header.quality_q16 == 32768  # default quality 0.5
    bpp = 8 * len(data) / (768 * 512)
    assert 0 < bpp < 24


def test_encoding_is_deterministic(kodim23_rgb):
    crop = kodim23_rgb[:64, :96]
    first = edgecodec.compress(crop, model="tiny")
    assert edgecodec.compress(crop.copy(), model="tiny") == first


def test_path_pil_and_array_inputs_agree(kodim23, kodim23_rgb, tmp_path):
    crop = kodim23_rgb[:64, :96]
    Image.fromarray(crop).save(tmp_path / "crop.png")
    from_array = edgecodec.compress(crop, model="tiny")
    assert edgecodec.compress(tmp_path / "crop.png", model="tiny") == from_array
    assert edgecodec.compress(str(tmp_path / "crop.png"), model="tiny") == from_array
    with Image.open(tmp_path / "crop.png") as opened:
        assert edgecodec.compress(opened, model="tiny") == from_array
    # An in-memory PIL image (not opened from a file) is an image like any other.
    assert edgecodec.compress(Image.fromarray(crop), model="tiny") == from_array


def test_quality_validation(kodim23_rgb):
    crop = kodim23_rgb[:64, :64]
    for bad in (-0.01, 1.01, 2.0):
        with pytest.raises(ValueError):
            edgecodec.compress(crop, quality=bad, model="tiny")
    with pytest.raises(ValueError):
        edgecodec.compress(crop, model="tiny", target_bpp=1.0, target_size=1000)
    with pytest.raises(ValueError):
        edgecodec.compress(crop, model="tiny", target_bpp=0)
    assert edgecodec.read_header(edgecodec.compress(crop, quality=1.0, model="tiny")).quality_q16 == 65535
    assert edgecodec.read_header(edgecodec.compress(crop, quality=0.0, model="tiny")).quality_q16 == 0


def test_api_errors_are_the_documented_types(kodim23_rgb, monkeypatch):
    """Every failure is an EdgecodecError, a bad value also a ValueError, a wrong type a TypeError
    (README): these were bare ValueErrors (refinement of a perceptual model, policies, pixel limits),
    InputImageErrors (arrays of another dtype or shape), UnknownModelError (a model name that is no
    text) or a RuntimeError from inside torch (a float64 or uint8 batch in a model's forward)."""
    from edgecodec import EdgecodecError
    from edgecodec.models import create_model, get_config, register_config, registry

    crop = kodim23_rgb[:64, :64]
    for kwargs in ({"alpha": "x"}, {"metadata": "x"}, {"icc": "x"}, {"max_pixels": 0},
                   {"refine_steps": 2, "model": "perceptual"}):
        with pytest.raises(EdgecodecError) as refused:
            edgecodec.compress(crop, **kwargs)
        assert isinstance(refused.value, ValueError), kwargs
    monkeypatch.setenv("EDGECODEC_MAX_PIXELS", "lots")
    with pytest.raises(EdgecodecError, match="EDGECODEC_MAX_PIXELS"):
        edgecodec.compress(crop, model="tiny")
    monkeypatch.delenv("EDGECODEC_MAX_PIXELS")
    with pytest.raises(TypeError, match="dtype float32"):
        edgecodec.compress(crop.astype(np.float32) / 255, model="tiny")
    with pytest.raises(EdgecodecError) as refused:
        edgecodec.compress(crop[..., 0], model="tiny")
    assert isinstance(refused.value, ValueError) and "shape" in str(refused.value)
    with pytest.raises(TypeError, match="model name is text"):
        edgecodec.compress(crop, model=5)
    model = create_model("cae")
    for batch in (torch.rand(1, 3, 64, 64, dtype=torch.float64), torch.zeros(1, 3, 64, 64, dtype=torch.uint8)):
        with pytest.raises(TypeError, match="the model's dtype"):
            model(batch, 0.5)
    monkeypatch.setattr(registry, "_CONFIGS", dict(registry._CONFIGS))  # the registrations below stay here
    with pytest.raises(ValueError, match="named function"):
        register_config(lambda: get_config("cae"))

    def returns_a_dict():
        return {"channels": 8}
    register_config(returns_a_dict)
    with pytest.raises(TypeError, match="returned a dict, not a ModelConfig"):
        create_model("returns-a-dict")


def test_default_model_is_a_shipped_one(kodim23_rgb):
    from edgecodec import zoo

    data = edgecodec.compress(kodim23_rgb[:64, :64])
    assert edgecodec.read_header(data).model == zoo.DEFAULT_MODEL
    assert (zoo.PACKAGE_WEIGHTS / f"{zoo.DEFAULT_MODEL}.safetensors").is_file()


def test_shipped_size_grows_with_quality(shipped_kodim23):
    sizes = [len(shipped_kodim23[q]) for q in (0.0, 0.5, 1.0)]
    assert sizes[0] < sizes[1] < sizes[2], sizes


def test_shipped_quality_one_psnr(shipped_kodim23, kodim23_rgb):
    """The shipped model is trained: at the best quality it must beat a low bar on kodim23."""
    decoded = np.asarray(edgecodec.decompress(shipped_kodim23[1.0]))
    value = psnr(kodim23_rgb, decoded)
    assert value > 20.0, f"shipped model {SHIPPED!r} reaches only {value:.2f} dB on kodim23 at quality 1"


def test_decoding_twice_is_identical(shipped_kodim23):
    first, _ = decode_array(shipped_kodim23[0.5])
    second, _ = decode_array(shipped_kodim23[0.5])
    assert np.array_equal(first, second)


def test_decoding_with_one_or_two_threads_is_identical(shipped_kodim23):
    data = shipped_kodim23[0.5]
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, _ = decode_array(data)
        torch.set_num_threads(2)
        two, _ = decode_array(data)
        # A stream written with two encoder threads must decode to the same pixels with one.
        encoded_two = edgecodec.compress(np.ascontiguousarray(one[:128, :192]), model=SHIPPED)
        torch.set_num_threads(1)
        decoded_two_one, _ = decode_array(encoded_two)
        torch.set_num_threads(2)
        decoded_two_two, _ = decode_array(encoded_two)
    finally:
        torch.set_num_threads(previous)
    assert torch.get_num_threads() == previous
    assert np.array_equal(one, two), f"{int((one != two).sum())} values differ"
    assert np.array_equal(decoded_two_one, decoded_two_two)


def test_decoding_in_another_process_is_identical(shipped_kodim23, tmp_path):
    data = shipped_kodim23[0.5]
    (tmp_path / "k.edc").write_bytes(data)
    result = run_cli("decompress", "k.edc", "-o", "k.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    with Image.open(tmp_path / "k.png") as img:
        other = np.array(img)
    here, _ = decode_array(data)
    assert other.shape == here.shape
    assert np.array_equal(other, here)


def test_streams_carry_quality_and_model(shipped_kodim23):
    for q, data in shipped_kodim23.items():
        c = Container.from_bytes(data)
        assert c.header.quality_q16 == round(q * 65535)
        assert c.header.model == SHIPPED
        assert len(c.streams) == 2 and all(len(s) > 0 for s in c.streams)


def test_weights_mismatch(tiny_models, tiny_stream, monkeypatch):
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", str(tiny_models["b"]))
    with pytest.raises(WeightsMismatchError) as info:
        decode_array(tiny_stream)
    assert "tiny" in str(info.value)
    # And back: the stream decodes again with the weights that wrote it.
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", str(tiny_models["a"]))
    rgb, _ = decode_array(tiny_stream)
    assert rgb.shape == (40, 70, 3)


def test_model_path_order_first_folder_wins(tiny_models, monkeypatch):
    import os

    from edgecodec import zoo

    monkeypatch.setenv("EDGECODEC_MODEL_PATH", os.pathsep.join([str(tiny_models["b"]), str(tiny_models["a"])]))
    entry = zoo.find_model("tiny")
    assert entry.weights.parent == tiny_models["b"]
    model, weights_hash = zoo.load_model("tiny")
    assert weights_hash == entry.weights_hash
    assert not model.training


def test_a_stream_decodes_with_the_model_its_name_hides(tiny_models, tiny_stream, monkeypatch, tmp_path):
    """A model exported under a shipped name (`export-model --name fidelity`) hides the shipped
    one: the files written with it failed with WeightsMismatchError and a message blaming the
    edgecodec version. A stream is decoded by the weights its header's hash names, among the
    models of its name in search order; new files are still written with the first."""
    import os

    from edgecodec import zoo

    monkeypatch.setenv("EDGECODEC_MODEL_PATH", os.pathsep.join([str(tiny_models["b"]), str(tiny_models["a"])]))
    _, first_hash = zoo.load_model("tiny")
    assert first_hash == zoo.find_model("tiny").weights_hash != Container.from_bytes(tiny_stream).header.weights_hash
    assert decode_array(tiny_stream)[0].shape == (40, 70, 3)  # written by folder a's, hidden by b's
    broken = tmp_path / "broken"  # hidden behind a damaged model of its name too
    broken.mkdir()
    (broken / "tiny.json").write_text("{not json")
    (broken / "tiny.safetensors").write_bytes(b"x")
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", os.pathsep.join(map(str, [broken, tiny_models["b"], tiny_models["a"]])))
    assert decode_array(tiny_stream)[0].shape == (40, 70, 3)
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", os.pathsep.join([str(tiny_models["b"]), str(tiny_models["a"])]))
    newer = edgecodec.compress(np.zeros((16, 16, 3), np.uint8), quality=0.5, model="tiny")
    assert Container.from_bytes(newer).header.weights_hash == first_hash
    # The torch-free decoder likewise: the cache exports the model with the file's weights.
    from edgecodec.cli import main

    monkeypatch.setenv("EDGECODEC_CACHE", str(tmp_path / "cache"))
    (tmp_path / "a.edc").write_bytes(tiny_stream)
    assert main(["decompress", str(tmp_path / "a.edc"), "-o", str(tmp_path / "a.png"), "--backend", "onnx"]) == 0
    assert np.abs(np.asarray(Image.open(tmp_path / "a.png"), int) - decode_array(tiny_stream)[0]).max() <= 1
    assert [p.name for p in (tmp_path / "cache" / "onnx").iterdir() if not p.name.startswith(".")] == [
        f"tiny-{Container.from_bytes(tiny_stream).header.weights_hash.hex()}"]
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", str(tiny_models["b"]))  # only other weights: refused, said plainly
    with pytest.raises(WeightsMismatchError, match=r"the model of that name here \(.*models_b.*\) has other weights"):
        decode_array(tiny_stream)
