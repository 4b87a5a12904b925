"""The torch-free decoder (edgecodec.lite) and the exact entropy path of format version 3."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import torch

import edgecodec
from edgecodec.codec import FORMAT_VERSION, Container, api
from edgecodec.codec.api import _to_tensor
from edgecodec.errors import FormatError, UsageError, WeightsMismatchError
from edgecodec.lite import LiteDecoder
from edgecodec.lite import hyper
from edgecodec.lite.decoder import _to_uint8
from edgecodec.lite.entropy import ExactEntropyModel
from edgecodec.lite.hyper import IntegerLayer, _conv, gain_margin
from edgecodec.zoo import load_model, shipped_models

from conftest import (FORMAT6, REPO, SHIPPED, TINY, assert_one_error_line, fix_crc, legacy_streams, psnr, run_cli,
                      synthetic_photo)

QUALITIES = (0.0, 0.3, 0.7, 1.0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from edgecodec.export.onnx import export_onnx

    return export_onnx(SHIPPED, tmp_path_factory.mktemp("export") / SHIPPED)


@pytest.fixture(scope="module")
def lite(exported) -> LiteDecoder:
    return LiteDecoder(exported, threads=1)


@pytest.fixture(scope="module")
def images(kodim23_rgb) -> list[np.ndarray]:
    rng = np.random.RandomState(3)
    return [kodim23_rgb[:192, :256], synthetic_photo(rng, 128), kodim23_rgb[200:, 300:700]]


def run_without(script: str, cwd, blocked: tuple[str, ...] = ("torch", "torchvision", "PIL", "scipy")):
    """Run ``script`` in a fresh interpreter where importing any of ``blocked`` fails, then check
    that no torch module was loaded: the completed process."""
    code = (f"import sys\nfor name in {blocked!r}:  # any import of these now raises ImportError\n"
            "    sys.modules[name] = None\n" + script + "\nassert not any(m == 'torch' or m.startswith('torch.')"
            " for m, v in sys.modules.items() if v is not None)\n")
    return subprocess.run([sys.executable, "-c", code], cwd=str(cwd), capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def encoder_latent(model, rgb: np.ndarray, quality: float) -> np.ndarray:
    """y_hat as the encoder quantized it: (round(y * gain - means) + means) * gain_inv, the means
    of context models from the anchors quantized the same way."""
    y = model.analyze(_to_tensor(rgb, model.stride))
    g = model.gains(torch.tensor([quality]))
    _, z_symbols = model.compress_hyper(y, g["z_gain"])
    exact = model.exact_entropy()
    side = exact.side(z_symbols, quality)
    y_gained = (y * g["y_gain"])[0]
    if exact.context is None:
        _, means = exact.hyper.params_from_raw(side)
        symbols = torch.round(y_gained - torch.from_numpy(means)).numpy()
    else:
        symbols, means = exact.context.run(
            side, exact.hyper.table_indexes,
            lambda selected, _, mu: torch.round(y_gained[:, torch.from_numpy(selected)] - torch.from_numpy(mu)).numpy())
    return exact.dequantize(symbols, means, quality)


def test_lite_latents_equal_the_encoders_and_pixels_the_torch_decoders(lite, images):
    model, _ = load_model(SHIPPED)
    for rgb in images:
        for q in QUALITIES:
            data = edgecodec.compress(rgb, quality=q, model=SHIPPED)
            header = Container.from_bytes(data).header
            assert header.version == 3
            latent = lite.decode_latent(data).y_hat
            # header.quality: the quality as stored (16-bit), which the encoder used too
            assert np.array_equal(latent, encoder_latent(model, rgb, header.quality)), (rgb.shape, q)
            torch_rgb, _ = api.decode_array(data)
            lite_rgb, header = lite.decode(data)
            assert lite_rgb.shape == torch_rgb.shape == rgb.shape
            assert np.abs(lite_rgb.astype(int) - torch_rgb).max() <= 1, (rgb.shape, q)


def test_lite_decodes_refined_streams(lite, kodim23_rgb):
    """Encoder refinement changes the latent, not the format: the lite decoder reads it."""
    model, _ = load_model(SHIPPED)
    rgb = np.ascontiguousarray(kodim23_rgb[96:224, 256:448])  # refinement measured better here (test_refine)
    data = edgecodec.compress(rgb, quality=1.0, model=SHIPPED, refine_steps=30)
    header = Container.from_bytes(data).header
    latent = lite.decode_latent(data).y_hat
    assert not np.array_equal(latent, encoder_latent(model, rgb, header.quality))  # refined, not plain
    lite_rgb, _ = lite.decode(data)
    torch_rgb, _ = api.decode_array(data)
    assert np.abs(lite_rgb.astype(int) - torch_rgb).max() <= 1


def test_lite_decodes_tiled_streams(lite, kodim23_rgb):
    encoder = api.Encoder(api.load_image(kodim23_rgb[:320, :448]), SHIPPED, tile=16)
    data = encoder.encode(api.quality_to_q16(0.6))
    header = Container.from_bytes(data).header
    assert header.tile == 16 and header.version == 3
    torch_rgb, _ = api.decode_array(data)
    lite_rgb, _ = lite.decode(data)
    assert np.abs(lite_rgb.astype(int) - torch_rgb).max() <= 1
    assert psnr(lite_rgb, kodim23_rgb[:320, :448]) > 25


def test_region_decoding_gives_the_whole_images_crop_from_the_tiles_it_needs(lite, kodim23_rgb, monkeypatch):
    """``region``: a tiled file decodes only the tiles its synthesis windows read, and both decoders
    give exactly the pixels of their whole-image decode's crop (alpha included); one-piece files
    decode whole and are cropped. A tile left undecoded would show as wrong pixels."""
    rgba = np.dstack([kodim23_rgb, (kodim23_rgb[..., :1] > 100).astype(np.uint8) * 255])  # 768 x 512
    tiled = api.Encoder(api.load_image(rgba), SHIPPED, tile=16).encode(api.quality_to_q16(0.6))  # 3 x 2 tiles
    one_piece = edgecodec.compress(rgba, quality=0.6, model=SHIPPED)
    assert Container.from_bytes(tiled).header.tile == 16 and Container.from_bytes(one_piece).header.tile == 0
    decoded_tiles = []
    decode_y = ExactEntropyModel.decode_y
    monkeypatch.setattr(ExactEntropyModel, "decode_y", lambda self, *a: decoded_tiles.append(1) or decode_y(self, *a))
    for data in (tiled, one_piece):
        whole_torch = np.asarray(api.decompress(data))
        whole_lite, _ = lite.decode(data)
        assert whole_torch.shape == whole_lite.shape == (512, 768, 4)
        # region: tiles its windows read (a tile and the neighbours its 3-latent-pixel halo reaches)
        for region, tiles in [((0, 0, 768, 512), 6), ((10, 20, 100, 50), 4), ((250, 250, 20, 20), 6),
                              ((767, 511, 1, 1), 4)]:
            decoded_tiles.clear()
            part_torch = np.asarray(api.decompress(data, region=region))
            torch_tiles = len(decoded_tiles)
            part_lite, _ = lite.decode(data, region=region)
            lite_tiles = len(decoded_tiles) - torch_tiles
            left, top, width, height = region
            crop = np.s_[top: top + height, left: left + width]
            assert np.array_equal(part_torch, whole_torch[crop])
            assert np.array_equal(part_lite, whole_lite[crop])
            assert np.array_equal(part_torch[..., 3], rgba[crop][..., 3])  # the lossless alpha, cropped
            assert torch_tiles == lite_tiles == (1 if data is one_piece else tiles)
    for bad in [(0, 0, 769, 1), (-1, 0, 5, 5), (0, 0, 0, 5), (768, 0, 1, 1), ("a", 0, 1, 1), (0.5, 0, 1, 1),
                (0, 0, 1)]:
        with pytest.raises(UsageError, match="region"):
            api.decode_array(tiled, region=bad)
        with pytest.raises(UsageError, match="region"):
            lite.decode(tiled, region=bad)
        with pytest.raises(ValueError, match="region"):  # the API's bad values are ValueErrors (errors.py)
            edgecodec.decompress(tiled, region=bad)


def test_lite_imports_and_decodes_with_torch_and_pillow_blocked(exported, lite, kodim23_rgb, tmp_path):
    rgba = np.dstack([kodim23_rgb[:128, :192], (kodim23_rgb[:128, :192, :1] > 100).astype(np.uint8) * 255])
    data = edgecodec.compress(rgba, quality=0.5, model=SHIPPED)  # format version 4: its extras need no Pillow
    assert Container.from_bytes(data).header.version == 4
    (tmp_path / "in.edc").write_bytes(data)
    result = run_without(f"""
