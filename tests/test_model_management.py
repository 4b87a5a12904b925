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


def test_a_name_whose_card_or_weights_is_missing_is_explained(tmp_path, capsys, monkeypatch, tiny_models):
    """`compress --model orphan` with orphan.safetensors (no card) in a model folder said only
    "unknown model": the error names the lone file and why it is no model."""
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "orphan.safetensors").write_bytes((tiny_models["a"] / "tiny.safetensors").read_bytes())
    (lone / "cardonly.json").write_text((tiny_models["a"] / "tiny.json").read_text())
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", str(lone))
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(tmp_path / "a.png")
    for name, other in (("orphan", "orphan.json"), ("cardonly", "cardonly.safetensors")):
        assert main("compress", tmp_path / "a.png", "-o", tmp_path / "a.edc", "--model", name) == 9
        err = capsys.readouterr().err
        assert_one_error_line(err, f"unknown model '{name}'")
        assert f"has no {other} beside it, so it is no model" in err
    assert main("compress", tmp_path / "a.png", "-o", tmp_path / "a.edc", "--model", "nosuch") == 9
    assert "beside it" not in capsys.readouterr().err  # only the asked name's lone files are named


def test_a_card_that_does_not_fit_its_weights_is_named(tmp_path, capsys, monkeypatch, tiny_models):
    """A card whose config does not build a model was reported as "cannot be loaded from
    NAME.safetensors" (the weights were fine); one describing another configuration than the
    weights hold was exit 6 (a stream's weights mismatch) where the model is unusable (exit 9)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for suffix in (".safetensors", ".json"):
        (folder / f"tiny{suffix}").write_bytes((tiny_models["a"] / f"tiny{suffix}").read_bytes())
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", str(folder))
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(tmp_path / "a.png")
    card = json.loads((folder / "tiny.json").read_text())
    for change, fragment in (({"no_such_key": 1}, "unknown model config keys"),
                             ({"min_level": -1.0}, "describes another configuration")):
        (folder / "tiny.json").write_text(json.dumps({**card, "config": {**card["config"], **change}}))
        assert main("compress", tmp_path / "a.png", "-o", tmp_path / "a.edc", "--model", "tiny") == 9
        err = capsys.readouterr().err
        assert_one_error_line(err, f"its card {folder / 'tiny.json'}")
        assert fragment in err and "tiny.safetensors:" not in err
        assert not (tmp_path / "a.edc").exists()


def test_a_replaced_weights_file_is_loaded_again(tmp_path, monkeypatch, tiny_models):
    """The loaded-model cache was keyed on the file's modification time as a float, while the
    weights hash is keyed on nanoseconds and size: a replacement within the float's resolution
    (a copy keeping a time 1 ns off) decoded with the old model under the new weights' hash."""
    from safetensors.torch import load_file

    from edgecodec import zoo

    folder = tmp_path / "models"
    folder.mkdir()
    for suffix in (".safetensors", ".json"):
        (folder / f"tiny{suffix}").write_bytes((tiny_models["a"] / f"tiny{suffix}").read_bytes())
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", str(folder))
    weights = folder / "tiny.safetensors"
    model_a, hash_a = zoo.load_model("tiny")
    mtime_ns = weights.stat().st_mtime_ns
    weights.write_bytes((tiny_models["b"] / "tiny.safetensors").read_bytes())  # same size: same architecture
    os.utime(weights, ns=(mtime_ns + 1, mtime_ns + 1))
    model_b, hash_b = zoo.load_model("tiny")
    assert hash_b != hash_a and model_b is not model_a
    reference = load_file(str(tiny_models["b"] / "tiny.safetensors"))
    assert all(value.equal(reference[name]) for name, value in model_b.state_dict().items())


def test_models_says_when_a_cards_rate_was_measured_on_unknown_images(tmp_path, capsys, monkeypatch, tiny_models):
    """A card with a rate range but no record of what measured it (written by hand) was listed
    as measured on Kodak."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny.safetensors").write_bytes((tiny_models["a"] / "tiny.safetensors").read_bytes())
    card = json.loads((tiny_models["a"] / "tiny.json").read_text())
    (folder / "tiny.json").write_text(json.dumps({**card, "bpp_range": [0.1, 1.0]}))
    monkeypatch.setenv("EDGECODEC_MODEL_PATH", str(folder))
    assert main("models") == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("tiny:"))
    assert "0.100-1.000 bpp (where measured not recorded)" in line and "Kodak" not in line
    assert main("models") == 0  # a shipped card records its folder
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith(f"{SHIPPED}:"))
    assert " bpp on kodak" in line


def test_xdg_folders_are_used_when_absolute(tmp_path, monkeypatch):
    """The ONNX export cache ignored XDG_CACHE_HOME; an empty XDG_DATA_HOME put the user model
    folder under the working folder (the XDG spec: ignore an empty or relative value)."""
    from edgecodec import zoo
    from edgecodec.export.onnx import export_cache_dir

    monkeypatch.delenv("EDGECODEC_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert export_cache_dir("tiny", b"\x01" * 8) == tmp_path / "cache" / "edgecodec" / "onnx" / "tiny-0101010101010101"
    monkeypatch.setenv("EDGECODEC_CACHE", str(tmp_path / "mine"))
    assert export_cache_dir("tiny", b"\x01" * 8).parent == tmp_path / "mine" / "onnx"
    monkeypatch.delenv("EDGECODEC_CACHE")
    for value in ("", "relative"):
        monkeypatch.setenv("XDG_CACHE_HOME", value)
        monkeypatch.setenv("XDG_DATA_HOME", value)
        assert export_cache_dir("tiny", b"\x01" * 8).parent == tmp_path / "home" / ".cache" / "edgecodec" / "onnx"
        assert zoo.user_model_dir() == tmp_path / "home" / ".local" / "share" / "edgecodec" / "models"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert zoo.user_model_dir() == tmp_path / "data" / "edgecodec" / "models"


def test_xdg_dir_is_a_torch_free_path_helper(tmp_path, monkeypatch):
    """xdg_dir lived in zoo (which imports torch) though export/onnx.py used it too: it is
    edgecodec.paths.xdg_dir, which both use, and imports without torch."""
    import subprocess
    import sys
    from pathlib import Path

    from edgecodec import paths, zoo
    from edgecodec.export import onnx

    assert zoo.xdg_dir is paths.xdg_dir and onnx.xdg_dir is paths.xdg_dir
    default = tmp_path / "default"
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert paths.xdg_dir("XDG_STATE_HOME", default) == default
    for value, expected in ((str(tmp_path / "state"), tmp_path / "state"), ("", default), ("relative", default)):
        monkeypatch.setenv("XDG_STATE_HOME", value)
        assert paths.xdg_dir("XDG_STATE_HOME", default) == expected
    code = ("import sys\nsys.modules['torch'] = None\nfrom edgecodec.paths import xdg_dir\n"
            "print(xdg_dir('XDG_STATE_HOME', None))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "XDG_STATE_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == tmp_path


def test_python_dash_m_edgecodec_runs_the_command_line(tmp_path):
    """`python -m edgecodec` was "No module named edgecodec.__main__"."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "edgecodec", "models", "--json"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert SHIPPED in {m["name"] for m in json.loads(done.stdout)}
    done = subprocess.run([sys.executable, "-m", "edgecodec", "compress", str(tmp_path / "none.png"), "-o",
                           str(tmp_path / "x.edc")], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and done.stderr.startswith("edgecodec: error") and "Traceback" not in done.stderr
