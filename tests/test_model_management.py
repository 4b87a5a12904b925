"""Model management as a user with their own models meets it: `edgecodec models`, `--model`, and
`export-model` names (README, Models: Where models are found)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import SHIPPED, assert_one_error_line, make_tiny_run
from PIL import Image

from edgecodec import cli


def main(*args) -> int:
    return cli.main([str(a) for a in args])


def test_compress_refuses_a_model_it_cannot_use_once_before_writing(tmp_path, capsys, tiny_models):
    """A folder input with `--model nosuch` failed every file (exit 10) and left an empty output
    folder; `--model ""` (a script's unset variable) coded with the default model in silence; a
    path was "invalid model name", without saying how a model in a folder is used."""
    images = tmp_path / "in"
    images.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(images / name)
    weights = tiny_models["a"] / "tiny.safetensors"
    for model, fragment in (("nosuch", "unknown model 'nosuch'"), ("", "--model is empty"),
                            (weights, "takes a model's name, not a file"), ("tiny.json", "--model tiny ")):
        out = tmp_path / "out"
        assert main("compress", images, "-o", out, "--model", model, "-q") == 9, model
        assert_one_error_line(capsys.readouterr().err, fragment)
        assert not out.exists(), model
        assert main("compress", images / "a.png", "-o", tmp_path / "a.edc", "--model", model) == 9, model
        assert_one_error_line(capsys.readouterr().err, fragment)
        assert not (tmp_path / "a.edc").exists()
    assert main("export", "onnx", "--model", "", "-o", tmp_path / "onnx") == 9
    assert_one_error_line(capsys.readouterr().err, "invalid model name ''")
    assert not (tmp_path / "onnx").exists()
    assert main("compress", images, "-o", tmp_path / "out", "--model", "tiny", "-q") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.edc", "b.edc"]


def test_models_says_what_a_name_hides_and_what_is_no_model(tmp_path, capsys, monkeypatch, tiny_models):
    """Two folders on EDGECODEC_MODEL_PATH holding "tiny": `models` listed the first alone, with
    nothing to tell that the second exists (its files still decode); a mistyped folder on the path,
    or weights without their card, were passed over in silence ("unknown model")."""
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "orphan.safetensors").write_bytes((tiny_models["a"] / "tiny.safetensors").read_bytes())
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", os.pathsep.join(
        map(str, [tiny_models["a"], tiny_models["b"], tmp_path / "typo", lone])))
    assert main("models") == 0
    out, err = capsys.readouterr()
    line = next(row for row in out.splitlines() if row.startswith("tiny:"))
    assert f"It hides {tiny_models['b'] / 'tiny.safetensors'}" in line
    assert "hides" not in next(row for row in out.splitlines() if row.startswith(f"{SHIPPED}:"))
    assert f"EDGECODEC_MODEL_PATH names {tmp_path / 'typo'}, which is not a folder" in err
    assert f"{lone / 'orphan.safetensors'} has no orphan.json beside it" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2
    assert main("models", "--json") == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed["tiny"]["weights"] == str(tiny_models["a"] / "tiny.safetensors")
    assert listed["tiny"]["hides"] == [str(tiny_models["b"] / "tiny.safetensors")]
    assert listed[SHIPPED]["hides"] == [] and "orphan" not in listed
    # one folder under two spellings (a relative entry, a link) hides nothing: it said a model hid itself
    link = tmp_path / "link"
    link.symlink_to(tiny_models["a"], target_is_directory=True)
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", os.pathsep.join(map(str, [link, tiny_models["a"]])))
    assert main("models") == 0
    assert "hides" not in capsys.readouterr().out


def test_compress_with_an_export_of_another_model_is_refused_once(tmp_path, capsys, tiny_models):
    """`--onnx-dir` of an export of another model than --model failed every file of a folder
    (exit 10, an empty output folder); `--model ""` with it took the export's model in silence."""
    export = tmp_path / "onnx"
    assert main("export", "onnx", "--model", "tiny", "-o", export) == 0
    images = tmp_path / "in"
    images.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(images / name)
    capsys.readouterr()
    for model, status, fragment in ((SHIPPED, 2, "is an export of model 'tiny'"), ("", 9, "--model is empty")):
        out = tmp_path / "out"
        assert main("compress", images, "-o", out, "--backend", "onnx", "--onnx-dir", export, "--model", model,
                    "-q") == status, model
        assert_one_error_line(capsys.readouterr().err, fragment)
        assert not out.exists(), model
    assert main("compress", images, "-o", tmp_path / "out", "--backend", "onnx", "--onnx-dir", export, "-q") == 0


def test_export_model_refuses_a_name_differing_only_in_case(tmp_path, capsys, monkeypatch):
    """`--name M` beside a model `m`, or `--name Fidelity` in the user model folder: two models a
    user takes for one, and one file where case is ignored (macOS, Windows); exported silently."""
    (tmp_path / "Case").touch()
    if (tmp_path / "case").exists():  # `m` and `M` are one file here: the listing below cannot hold both
        pytest.skip("a file system that ignores case")
    run_dir = tmp_path / "run"
    make_tiny_run(run_dir)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    out = tmp_path / "models"
    assert main("export-model", run_dir, "--name", "m", "--out", out) == 0
    capsys.readouterr()
    assert main("export-model", run_dir, "--name", "M", "--out", out) == 8
    assert_one_error_line(capsys.readouterr().err, "'M' differs only in case from the model 'm'", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["m.json", "m.safetensors"]
    twin = SHIPPED.capitalize()
    assert main("export-model", run_dir, "--name", twin) == 8  # the user model folder, searched
    assert_one_error_line(capsys.readouterr().err, f"differs only in case from the model {SHIPPED!r}")
    assert not (tmp_path / "data").exists()
    capsys.readouterr()
    assert main("export-model", run_dir, "--name", twin, "--out", tmp_path / "elsewhere") == 0  # not searched
    err = capsys.readouterr().err  # and said so: `compress --model` would not find it there
    assert f"{tmp_path / 'elsewhere'} is not a folder models are looked up in" in err and "Traceback" not in err
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", os.pathsep.join([str(out), os.environ["EDGECODEC_MODEL_PATH"]]))
    assert main("export-model", run_dir, "--name", "M", "--out", out, "--force") == 0
    assert "note:" not in capsys.readouterr().err  # a folder on the model path
    assert sorted(p.name for p in out.iterdir()) == ["M.json", "M.safetensors", "m.json", "m.safetensors"]