import numpy as np
from edgecodec.lite import LiteDecoder
rgb, header = LiteDecoder({str(exported)!r}, threads=1).decode(open({str(tmp_path / 'in.edc')!r}, "rb").read())
np.save({str(tmp_path / 'out.npy')!r}, rgb)
""", tmp_path)
    assert result.returncode == 0, result.stderr
    decoded = np.load(tmp_path / "out.npy")
    assert np.array_equal(decoded, lite.decode(data)[0])
    # The kept alpha plane comes back without Pillow, exactly; the picture as the PyTorch decoder's.
    assert decoded.shape == (128, 192, 4) and np.array_equal(decoded[..., 3], rgba[..., 3])
    assert np.abs(decoded[..., :3].astype(int) - api.decode_array(data)[0]).max() <= 1


def test_export_replaces_only_an_earlier_export(exported, tmp_path):
    import shutil

    from edgecodec.cli import main
    from edgecodec.errors import OutputExistsError
    from edgecodec.export.onnx import export_onnx

    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("years of work")
    assert main(["export", "onnx", "--model", SHIPPED, "-o", str(documents)]) == 8
    assert (documents / "thesis.txt").read_text() == "years of work"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="not a folder"):
        export_onnx(SHIPPED, tmp_path / "file")
    again = tmp_path / "again"
    shutil.copytree(exported, again)
    (again / "notes.txt").write_text("mine")  # an export with a file of the user's: not replaced
    with pytest.raises(OutputExistsError, match="not an edgecodec export"):
        export_onnx(SHIPPED, again)
    (again / "notes.txt").unlink()
    before = json.loads((again / "manifest.json").read_text())
    assert export_onnx(SHIPPED, again) == again  # an earlier export is replaced, as is an empty folder
    assert json.loads((again / "manifest.json").read_text())["files"] == before["files"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".again-")]


def test_an_export_replaced_halfway_is_put_back(exported, tmp_path, monkeypatch):
    """The earlier export was deleted before the new one was renamed into its place: a Ctrl+C or
    SIGTERM in between left neither. A folder that cannot be replaced is exit 11, not an internal error."""
    import shutil
    from pathlib import Path

    from edgecodec.errors import OutputWriteError
    from edgecodec.export import onnx

    out, new = tmp_path / "export", tmp_path / ".export-new"
    shutil.copytree(exported, out)
    earlier = (out / "manifest.json").read_text()
    rename, calls = Path.rename, []

    def failing(when, exc):
        def rename_or_fail(self, target):
            calls.append(self)
            if len(calls) == when:
                raise exc
            return rename(self, target)
        return rename_or_fail

    for when, exc, error in ((2, KeyboardInterrupt(), KeyboardInterrupt),  # the new export moving in
                             (1, PermissionError(13, "Permission denied"), OutputWriteError)):
        shutil.copytree(exported, new)
        (new / "manifest.json").write_text("{}")
        calls.clear()
        monkeypatch.setattr(Path, "rename", failing(when, exc))
        with pytest.raises(error):
            onnx._replace_folder(out, new)
        monkeypatch.undo()
        assert (out / "manifest.json").read_text() == earlier
        shutil.rmtree(new)
    shutil.copytree(exported, new)
    (new / "manifest.json").write_text("{}")
    onnx._replace_folder(out, new)
    assert (out / "manifest.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


# What README "On the edge" tells a device to copy instead of installing the package.
DEVICE_FILES = ["__init__.py", "errors.py", "codec/__init__.py", "codec/container.py", "codec/limits.py",
                "codec/rate_search.py", "lite/"]


def test_lite_decodes_from_a_copy_of_only_the_device_files(exported, lite, kodim23_rgb, tmp_path):
    import shutil

    readme = (REPO / "README.md").read_text()
    device = tmp_path / "device"
    for name in DEVICE_FILES:
        assert name.rstrip("/") in readme, name
        src, dst = REPO / "edgecodec" / name, device / "edgecodec" / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy(src, dst))
    rgba = np.dstack([kodim23_rgb[:128, :192], (kodim23_rgb[:128, :192, 1:2] > 90).astype(np.uint8) * 255])
    data = edgecodec.compress(rgba, quality=0.5, model=SHIPPED)
    (tmp_path / "in.edc").write_bytes(data)
    script = f"""
import sys
# The development install finds edgecodec's modules in the repository whatever sys.path says: drop
# its finder, so that only the copied files can be imported. Pillow stays importable (devices may
# have it); torch does not.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, {str(device)!r})
for blocked in ("torch", "torchvision"):
    sys.modules[blocked] = None
import numpy as np
import edgecodec
from edgecodec.lite import LiteDecoder, LiteEncoder
rgb, header = LiteDecoder({str(exported)!r}, threads=1).decode(open({str(tmp_path / 'in.edc')!r}, "rb").read())
np.save({str(tmp_path / 'out.npy')!r}, rgb)
encoded = LiteEncoder({str(exported)!r}, threads=1).encode(rgb, target_bytes=2000)  # the encoder, too
assert 0 < len(encoded) <= 2000
outside = [m.__file__ for n, m in sys.modules.items() if n.startswith("edgecodec") and m is not None
           and not m.__file__.startswith({str(device)!r})]
assert not outside, outside
try:  # the PyTorch API, which the copy lacks, says what to use instead
    edgecodec.decompress
except ImportError as exc:
    assert "code with edgecodec.lite's LiteEncoder and LiteDecoder" in str(exc), exc
else:
    raise AssertionError("edgecodec.decompress imported from a copy of the device files")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.load(tmp_path / "out.npy"), lite.decode(data)[0])


def test_a_decoder_only_copy_of_an_export_decodes_and_its_encoder_says_what_is_missing(exported, lite, tmp_path):
    """The README's 4.9 MB of model files (decoder, tables, manifest) decode; LiteEncoder on them was
    a bare "[Errno 2] No such file or directory: .../encoder.onnx"."""
    import shutil

    from edgecodec.lite import LiteEncoder

    copy = tmp_path / "decoder-only"
    copy.mkdir()
    for name in ("decoder.onnx", "tables.safetensors", "manifest.json"):
        shutil.copy(exported / name, copy / name)
    data = edgecodec.compress(synthetic_photo(np.random.RandomState(3), 64), quality=0.5, model=SHIPPED)
    assert np.array_equal(LiteDecoder(copy, threads=1).decode(data)[0], lite.decode(data)[0])
    with pytest.raises(FileNotFoundError, match=r"has no encoder.onnx, which its manifest.json lists: copy it"):
        LiteEncoder(copy, threads=1)


def test_onnxruntime_telemetry_is_off_unless_the_user_turns_it_on(exported, kodim23_rgb, tmp_path):
    """onnxruntime 1.32 wrote a device id and an event database under ~/.cache/Microsoft/DeveloperTools
    (uploaded to Microsoft) from every lite decode and encode; ORT_DISABLE_TELEMETRY=1 keeps it off,
    and a value the user set is left as it is."""
    import os

    (tmp_path / "in.edc").write_bytes(edgecodec.compress(kodim23_rgb[:64, :64], quality=0.5, model=SHIPPED))
    script = f"""
import os
from edgecodec.lite import LiteDecoder, LiteEncoder
rgb, _ = LiteDecoder({str(exported)!r}, threads=1).decode(open({str(tmp_path / 'in.edc')!r}, "rb").read())
LiteEncoder({str(exported)!r}, threads=1).encode(rgb, quality=0.5)
print(os.environ["ORT_DISABLE_TELEMETRY"])
"""
    for given, home in ((None, tmp_path / "home"), ("0", tmp_path / "opted-in")):
        home.mkdir()
        # A bare environment: onnxruntime keeps quiet on its own where it sees a CI variable (CI=true),
        # and the opted-in run must show that the check below can fail.
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
               "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}
        if given is not None:
            env["ORT_DISABLE_TELEMETRY"] = given
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == (given or "1")
    assert not (tmp_path / "home" / ".cache" / "Microsoft").exists()
    assert (tmp_path / "opted-in" / ".cache" / "Microsoft").exists()  # the check can fail: opted in, it writes


def test_int8_quantization_on_its_own_keeps_onnxruntime_telemetry_off(exported, tmp_path):
    """quantize_synthesis called alone (not after calibration_latents, whose integer hyper-synthesis
    happened to turn telemetry off first) let onnxruntime write its device id under ~/.cache/Microsoft."""
    import os

    m = json.loads((exported / "manifest.json").read_text())["config"]["latent_channels"]
    script = f"""
import numpy as np
from pathlib import Path
from edgecodec.export.int8 import quantize_synthesis
quantize_synthesis(Path({str(exported / 'decoder.onnx')!r}), Path({str(tmp_path / 'q.onnx')!r}),
                   [np.random.RandomState(0).randn(1, {m}, 2, 2).astype(np.float32)])
"""
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}  # no CI variable: onnxruntime keeps quiet where it sees one
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "q.onnx").is_file()
    assert not (home / ".cache" / "Microsoft").exists()


def test_ans_loaded_by_file_coexists_with_compressai(tmp_path):
    script = """
from edgecodec.lite.rans import load_ans
ans = load_ans()
import torch
from compressai import ans as imported
from compressai.entropy_models import EntropyBottleneck
assert imported is ans
eb = EntropyBottleneck(4)
eb.update(force=True)
x = torch.randint(-3, 4, (1, 4, 5, 6)).float()
assert torch.equal(eb.decompress(eb.compress(x), x.shape[-2:]), x)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=str(REPO))
    assert result.returncode == 0, result.stderr


def test_lite_refuses_old_versions_other_weights_and_garbage(lite, kodim23_rgb):
    # Version 1 streams are a plain hyperprior model's: perceptual's (fidelity has context since stage 15)
    model, weights_hash = load_model("perceptual")
    header = api.Header("perceptual", weights_hash, api.quality_to_q16(0.5), 128, 128, version=1)
    streams = legacy_streams(model, kodim23_rgb[:128, :128], header.quality)
    v1 = Container(header, streams).to_bytes()
    assert psnr(api.decode_array(v1)[0], kodim23_rgb[:128, :128]) > 25  # the PyTorch backend still reads v1
    shipped_hash = load_model(SHIPPED)[1]
    v1_shipped = Container(api.Header(SHIPPED, shipped_hash, header.quality_q16, 128, 128, version=1), streams)
    with pytest.raises(FormatError, match="torch"):
        lite.decode(v1_shipped.to_bytes())

    data = bytearray(edgecodec.compress(kodim23_rgb[:64, :64], quality=0.5, model=SHIPPED))
    name_len = data[7]
    data[8 + name_len] ^= 0xFF  # first byte of the weights hash
    with pytest.raises(WeightsMismatchError):
        lite.decode(fix_crc(bytes(data)))
    with pytest.raises(FormatError):
        lite.decode(b"\x89EDC" + bytes(40))


def test_damaged_export_is_refused(exported, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    tables = copy / "tables.safetensors"
    raw = bytearray(tables.read_bytes())
    raw[-1] ^= 1
    tables.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="manifest"):
        LiteDecoder(copy)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("files"), "'files' must map"),
    (lambda m: m.pop("synthesis_halo"), "'synthesis_halo' must be"),
    (lambda m: m.update(weights_hash="xyz"), "'weights_hash' must be 16 hex digits"),
    (lambda m: m.update(model=7), "'model' must be"),
])
def test_a_hand_edited_manifest_is_a_clear_error_not_an_internal_one(exported, kodim23_rgb, tmp_path, capsys,
                                                                     edit, message):
    """Fields the lite coders read, missing or of the wrong type, were a KeyError or TypeError deep
    inside (exit 1, "internal error"); now exit 2 naming manifest.json. A JSON list: its format."""
    import shutil

    from edgecodec.cli import main

    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "in.edc").write_bytes(edgecodec.compress(kodim23_rgb[:64, :64], quality=0.5, model=SHIPPED))
    common = ["--backend", "onnx", "--onnx-dir", str(copy)]
    assert main(["decompress", str(tmp_path / "in.edc"), "-o", str(tmp_path / "out.png"), *common]) == 2
    assert_one_error_line(capsys.readouterr().err, "manifest.json is damaged", message)
    (copy / "manifest.json").write_text("[1, 2]")
    assert main(["decompress", str(tmp_path / "in.edc"), "-o", str(tmp_path / "out.png"), *common]) == 2
    assert_one_error_line(capsys.readouterr().err, "manifest.json", "unknown export format 'list'")
    assert not (tmp_path / "out.png").exists()


def test_a_manifest_claiming_another_models_weights_is_refused(exported, tmp_path):
    """The tables record the weights they were made from: a manifest edited to name another model
    (and its weights hash) decoded that model's files to noise (5 dB) with exit 0."""
    import shutil

    other = next(name for name in shipped_models() if name != SHIPPED)
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest.update(model=other, weights_hash=load_model(other)[1].hex())
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"its tables are of model '{SHIPPED}'.*manifest.json says '{other}'"):
        LiteDecoder(copy)
    LiteDecoder(exported)  # the untouched export loads


def test_a_foreign_manifest_and_a_missing_int8_synthesis_say_what_to_do(exported, tmp_path):
    """Another program's manifest.json (a web app's) was "unknown export format None", an export of
    a later export format did not say to export again, and int8=True on an export made without
    --int8 was a bare "has no decoder.int8.onnx" (the docstring promised it "if the export has one")."""
    foreign = tmp_path / "webapp"
    foreign.mkdir()
    (foreign / "manifest.json").write_text(json.dumps({"name": "My app", "start_url": "/"}))
    with pytest.raises(ValueError, match=r"no 'export_format', so \S*webapp is not an edgecodec export "
                                         r"\(create one with `edgecodec export onnx"):
        LiteDecoder(foreign)
    later = tmp_path / "later"
    later.mkdir()
    manifest = json.loads((exported / "manifest.json").read_text())
    (later / "manifest.json").write_text(json.dumps({**manifest, "export_format": "edgecodec-onnx-2"}))
    with pytest.raises(ValueError, match=r"unknown export format 'edgecodec-onnx-2' \(this edgecodec reads "
                                         r"'edgecodec-onnx-1': export the model again"):
        LiteDecoder(later)
    assert "decoder.int8.onnx" not in manifest["files"]
    with pytest.raises(FileNotFoundError, match=r"has no decoder.int8.onnx: it was exported without --int8 "
                                                r"\(`edgecodec export onnx --model NAME -o DIR --int8 IMAGES`"):
        LiteDecoder(exported, int8=True)


def test_an_export_is_readable_by_other_users(exported):
    """mkdtemp's 0700 folder and safetensors' 0600 file kept a decoder running as a service user
    out; the export follows the umask like any other output."""
    import os
    import stat

    from edgecodec.atomic import umask

    mask = umask()
    assert stat.S_IMODE(exported.stat().st_mode) == 0o777 & ~mask
    for path in exported.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path.name
    assert mask & 0o044 or os.access(exported / "tables.safetensors", os.R_OK)


def test_processes_starting_together_on_an_empty_cache_export_once(tmp_path, monkeypatch):
    """Several first uses at once (a folder of files decoded by parallel jobs): one exports, the
    others wait for it and use its export, instead of replacing its folder under its readers."""
    import threading
    import time

    from edgecodec.export import onnx as onnx_export

    monkeypatch.setenv("EDGECODEC_CACHE", str(tmp_path))
    calls = []
    real_export = onnx_export.export_onnx

    def slow_export(name, out, **kwargs):
        calls.append(name)
        time.sleep(0.5)  # long enough for the others to arrive while it works
        return real_export(name, out, **kwargs)
    monkeypatch.setattr(onnx_export, "export_onnx", slow_export)
    folders, errors = [], []

    def first_use():
        try:
            folders.append(onnx_export.ensure_export(SHIPPED))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=first_use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and len(calls) == 1 and len(set(folders)) == 1 and len(folders) == 3, (errors, calls)
    LiteDecoder(folders[0])  # intact
    assert onnx_export.ensure_export(SHIPPED, refresh=True) == folders[0] and len(calls) == 1  # intact: kept


def test_int8_calibration_with_only_small_images_is_a_clear_error(tmp_path):
    from edgecodec.export.int8 import calibration_latents

    model, _ = load_model(SHIPPED)
    paths = []
    for i, size in enumerate([(40, 30), (63, 200)]):
        paths.append(tmp_path / f"small{i}.png")
        Image.new("RGB", size, (i * 90, 50, 20)).save(paths[-1])
    with pytest.raises(ValueError, match="none of the 2 calibration image.s. is at least 64x64 pixels"):
        calibration_latents(model, paths)
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "ok.png")
    assert len(calibration_latents(model, [*paths, tmp_path / "ok.png"])) == 3  # one image, three qualities


def test_export_stopped_by_sigterm_leaves_nothing(tmp_path):
    """SIGTERM (a service manager, kill) ran no clean-up: the hidden temporary folder stayed. Now
    it ends as Ctrl+C does: exit 143, one line, nothing left."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "edgecodec.cli", "--threads", "1", "export", "onnx",
                             "--model", SHIPPED, "-o", str(tmp_path / "exp")], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".exp-") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip() == "edgecodec: terminated"
    assert list(tmp_path.iterdir()) == []


def test_manifest_records_the_weights_hash_and_files(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    _, weights_hash = load_model(SHIPPED)
    assert manifest["weights_hash"] == weights_hash.hex() and manifest["format_version"] == FORMAT_VERSION == 7
    assert {"encoder.onnx", "decoder.onnx", "hyper_encoder.onnx", "hyper_decoder.onnx",
            "tables.safetensors"} <= set(manifest["files"])


def test_integer_convolution_is_exact(rng=np.random.RandomState(0)):
    """The float64 (transposed) convolution of integers equals an int64 loop over PyTorch's definition."""
    b = rng.randint(-2**20, 2**20, 5).astype(np.int64)
    x = rng.randint(-2**24, 2**24, (4, 6, 7)).astype(np.int64)
    for transposed, stride, padding, output_padding in ((False, 1, 1, 0), (False, 2, 2, 0), (True, 2, 2, 1)):
        k = 5 if padding == 2 else 3
        shape = (4, 5, k, k) if transposed else (5, 4, k, k)
        w = rng.randint(-2**14, 2**14, shape).astype(np.int64)
        layer = IntegerLayer(w.astype(np.float64), b.astype(np.float64), stride, padding, transposed, output_padding)
        out = _conv(x.astype(np.float64), layer)
        if transposed:  # out[o, i*s - p + ky, j*s - p + kx] += x[c, i, j] * w[c, o, ky, kx]
            oh, ow = (6 - 1) * stride - 2 * padding + k + output_padding, (7 - 1) * stride - 2 * padding + k + output_padding
            ref = np.tile(b[:, None, None], (1, oh, ow))
            for i in range(6):
                for j in range(7):
                    for ky in range(k):
                        for kx in range(k):
                            yy, xx = i * stride - padding + ky, j * stride - padding + kx
                            if 0 <= yy < oh and 0 <= xx < ow:
                                ref[:, yy, xx] += (x[:, i, j, None] * w[:, :, ky, kx]).sum(axis=0)
        else:  # out[o, y, x] = sum x_padded[c, y*s + ky, x*s + kx] * w[o, c, ky, kx]
            xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
            oh, ow = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
            ref = np.zeros((5, oh, ow), dtype=np.int64)
            for i in range(oh):
                for j in range(ow):
                    patch = xp[:, i * stride: i * stride + k, j * stride: j * stride + k]
                    ref[:, i, j] = (w * patch[None]).sum(axis=(1, 2, 3)) + b
        assert out.shape == ref.shape and np.array_equal(out.astype(np.int64), ref), (transposed, stride)


def test_matmul_graph_is_a_single_float64_matmul():
    """The shipped graph file is what onnx.helper builds for c = a @ b in float64 (rebuild it with this)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "exact_matmul_f64",
                              [helper.make_tensor_value_info("a", TensorProto.DOUBLE, ["m", "k"]),
                               helper.make_tensor_value_info("b", TensorProto.DOUBLE, ["k", "n"])],
                              [helper.make_tensor_value_info("c", TensorProto.DOUBLE, ["m", "n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgecodec")
    model.ir_version = 8
    onnx.checker.check_model(model)
    assert hyper.MATMUL_GRAPH.read_bytes() == model.SerializeToString()


def test_exact_matmul_gives_numpy_bits_through_onnxruntime(monkeypatch, rng=np.random.RandomState(4)):
    """Integer products near the exactness bound: onnxruntime's kernels, numpy's and an int64
    reference agree bit for bit; without onnxruntime the numpy fallback is used."""
    a = rng.randint(-2**17, 2**17, (300, 1600)).astype(np.int64)
    b = rng.randint(-2**27, 2**27, (1600, 70)).astype(np.int64)
    reference = a @ b
    assert np.abs(reference).max() > 2**40
    assert hyper._onnxruntime_matmul() is not None
    assert np.array_equal(hyper.exact_matmul(a.astype(np.float64), b.astype(np.float64)), reference)
    monkeypatch.setattr(hyper, "_onnxruntime_matmul", lambda: None)
    assert np.array_equal(hyper.exact_matmul(a.astype(np.float64), b.astype(np.float64)), reference)


def test_index_lookup_equals_compressai_build_indexes():
    """Every fixed-point scale near each table boundary, and far outside the table, gets the index
    CompressAI's GaussianConditional.build_indexes gives."""
    from compressai.entropy_models import GaussianConditional

    model = load_model(SHIPPED)[0]
    entropy = model.exact_entropy()
    exact = entropy.hyper
    table = exact.scale_table
    boundaries = np.floor(table * 2.0**12)
    v = np.concatenate([(boundaries[:, None] + np.arange(-2, 3)).ravel(), [-2.0**27, -1, 0, 1, 2.0**27]])
    got = exact.table_indexes(v)
    gc = GaussianConditional(table.tolist())
    expected = gc.build_indexes(torch.from_numpy(v / 2.0**12)).numpy()
    assert np.array_equal(got, expected)
    indexes, _ = exact.params(np.zeros((model.config.hyper_channels, 1, 1), np.int32), entropy.z_gain_fixed(0.5))
    assert indexes.dtype == np.int32 and indexes.min() >= 0 and indexes.max() < len(table)


def test_uint8_conversion_matches_the_torch_decoder():
    """Halves round to even, NaN becomes 0, infinities clip: the same bytes as codec.api's conversion."""
    x = np.concatenate([np.arange(-2, 514) / 510.0, [np.nan, np.inf, -np.inf, 0.5 / 255, 1.5 / 255]])
    x = np.tile(x.astype(np.float32), (3, 2, 1))
    expected = api._to_uint8(torch.from_numpy(x.copy())[None], 2, x.shape[2])
    assert np.array_equal(_to_uint8(x.copy()), expected)


def test_integer_hyper_synthesis_matches_the_float_one():
    model, _ = load_model(SHIPPED)
    hyper = model.latent_codec["hyper"]
    z_symbols = np.random.RandomState(1).randint(-3, 4, (model.config.hyper_channels, 3, 4)).astype(np.int32)
    exact = model.exact_entropy()
    raw = exact.hyper.raw(z_symbols, exact.z_gain_fixed(0.5)) / 2.0**12
    g = torch.from_numpy(exact.z_gain_fixed(0.5) / 2.0**16).float()
    z_hat = (torch.from_numpy(z_symbols).float() + hyper.entropy_bottleneck.quantiles[:, 0, 1, None, None]) * g[:, None, None]
    with torch.no_grad():
        ref = hyper.h_s(z_hat[None])[0].numpy()
    assert np.abs(raw - ref).max() < 0.02 * max(1.0, np.abs(ref).max() / 10)


@pytest.mark.parametrize("name", shipped_models())
def test_fixed_point_gains_are_far_from_rounding_boundaries(name):
    """A platform whose exp() differs by a few ulps must still get the same fixed-point gains."""
    model, _ = load_model(name)
    for table in (model.log_z_gain_inv, model.log_y_gain_inv):  # y's: format 7's ratios (lite/qmap.py)
        assert gain_margin(table.detach().numpy(), model.config.min_level) > 1e-9


# Channel 84 of fidelity stage 46's log_y_gain_inv as training left it: at one quality its
# fixed-point gain lay 1.3e-10 units from a rounding boundary (the test above failed on the file).
AT_A_BOUNDARY = ["0x1.4c5eb2p+0", "0x1.5a9834p-1", "0x1.8fe07cp-3", "-0x1.c90940p-3", "-0x1.460b38p-1",
                 "-0x1.1779dcp+0"]


def test_saved_models_have_gain_tables_clear_of_rounding_boundaries(tmp_path):
    """A trained table can land within 1e-9 of a rounding boundary; save_model moves the channel
    one float32 step (export-model and every shipped file go through it)."""
    from edgecodec.lite.hyper import clear_of_rounding_boundaries, gain_margins
    from edgecodec.zoo import save_model

    column = np.array([[float.fromhex(v)] for v in AT_A_BOUNDARY], np.float32)
    assert gain_margins(column, -0.5)[0] < 1e-9
    cleared = clear_of_rounding_boundaries(column, -0.5)
    assert gain_margins(cleared, -0.5)[0] > 1e-9
    assert np.array_equal(cleared, np.nextafter(column, np.float32(np.inf)))  # one step, nothing more
    from safetensors.torch import load_file

    from edgecodec.models import create_model

    model = create_model("crb", **TINY, min_level=-0.5).eval()  # fidelity's min_level, as the column's
    assert model.config.levels == len(AT_A_BOUNDARY)
    with torch.no_grad():
        model.log_y_gain_inv[:, :1] = torch.from_numpy(column)
    weights = save_model(model, tmp_path, "tiny", {})
    saved = load_file(str(weights))["log_y_gain_inv"].numpy()
    assert gain_margins(saved, model.config.min_level).min() > 1e-9
    assert np.array_equal(saved[:, 1:], model.log_y_gain_inv.detach().numpy()[:, 1:])  # the others as trained


def test_cli_decompress_with_the_onnx_backend(exported, kodim23_rgb, tmp_path):
    from PIL import Image

    src = tmp_path / "k.png"
    alpha = np.zeros((128, 192), np.uint8)
    alpha[20:100, 30:170] = 255  # a kept alpha plane (format version 4) decodes on both backends
    Image.fromarray(np.dstack([kodim23_rgb[:128, :192], alpha]), "RGBA").save(src)
    assert run_cli("compress", src, "-o", tmp_path / "k.edc", "--model", SHIPPED).returncode == 0
    assert (tmp_path / "k.edc").read_bytes()[4] == 4
    result = run_cli("decompress", tmp_path / "k.edc", "-o", tmp_path / "k_onnx.png", "--backend", "onnx",
                     "--onnx-dir", exported)
    assert result.returncode == 0, result.stderr
    assert run_cli("decompress", tmp_path / "k.edc", "-o", tmp_path / "k_torch.png").returncode == 0
    a = np.array(Image.open(tmp_path / "k_onnx.png"))
    b = np.array(Image.open(tmp_path / "k_torch.png"))
    assert a.shape == b.shape == (128, 192, 4)
    assert np.abs(a.astype(int) - b).max() <= 1
    assert np.array_equal(a[..., 3], alpha) and np.array_equal(b[..., 3], alpha)
    part = run_cli("decompress", tmp_path / "k.edc", "-o", tmp_path / "part.png", "--backend", "onnx",
                   "--onnx-dir", exported, "--region", "25,15,100,90")
    assert part.returncode == 0, part.stderr
    assert np.array_equal(np.array(Image.open(tmp_path / "part.png")), a[15:105, 25:125])
    for extra in (["--onnx-dir", exported], ["--int8"]):  # without --backend onnx: refused, not ignored
        ignored = run_cli("decompress", tmp_path / "k.edc", "-o", tmp_path / "ignored.png", *extra)
        assert ignored.returncode == 2
        assert_one_error_line(ignored.stderr, f"{extra[0]} goes with --backend onnx")
        assert not (tmp_path / "ignored.png").exists()
    (tmp_path / "bad.edc").write_bytes(b"\x89EDC\x03" + bytes(30))
    bad = run_cli("decompress", tmp_path / "bad.edc", "-o", tmp_path / "bad.png", "--backend", "onnx",
                  "--onnx-dir", exported)
    assert bad.returncode == 4
    assert_one_error_line(bad.stderr, "edc")
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize("name", [SHIPPED, "tiny"])
def test_subpixel_synthesis_equals_the_transposed_one(name):
    from edgecodec.export.onnx import _Synthesis

    model, _ = load_model(name)
    y = torch.randn(1, model.config.latent_channels, 5, 7)
    synthesis = _Synthesis(model).eval()
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in synthesis.modules())
    with torch.no_grad():
        assert torch.allclose(synthesis(y), model._image(y), atol=1e-5)


def test_exported_synthesis_shuffles_with_col2im_and_equals_torchs(exported):
    """The exporter rewrites PixelShuffle's DepthToSpace as Col2Im (faster in onnxruntime): no
    DepthToSpace is left, and the graph still computes the model's synthesis at odd, non-square
    sizes (the Col2Im output size comes from the input's shape)."""
    import onnx

    from edgecodec.lite.runtime import import_onnxruntime

    ort = import_onnxruntime()  # telemetry off, as edgecodec's own sessions

    ops = [node.op_type for node in onnx.load(str(exported / "decoder.onnx")).graph.node]
    assert "DepthToSpace" not in ops and ops.count("Col2Im") == 4  # one per synthesis upsampling
    model, _ = load_model(SHIPPED)
    session = ort.InferenceSession(str(exported / "decoder.onnx"), providers=["CPUExecutionProvider"])
    for shape in ((5, 7), (3, 2)):
        y = torch.randn(1, model.config.latent_channels, *shape)
        with torch.no_grad():
            expected = model._image(y).numpy()
        out = session.run(None, {"y_hat": y.numpy()})[0]
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, atol=1e-5)


def test_lite_decoder_survives_mutated_files(lite, kodim23_rgb):
    """The fuzzer's mutations (benchmarks/fuzz.py) fed to the lite decoder: every case decodes or
    raises one of edgecodec's own errors (the long campaign covers the shared PyTorch path)."""
    import random

    sys.path.insert(0, str(REPO / "benchmarks"))
    import fuzz

    from edgecodec.errors import EdgecodecError

    seeds = [edgecodec.compress(kodim23_rgb[:64, :128], quality=0.3, model=SHIPPED),
             api.Encoder(api.load_image(kodim23_rgb[:320, :320]), SHIPPED, tile=16).encode(30000)]
    rng, outcomes = random.Random(11), {"decoded": 0, "rejected": 0}
    for _ in range(300):
        ops, data, _ = fuzz.make_case(rng, seeds)
        try:
            lite.decode(data, max_pixels=1 << 20)
            outcomes["decoded"] += 1
        except EdgecodecError:
            outcomes["rejected"] += 1
    assert outcomes["decoded"] > 0 and outcomes["rejected"] > 0, outcomes


def test_a_damaged_cached_export_is_exported_again(kodim23_rgb, tmp_path, monkeypatch):
    from edgecodec.cli import main

    monkeypatch.setenv("EDGECODEC_CACHE", str(tmp_path / "cache"))
    edc = tmp_path / "k.edc"
    edc.write_bytes(edgecodec.compress(kodim23_rgb[:64, :128], quality=0.5, model=SHIPPED))
    assert main(["decompress", str(edc), "-o", str(tmp_path / "a.png"), "--backend", "onnx"]) == 0
    (decoder,) = (tmp_path / "cache").rglob("decoder.onnx")
    with open(decoder, "ab") as f:
        f.write(b"damage")
    assert main(["decompress", str(edc), "-o", str(tmp_path / "b.png"), "--backend", "onnx"]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert not decoder.read_bytes().endswith(b"damage")
    assert main(["decompress", str(edc), "-o", str(tmp_path / "c.png"), "--backend", "onnx", "--int8"]) == 2


# --- the torch-free encoder -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported_perceptual(tmp_path_factory):
    from edgecodec.export.onnx import export_onnx

    return export_onnx("perceptual", tmp_path_factory.mktemp("export") / "perceptual")


def test_lite_encoder_writes_the_pytorch_encoders_files(exported, exported_perceptual, lite, images):
    """LiteEncoder's files decode with both decoders, and are the PyTorch encoder's files but for
    latent values whose float analysis lands on a rounding boundary (none here; on all of Kodak
    at three qualities, 5 values in 983,040 for perceptual, and 1,868 in 1,179,648 for fidelity, whose
    context passes a changed anchor on to its neighbours: benchmarks/lite_encoder.py)."""
    from edgecodec.lite import LiteEncoder

    for folder, model in ((exported, SHIPPED), (exported_perceptual, "perceptual")):
        encoder, decoder = LiteEncoder(folder, threads=1), LiteDecoder(folder, threads=1)
        for rgb in images:
            for q in (0.0, 0.6, 1.0):
                data, reference = encoder.encode(rgb, q), edgecodec.compress(rgb, quality=q, model=model)
                header = Container.from_bytes(data).header
                assert (header.model, header.version, header.quality_q16) == (model, 3, round(q * 65535))
                ours, theirs = decoder.decode_latent(data).y_hat, decoder.decode_latent(reference).y_hat
                assert np.count_nonzero(ours != theirs) <= ours.size // 1000, (model, rgb.shape, q)
                assert abs(len(data) - len(reference)) <= len(reference) // 100 + 4
                torch_rgb, _ = api.decode_array(data)  # the PyTorch decoder reads it too
                assert np.abs(decoder.decode(data)[0].astype(int) - torch_rgb).max() <= 1
                assert abs(psnr(torch_rgb, rgb) - psnr(api.decode_array(reference)[0], rgb)) < 0.05


def test_lite_coders_read_and_write_quality_maps_as_the_pytorch_coders(exported, lite, kodim23_rgb):
    """Regions of interest (formats 7 and 5, and 6's files): the lite decoder decodes the PyTorch
    encoder's files, one piece and tiled, to the PyTorch decoder's pixels (within a level), and the
    lite encoder writes the same map and nearly the same file."""
    from edgecodec.lite import LiteEncoder

    rgb, roi = np.ascontiguousarray(kodim23_rgb[:320, :448]), [(200, 60, 120, 100), (0, 250, 30, 30)]
    one_piece = edgecodec.compress(rgb, quality=0.1, model=SHIPPED, roi=roi, roi_quality=0.9)
    tiled = api.Encoder(api.load_image(rgb), SHIPPED, tile=16, roi=roi, roi_quality=0.9).encode(api.quality_to_q16(0.1))
    in_cells = edgecodec.compress(rgb, quality=0.1, model=SHIPPED, roi=[(72, 72, 112, 112)], roi_quality=0.9)
    format6 = [(p.read_bytes(), 6) for p in sorted(FORMAT6.glob(f"{SHIPPED}-*.edc"))]
    assert len(format6) == 2  # one piece and tiled: see test_roi.py
    for data, version in ((one_piece, 7), (tiled, 7), (in_cells, 5), *format6):
        assert Container.from_bytes(data).header.version == version
        torch_rgb, _ = api.decode_array(data)
        assert np.abs(lite.decode(data)[0].astype(int) - torch_rgb).max() <= 1
    ours = LiteEncoder(exported, threads=1).encode(rgb, 0.1, roi=roi, roi_quality=0.9)
    assert Container.from_bytes(ours).extras["qlat"] == Container.from_bytes(one_piece).extras["qlat"]
    a, b = lite.decode_latent(ours).y_hat, lite.decode_latent(one_piece).y_hat
    assert np.count_nonzero(a != b) <= a.size // 1000
    assert abs(len(ours) - len(one_piece)) <= len(one_piece) // 100


def test_lite_encoder_searches_a_target_size_as_compress_does(exported, kodim23_rgb):
    from edgecodec.codec.rate_search import TOLERANCE
    from edgecodec.lite import LiteEncoder

    encoder, image = LiteEncoder(exported, threads=1), kodim23_rgb[:192, :256]
    low, high = len(encoder.encode(image, 0.0)), len(encoder.encode(image, 1.0))
    target = int((low * high) ** 0.5)
    data = encoder.encode(image, target_bytes=target)
    assert (1 - TOLERANCE) * target <= len(data) <= target
    assert data == edgecodec.compress(image, model=SHIPPED, target_size=target) or \
        abs(len(data) - len(edgecodec.compress(image, model=SHIPPED, target_size=target))) <= TOLERANCE * target
    assert encoder.encode(image, target_bytes=10**7) == encoder.encode(image, 1.0)  # unreachable: the best
    with pytest.raises(ValueError, match="target_bytes"):
        encoder.encode(image, target_bytes=0)
    with pytest.raises(ValueError, match="give quality or target_bytes, not both"):  # the quality was ignored
        encoder.encode(image, 0.3, target_bytes=target)
    assert encoder.encode(image) == encoder.encode(image, 0.5)  # the default quality


def test_lite_encoder_keeps_or_drops_alpha_and_refuses_what_it_cannot_code(exported, lite, kodim23_rgb):
    from edgecodec.lite import LiteEncoder

    encoder = LiteEncoder(exported, threads=1)
    rgba = np.dstack([kodim23_rgb[:64, :96], (kodim23_rgb[:64, :96, :1] > 100).astype(np.uint8) * 255])
    kept = encoder.encode(rgba, 0.5)
    assert Container.from_bytes(kept).header.version == 4
    assert np.array_equal(lite.decode(kept)[0][..., 3], rgba[..., 3])
    assert np.array_equal(np.array(edgecodec.decompress(kept))[..., 3], rgba[..., 3])
    dropped = Container.from_bytes(encoder.encode(rgba, 0.5, alpha="drop"))
    assert not dropped.extras and dropped.header.conversion_names() == ["alpha dropped"]
    for bad in (kodim23_rgb[..., 0], kodim23_rgb.astype(np.float32), kodim23_rgb[:0]):
        with pytest.raises(ValueError, match="uint8 array"):
            encoder.encode(bad)
    with pytest.raises(ValueError, match="quality"):
        encoder.encode(kodim23_rgb, 1.5)
    assert encoder.encode(rgba, np.float32(0.5)) == kept  # numpy's numbers too, as compress takes them
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 array"):
        encoder.encode_picture(rgba, 0.5)


def test_lite_encoder_checks_a_quality_as_compress_does_without_torch(exported, kodim23_rgb, tmp_path):
    """LiteEncoder repeated the quality check of the PyTorch coder's (codec_model.check_quality,
    in a module that imports torch) with its own types and words: "0.5" was a ValueError there and
    a TypeError in edgecodec.compress. Both now use codec.container.check_quality, torch-free."""
    import math

    from edgecodec.codec import container
    from edgecodec.lite import LiteEncoder
    from edgecodec.models import codec_model

    assert api.check_quality is container.check_quality and codec_model.check_quality is container.check_quality
    encoder, crop = LiteEncoder(exported, threads=1), kodim23_rgb[:64, :64]
    for bad in (1.5, -0.1, math.nan, "0.5", True, [0.5]):
        errors = []
        for code in (lambda: edgecodec.compress(crop, bad, model=SHIPPED), lambda: encoder.encode(crop, bad)):
            with pytest.raises((TypeError, ValueError)) as refused:
                code()
            errors.append((type(refused.value), str(refused.value)))
        assert errors[0] == errors[1], bad
    result = run_without(f"""
import math
from edgecodec.codec.container import check_quality
from edgecodec.lite import LiteEncoder
assert check_quality(0) == 0.0 and check_quality(1) == 1.0
encoder = LiteEncoder({str(exported)!r}, threads=1)
for bad, error in ((1.5, ValueError), (math.nan, ValueError), ("0.5", TypeError)):
    try:
        encoder.encode(__import__("numpy").zeros((16, 16, 3), "uint8"), bad)
    except error as exc:
        assert "quality must be" in str(exc), exc
    else:
        raise AssertionError(bad)
""", tmp_path)
    assert result.returncode == 0, result.stderr


def test_lite_encoder_tiles_large_images_as_the_pytorch_encoder_does(exported, kodim23_rgb, tmp_path):
    """Above 2 MP padded, both encoders code 32 x 32-latent tiles, the analysis window by window."""
    import shutil

    from edgecodec.lite import LiteEncoder

    big = np.tile(kodim23_rgb, (3, 3, 1))[:1300, :1900]  # 1344 x 1920 padded: 2.6 MP
    data = LiteEncoder(exported, threads=2).encode(big, 0.3)
    reference = edgecodec.compress(big, quality=0.3, model=SHIPPED)
    assert Container.from_bytes(data).header.tile == Container.from_bytes(reference).header.tile == 32
    decoder = LiteDecoder(exported, threads=2)
    ours, theirs = decoder.decode_latent(data).y_hat, decoder.decode_latent(reference).y_hat
    assert np.count_nonzero(ours != theirs) <= ours.size // 1000
    assert abs(len(data) - len(reference)) <= len(reference) // 100
    assert abs(psnr(api.decode_array(data)[0], big) - psnr(api.decode_array(reference)[0], big)) < 0.05
    # An export made before the manifest recorded the analysis halo cannot tile: it says so.
    old = tmp_path / "old-export"
    shutil.copytree(exported, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["analysis_halo"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="export the model again"):
        LiteEncoder(old, threads=1).encode(big, 0.3)
    assert LiteEncoder(old, threads=1).encode(kodim23_rgb[:64, :64], 0.3)  # one piece still works


def test_lite_encoder_runs_with_torch_and_pillow_blocked(exported, kodim23_rgb, tmp_path):
    rgb = kodim23_rgb[:128, :192]
    np.save(tmp_path / "in.npy", rgb)
    result = run_without(f"""
import numpy as np
from edgecodec.lite import LiteDecoder, LiteEncoder
data = LiteEncoder({str(exported)!r}, threads=1).encode(np.load({str(tmp_path / 'in.npy')!r}), 0.4)
open({str(tmp_path / 'out.edc')!r}, "wb").write(data)
LiteDecoder({str(exported)!r}, threads=1).decode(data)
""", tmp_path)
    assert result.returncode == 0, result.stderr
    data = (tmp_path / "out.edc").read_bytes()
    assert psnr(api.decode_array(data)[0], rgb) > 25
    assert len(data) <= len(edgecodec.compress(rgb, quality=0.4, model=SHIPPED)) * 1.01 + 4


def test_the_export_cache_renews_exports_that_predate_the_analysis_halo(tmp_path, monkeypatch):
    from edgecodec.export.onnx import ensure_export

    monkeypatch.setenv("EDGECODEC_CACHE", str(tmp_path))
    folder = ensure_export(SHIPPED)
    manifest = json.loads((folder / "manifest.json").read_text())
    halo = manifest.pop("analysis_halo")
    assert halo >= 1
    (folder / "manifest.json").write_text(json.dumps(manifest))  # as the cache holds exports made before it
    assert ensure_export(SHIPPED) == folder
    assert json.loads((folder / "manifest.json").read_text())["analysis_halo"] == halo  # exported again


def test_a_read_only_export_cache_serves_and_an_unwritable_one_says_what_to_do(tmp_path, monkeypatch, capsys):
    """A finished export was opened for its lock file before each use: a read-only cache (one built
    into a container image) failed with exit 2. Where no export can be written, exit 11 names the
    ways out (EDGECODEC_CACHE, --onnx-dir) instead of a usage error."""
    import errno

    from edgecodec import cli
    from edgecodec.export import onnx as onnx_export

    monkeypatch.setenv("EDGECODEC_CACHE", str(tmp_path / "cache"))
    folder = onnx_export.ensure_export(SHIPPED)

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))
    monkeypatch.setattr(onnx_export, "exclusive_lock", read_only)
    assert onnx_export.ensure_export(SHIPPED) == folder
    edc = tmp_path / "a.edc"
    edc.write_bytes(edgecodec.compress(synthetic_photo(np.random.RandomState(0), 64), model=SHIPPED))
    assert cli.main(["--threads", "1", "decompress", str(edc), "-o", str(tmp_path / "a.png"), "--backend",
                     "onnx"]) == 0
    monkeypatch.setenv("EDGECODEC_CACHE", str(tmp_path / "other"))
    capsys.readouterr()
    assert cli.main(["--threads", "1", "decompress", str(edc), "-o", str(tmp_path / "b.png"), "--backend",
                     "onnx"]) == 11
    assert_one_error_line(capsys.readouterr().err, "ONNX export cache", "EDGECODEC_CACHE", "--onnx-dir")
    assert not (tmp_path / "b.png").exists()


def test_command_line_compress_and_decompress_with_the_onnx_backend_need_no_torch(exported, kodim23_rgb, tmp_path):
    """`compress --backend onnx --onnx-dir DIR` and `decompress --backend onnx --onnx-dir DIR` run in a
    process where torch cannot be imported; the file keeps the source's header fields and extras as
    the PyTorch encoder's does, and decodes with it."""
    exif = Image.Exif()
    exif[0x010F] = "TestMaker"
    rgba = np.dstack([kodim23_rgb[:96, :128], (kodim23_rgb[:96, :128, :1] > 100).astype(np.uint8) * 255])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "in.png", exif=exif.tobytes())
    (tmp_path / "folder").mkdir()
    Image.fromarray(kodim23_rgb[:64, :96]).save(tmp_path / "folder" / "in.png")
    result = run_without(f"""
from edgecodec.cli import main
common = ["--backend", "onnx", "--onnx-dir", {str(exported)!r}]
code = main(["--threads", "1", "compress", {str(tmp_path / 'in.png')!r}, "-o", {str(tmp_path / 'lite.edc')!r},
             "--metadata", "keep", "--quality", "0.4", *common])
code = code or main(["--threads", "1", "decompress", {str(tmp_path / 'lite.edc')!r}, "-o",
                     {str(tmp_path / 'out.png')!r}, *common])
assert code == 0, f"exit code {{code}}"
import shutil  # a folder, without tqdm too (requirements-lite.txt has none): no progress bar, the same files
shutil.copytree({str(tmp_path / 'folder')!r}, {str(tmp_path / 'folder-in')!r})
code = main(["--threads", "1", "compress", {str(tmp_path / 'folder-in')!r}, "-o", {str(tmp_path / 'coded')!r},
             "--quality", "0.4", "-v", *common])
code = code or main(["--threads", "1", "decompress", {str(tmp_path / 'coded')!r}, "-o", {str(tmp_path / 'back')!r},
                     *common])
assert code == 0, f"exit code {{code}}"
""", tmp_path, blocked=("torch", "torchvision", "tqdm"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("1 written, 0 skipped (existing), 0 failed") == 2, result.stdout
    coded = Container.from_bytes((tmp_path / "coded" / "in.edc").read_bytes())
    assert coded.header == Container.from_bytes(edgecodec.compress(tmp_path / "folder" / "in.png", quality=0.4,
                                                                   model=SHIPPED)).header
    with Image.open(tmp_path / "back" / "in.png") as back:
        assert back.size == (96, 64)
    lite_file = Container.from_bytes((tmp_path / "lite.edc").read_bytes())
    reference = Container.from_bytes(edgecodec.compress(tmp_path / "in.png", quality=0.4, model=SHIPPED,
                                                        metadata="keep"))
    assert lite_file.header == reference.header and lite_file.extras == reference.extras
    assert set(lite_file.extras) == {"alph", "exif"}
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGBA" and np.array_equal(np.array(out)[..., 3], rgba[..., 3])
        assert out.getexif().get(0x010F) == "TestMaker"
        torch_decoded = np.array(edgecodec.decompress(tmp_path / "lite.edc"))
        assert np.abs(np.array(out)[..., :3].astype(int) - torch_decoded[..., :3]).max() <= 1


def test_onnx_backend_without_torch_and_without_onnx_dir_says_what_to_give(kodim23_rgb, tmp_path):
    """The export cache is filled with PyTorch: without it, the message names --onnx-dir (it was
    "internal error: ModuleNotFoundError: No module named 'torch'")."""
    (tmp_path / "in.edc").write_bytes(edgecodec.compress(kodim23_rgb[:64, :64], quality=0.5, model=SHIPPED))
    result = run_without(f"""
import sys
from edgecodec.cli import main
sys.exit(main(["decompress", {str(tmp_path / 'in.edc')!r}, "-o", {str(tmp_path / 'out.png')!r}, "--backend", "onnx"]))
""", tmp_path, blocked=("torch", "torchvision"))
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result.stderr, "without PyTorch, --backend onnx needs --onnx-dir")
    assert not (tmp_path / "out.png").exists()


def test_without_torch_compress_and_the_torch_backend_say_what_to_give(kodim23_rgb, tmp_path):
    """compress --backend onnx without --model imported torch for the default model's name, and a
    command on the PyTorch backend: both were "internal error: ModuleNotFoundError: ... 'torch'"."""
    Image.fromarray(kodim23_rgb[:64, :64]).save(tmp_path / "in.png")
    (tmp_path / "in.edc").write_bytes(edgecodec.compress(kodim23_rgb[:64, :64], quality=0.5, model=SHIPPED))
    result = run_without(f"""
import sys
from edgecodec.cli import main
assert main(["compress", {str(tmp_path / 'in.png')!r}, "-o", {str(tmp_path / 'a.edc')!r}, "--backend", "onnx"]) == 2
assert main(["decompress", {str(tmp_path / 'in.edc')!r}, "-o", {str(tmp_path / 'b.png')!r}]) == 2
""", tmp_path, blocked=("torch", "torchvision"))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and "without PyTorch, --backend onnx needs --onnx-dir" in lines[0], result.stderr
    assert lines[1].startswith("edgecodec: error: PyTorch is not installed, and `edgecodec decompress` needs it")
    assert not (tmp_path / "a.edc").exists() and not (tmp_path / "b.png").exists()


def test_the_pytorch_api_without_torch_says_what_to_use_instead(tmp_path):
    """On a device set up for the lite coders, edgecodec.compress / decompress / read_header were a
    bare "No module named 'torch'", where the command line says what to use instead."""
    result = run_without("""
import edgecodec
for name in ("compress", "decompress", "read_header"):
    try:
        getattr(edgecodec, name)
    except ImportError as exc:
        assert exc.name == "torch", exc.name
        print(exc)
    else:
        raise AssertionError(name)
assert edgecodec.EdgecodecError.__name__ == "EdgecodecError"  # torch-free, still there
""", tmp_path, blocked=("torch", "torchvision"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    for name, line in zip(("compress", "decompress", "read_header"), lines):
        assert line.startswith(f"edgecodec.{name} is the PyTorch codec (") and "torch" in line.split(";")[0], line
        assert "without PyTorch and Pillow, code with edgecodec.lite's LiteEncoder and LiteDecoder" in line, line


def test_a_broken_torch_keeps_its_own_import_error(tmp_path):
    """The pointer to edgecodec.lite is for a machine without torch: an installed torch that fails
    to import (a mismatched build) keeps its own error, which says what is wrong."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text('raise ImportError("a broken torch build", name="torch")\n')
    result = subprocess.run([sys.executable, "-c", "import edgecodec\ntry:\n    edgecodec.compress\n"
                             "except ImportError as exc:\n    print(exc)"], capture_output=True, text=True,
                            timeout=120, env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "a broken torch build", result.stdout


def test_without_pillow_the_command_line_says_so(exported, kodim23_rgb, tmp_path):
    """A device set up for edgecodec.lite (no torch, no Pillow): every command was "internal error:
    ModuleNotFoundError: No module named 'PIL'"."""
    (tmp_path / "in.edc").write_bytes(edgecodec.compress(kodim23_rgb[:64, :64], quality=0.5, model=SHIPPED))
    result = run_without(f"""
import sys
from edgecodec.cli import main
assert main(["decompress", {str(tmp_path / 'in.edc')!r}, "-o", {str(tmp_path / 'b.png')!r}, "--backend", "onnx",
             "--onnx-dir", {str(exported)!r}]) == 2
""", tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgecodec: error: Pillow is not installed, and `edgecodec decompress`")
    assert not (tmp_path / "b.png").exists()


def test_info_runs_without_pillow_and_torch(tmp_path):
    """info only parses a header (codec/container.py): on a lite install (no torch, no Pillow) it
    was refused with "Pillow is not installed, and `edgecodec info` needs it"."""
    result = run_without(f"""
import json
from edgecodec.cli import main
assert main(["info", {str(FORMAT6 / 'fidelity-tiled.edc')!r}]) == 0
assert main(["info", "--json", {str(FORMAT6 / 'fidelity-whole.edc')!r}, {str(FORMAT6 / 'perceptual-whole.edc')!r}]) == 0
""", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    assert "model: fidelity" in result.stdout and "extras: quality map" in result.stdout, result.stdout
    assert '"model": "perceptual"' in result.stdout, result.stdout


def test_decompress_int8_help_says_an_export_without_it_is_refused(tmp_path, capsys):
    """The help said "the int8 synthesis, if exported", as if an export without decoder.int8.onnx
    fell back to the fp32 synthesis: LiteDecoder refuses it (FileNotFoundError saying how to add it,
    exit 2), and without --onnx-dir (the cache's exports are fp32) --int8 is refused too."""
    from edgecodec.cli import main

    with pytest.raises(SystemExit):
        main(["decompress", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "if exported" not in text
    assert "--int8 --backend onnx with --onnx-dir: decode with the int8 synthesis" in text, text
    assert "an export without it is refused (exit 2)" in text, text
    assert main(["decompress", str(FORMAT6 / "fidelity-whole.edc"), "-o", str(tmp_path / "x.png"), "--backend",
                 "onnx", "--int8"]) == 2
    assert_one_error_line(capsys.readouterr().err, "--int8 needs --onnx-dir")
    assert not (tmp_path / "x.png").exists()


def test_lite_coders_refuse_a_bad_thread_count(exported):
    """onnxruntime's refusal was a pybind TypeError naming no argument, and -1 was taken."""
    from edgecodec.lite import LiteDecoder, LiteEncoder

    for coder in (LiteDecoder, LiteEncoder):
        with pytest.raises(TypeError, match="threads"):
            coder(exported, threads=2.5)
        with pytest.raises(ValueError, match="threads must be 1 or more"):
            coder(exported, threads=-1)
        coder(exported, threads=np.int64(1))  # numpy's integers and 0 (all cores) as before
        coder(exported, threads=0)


def test_onnx_backend_compress_refuses_what_it_does_not_do(exported, kodim23, tmp_path, capsys):
    from edgecodec.cli import main

    out = tmp_path / "x.edc"
    for extra, fragment in ((["--target-psnr", "30"], "at a --quality"), (["--refine", "5"], "at a --quality"),
                            (["--metrics"], "at a --quality"),
                            (["--onnx-dir", str(exported), "--model", "perceptual"], "not 'perceptual'")):
        assert main(["compress", str(kodim23), "-o", str(out), "--backend", "onnx", *extra]) == 2, extra
        assert_one_error_line(capsys.readouterr().err, fragment)
    assert main(["compress", str(kodim23), "-o", str(out), "--onnx-dir", str(exported)]) == 2
    assert_one_error_line(capsys.readouterr().err, "--onnx-dir goes with --backend onnx")
    assert not out.exists()
    # A target size is searched on the lite encoder's files, as the PyTorch encoder's are.
    assert main(["compress", str(kodim23), "-o", str(out), "--backend", "onnx", "--onnx-dir", str(exported),
                 "--target-size", "12KB"]) == 0
    assert 12000 * 0.97 <= out.stat().st_size <= 12000
    assert "not reachable" not in capsys.readouterr().out


def test_a_folder_run_with_the_onnx_backend_loads_the_encoder_once(exported_perceptual, kodim23_rgb, tmp_path,
                                                                    monkeypatch):
    """Without --model the default model's export is loaded for the first file and reused (the
    cache of coders was keyed by the name before the default filled it in: one load a file)."""
    import edgecodec.export.onnx as onnx_export
    import edgecodec.lite as lite_package
    from edgecodec.cli import main

    loads = []

    class CountingEncoder(lite_package.LiteEncoder):
        def __init__(self, *args, **kwargs):
            loads.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(lite_package, "LiteEncoder", CountingEncoder)
    monkeypatch.setattr(onnx_export, "ensure_export", lambda model, refresh=False, weights_hash=None: exported_perceptual)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(kodim23_rgb[64 * i: 64 * i + 64, :96]).save(src / f"{i}.png")
    assert main(["compress", str(src), "-o", str(tmp_path / "out"), "--backend", "onnx", "-q"]) == 0
    assert len(list((tmp_path / "out").glob("*.edc"))) == 3
    assert loads == [exported_perceptual]


def test_lite_decoder_says_it_takes_bytes(exported, tmp_path):
    """A path or a file object gave "not an .edc file" (bytes(Path) is its text) or a TypeError
    from deep inside."""
    from pathlib import Path

    data = api.compress(synthetic_photo(np.random.RandomState(0), 64), model=SHIPPED)
    path = tmp_path / "x.edc"
    path.write_bytes(data)
    decoder = LiteDecoder(exported, threads=1)
    for wrong in (path, str(path)):
        with pytest.raises(TypeError, match="expected an .edc file's bytes, not"):
            decoder.decode(wrong)
    with open(path, "rb") as f, pytest.raises(TypeError, match="BufferedReader"):
        decoder.decode(f)
    for right in (data, bytearray(data), memoryview(data), Path(path).read_bytes()):
        assert np.array_equal(decoder.decode(right)[0], decoder.decode(data)[0])
