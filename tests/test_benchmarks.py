"""The benchmark scripts: each imports and refuses a bad value in one line (exit 2), not with a
traceback or by measuring something else; the one that had stopped running runs."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"

# script -> arguments with one bad value, and what the error line says
BAD_VALUES = {
    "ablation_ceiling": (["--limit", "1", "--models", "/nonexistent"], "unknown model 'ablation-cae'"),
    "alpha": (["--bogus"], "unrecognized arguments: --bogus"),
    "edge": (["--models", "nosuch", "--no-install-size"], "unknown model 'nosuch'"),
    "feature_timings": (["--parts", "search,nosuch"], "unknown parts: nosuch"),
    "fuzz": (["--bogus"], "unrecognized arguments: --bogus"),
    "large": (["--sizes", "2k"], "--sizes: unknown 2k"),
    "lite_encoder": (["--qualities", "x"], "argument --qualities"),
    "perceptual_heldout": (["--images", "0"], "argument --images: must be 1 or more"),
    "published_params": (["--bogus"], "unrecognized arguments: --bogus"),
    "refine_perceptual": (["--steps", "0"], "argument --steps: must be 1 or more"),
    "refine_search": (["--qualities", "x"], "argument --qualities: expected comma-separated numbers"),
    "refine_settings": (["--settings", "0.05,0.5"], "expected LR,TAU_START,TAU_END"),
    "roi": (["--small", "2000"], "--small: sides from 1 to 511"),
    "speed": (["--threads", "0"], "argument --threads: expected whole numbers from 1"),
    "targets": (["--summary", "/nonexistent/summary.json"], "No such file or directory"),
    "train_throughput": (["--timed", "0"], "argument --timed: must be 1 or more"),
}


def run(script: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(BENCHMARKS / f"{script}.py"), *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def test_every_benchmark_is_covered():
    scripts = {p.stem for p in BENCHMARKS.glob("*.py")} - {"common"}
    assert scripts == set(BAD_VALUES)


@pytest.mark.parametrize("script", sorted(BAD_VALUES))
def test_a_bad_value_is_one_line_and_exit_2(script):
    args, message = BAD_VALUES[script]
    import tempfile

    before = {p.name: p.stat().st_mtime_ns for p in (BENCHMARKS / "results").iterdir()}
    scratch = set(Path(tempfile.gettempdir()).glob("ablation-ceiling-*"))
    proc = run(script, *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and message in proc.stderr.strip().splitlines()[-1]
    assert {p.name: p.stat().st_mtime_ns for p in (BENCHMARKS / "results").iterdir()} == before
    assert set(Path(tempfile.gettempdir()).glob("ablation-ceiling-*")) <= scratch  # its models were left there


def test_refine_perceptual_runs(tmp_path):
    """It built its loss without a discriminator, which the loss refuses: every run was a TypeError."""
    out = tmp_path / "refine_perceptual.json"
    proc = run("refine_perceptual", "--images", "kodim23", "--steps", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["image"] == "kodim23" and row["steps"] == 1 and row["plain"]["bpp"] > 0


def load_script(script: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The benchmark script as a module (its ``main`` not run), importing ``common`` as it does."""
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{script}", BENCHMARKS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Parser(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__()
        self.parser = parser


def script_parser(script: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser the script's ``main`` builds: ``main`` runs up to ``parse_args``, which hands the
    parser over instead of parsing (so nothing is measured)."""
    module = load_script(script, monkeypatch)

    def hand_over(self, *args, **kwargs):
        raise _Parser(self)

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", hand_over)
        with pytest.raises(_Parser) as caught:
            module.main()
    return caught.value.parser


@pytest.mark.parametrize("script", sorted(BAD_VALUES))
def test_every_option_has_a_help_text(script, monkeypatch):
    """Many options showed in --help with no description at all; hidden ones (SUPPRESS) may stay so."""
    parser = script_parser(script, monkeypatch)
    bare = [action.option_strings[0] if action.option_strings else action.dest for action in parser._actions
            if action.help != argparse.SUPPRESS and not (action.help or "").strip()]
    assert not bare, f"{script}: no help for {', '.join(bare)}"
    parser.format_help()  # every help text formats (a stray % would raise here)


def test_edge_threads_option(monkeypatch):
    """edge.py timed 1 and 2 threads, always: --threads chooses (comma-separated, each 1 or more)."""
    parser = script_parser("edge", monkeypatch)
    assert parser.parse_args([]).threads == [1, 2]
    assert parser.parse_args(["--threads", "4,1"]).threads == [4, 1]


@pytest.mark.parametrize("value, message", [("0", "argument --threads: expected whole numbers from 1"),
                                            ("1,x", "argument --threads: expected comma-separated numbers"),
                                            ("", "argument --threads: expected at least one thread count")])
def test_edge_refuses_a_bad_thread_count(value, message):
    proc = run("edge", "--threads", value, "--models", "nosuch", "--no-install-size", "--out", "/nonexistent/edge.json")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and message in proc.stderr.strip().splitlines()[-1]


def test_edge_times_the_chosen_threads(monkeypatch, tmp_path):
    """The thread counts reach every model's measurement (sorted, once each), the results file and
    the printed table, the figures measured here replaced by a stand-in."""
    edge = load_script("edge", monkeypatch)
    seen = []

    def bench_model(name, workdir, int8_images, threads):
        seen.append(list(threads))
        ms = {f"{kind}_{t}t": float(t) for t in threads for kind in ("lite_fp32", "lite_int8", "torch_encode",
                                                                      "lite_encode")}
        return {"parameters": {"decoder": 1}, "kmac_per_pixel": {"decoder": 1.0}, "onnx_mb": {"decoder.onnx": 1.0},
                "ms": {**ms, "torch_decode": 1.0}, f"lite_fp32_{max(threads)}t_stages_ms": {"synthesis": 1.0},
                "peak_rss_mb": {"lite": 1.0}, "int8": None}

    monkeypatch.setattr(edge, "bench_model", bench_model)
    out = tmp_path / "edge.json"
    assert edge.main(["--models", "a,b", "--threads", "3,1,3", "--no-install-size", "--out", str(out)]) == 0
    assert seen == [[1, 3], [1, 3]]
    assert json.loads(out.read_text())["threads"] == [1, 3]


def test_train_throughput_records_the_cpu(monkeypatch):
    """Its results file named the CPU as platform.processor() ('x86_64'), without model or core count."""
    train_throughput = load_script("train_throughput", monkeypatch)
    args = argparse.Namespace(device="cpu", threads=1, warm=0, timed=1, overrides=[])
    report = train_throughput.build_report(args, [])
    host = report["machine"]
    models = [line.partition(":")[2].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("model name")] if Path("/proc/cpuinfo").is_file() else []
    if models:
        assert host["cpu_model"] == models[0] and models[0] in report["device"]
    else:
        assert host["cpu"] == (platform.processor() or platform.machine())
    assert host["cpu_count"] == os.cpu_count() and report["threads"] == 1
    json.dumps(report)  # written as JSON


# script -> option, a value out of its range, and what the error line says: each was a plain int
# or float, so the value was used (0 cases measured, a negative seed, a quality of 2) or failed
# later, mid-run
OUT_OF_RANGE = [
    ("fuzz", "--cases", "0", "argument --cases: must be 1 or more"),
    ("fuzz", "--cases", "-3", "argument --cases: must be 1 or more"),
    ("fuzz", "--seed", "-1", "argument --seed: must be 0 or more"),
    ("fuzz", "--timeout", "0", "argument --timeout: must be a positive number"),
    ("fuzz", "--timeout", "-2", "argument --timeout: must be a positive number"),
    ("fuzz", "--timeout", "inf", "argument --timeout: must be a finite number"),
    ("fuzz", "--max-rss-mb", "0", "argument --max-rss-mb: must be 1 or more"),
    ("large", "--quality", "1.5", "argument --quality: must be between 0 and 1"),
    ("large", "--quality", "-0.1", "argument --quality: must be between 0 and 1"),
    ("roi", "--background", "2", "argument --background: must be between 0 and 1"),
    ("roi", "--region", "-0.5", "argument --region: must be between 0 and 1"),
    ("roi", "--margin", "-1", "argument --margin: must be 0 or more"),
    ("roi", "--margin-weight", "1.5", "argument --margin-weight: must be between 0 and 1"),
    ("refine_perceptual", "--quality", "3", "argument --quality: must be between 0 and 1"),
    ("refine_perceptual", "--weight", "-1", "argument --weight: must be a positive number"),
    ("refine_perceptual", "--weight", "nan", "argument --weight: must be a finite number"),
    ("perceptual_heldout", "--rates", "0", "argument --rates: must be a positive number"),
    ("perceptual_heldout", "--rates", "-0.3", "argument --rates: must be a positive number"),
    ("lite_encoder", "--threads", "0", "argument --threads: expected whole numbers from 1"),
    ("lite_encoder", "--qualities", "0,1.5", "argument --qualities: expected comma-separated qualities from 0 to 1"),
    ("refine_search", "--qualities", "-0.3", "argument --qualities: expected comma-separated qualities from 0 to 1"),
    ("refine_search", "--qualities", "", "argument --qualities: expected comma-separated qualities from 0 to 1"),
    ("lite_encoder", "--threads", "1,x", "argument --threads: expected comma-separated numbers"),
]


@pytest.mark.parametrize("script, option, value, message", OUT_OF_RANGE)
def test_an_out_of_range_value_is_a_usage_error(script, option, value, message, monkeypatch, capsys):
    parser = script_parser(script, monkeypatch)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args([option, value])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


class _Measured(Exception):
    """Raised by a stand-in for the first step of a measurement: the script went past its options."""


def _measured(*args, **kwargs):
    raise _Measured


# script -> arguments that keep a run short if it goes past its options, and a step of the measurement
EMPTY_THREADS = {
    "speed": (["--images", "1", "--no-4k"], "data_root"),
    "feature_timings": (["--parts", "search"], "write_results"),
    "lite_encoder": (["--images", "1"], "ensure_export"),
}


@pytest.mark.parametrize("script", sorted(EMPTY_THREADS))
def test_an_empty_thread_list_is_refused(script, monkeypatch, capsys, tmp_path):
    """``--threads ""`` measured nothing and wrote a results file with no rows."""
    extra, step = EMPTY_THREADS[script]
    module = load_script(script, monkeypatch)
    for name in (step, "write_results"):
        monkeypatch.setattr(module, name, _measured)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--threads", "", *extra, "--out", str(tmp_path / "out.json")])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 2
    assert "argument --threads: expected at least one thread count" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("script", ["edge", *sorted(EMPTY_THREADS)])
def test_a_repeated_thread_count_is_timed_once(script, monkeypatch):
    """``--threads 2,1,2`` timed 2 threads twice (two rows of one setting in the results)."""
    assert script_parser(script, monkeypatch).parse_args(["--threads", "2,1,2"]).threads == [2, 1]


def test_roi_figure_refuses_a_margin_it_would_not_draw(monkeypatch, capsys, tmp_path):
    """``roi.py --figure F --margin 0`` drew compress's own margin in silence (and --small,
    --limit, --out were ignored as well)."""
    module = load_script("roi", monkeypatch)
    monkeypatch.setattr(module, "write_figure", _measured)
    for option in (["--margin", "0"], ["--margin-weight", "1"], ["--small", "48"], ["--limit", "2"],
                   ["--out", str(tmp_path / "r.json")]):
        monkeypatch.setattr(sys, "argv", ["roi.py", "--figure", str(tmp_path / "f.png"), *option])
        with pytest.raises(SystemExit) as exit_:
            module.main()
        assert exit_.value.code == 2
        assert f"{option[0]} do not apply" in capsys.readouterr().err.strip().splitlines()[-1]
    monkeypatch.setattr(sys, "argv", ["roi.py", "--figure", str(tmp_path / "f.png")])
    with pytest.raises(_Measured):
        module.main()


def test_lite_encoder_threads_option(monkeypatch):
    """lite_encoder.py timed 1 and 2 threads, always: --threads chooses (comma-separated, each 1 or more)."""
    parser = script_parser("lite_encoder", monkeypatch)
    assert parser.parse_args([]).threads == [1, 2]
    assert parser.parse_args(["--threads", "4,1"]).threads == [4, 1]


def test_lite_encoder_times_the_chosen_threads(monkeypatch, tmp_path):
    """The thread counts (sorted, once each) reach the timings, the large image and the comparison
    at the most; by default the timings are the ones it always wrote. The coders are stand-ins."""
    from types import SimpleNamespace

    from PIL import Image

    lite_encoder = load_script("lite_encoder", monkeypatch)
    Image.new("RGB", (32, 24)).save(tmp_path / "kodim23.png")
    coders, torch_threads = [], []

    class Coder:
        def __init__(self, export, threads):
            coders.append((type(self).__name__, threads))

        def encode(self, rgb, quality):
            return b"same"

    monkeypatch.setattr(lite_encoder, "KODAK", tmp_path)
    monkeypatch.setattr(lite_encoder, "ensure_export", lambda model: tmp_path)
    monkeypatch.setattr(lite_encoder, "LiteEncoder", type("LiteEncoder", (Coder,), {}))
    monkeypatch.setattr(lite_encoder, "LiteDecoder", type("LiteDecoder", (Coder,), {}))
    monkeypatch.setattr(lite_encoder, "edgecodec", SimpleNamespace(compress=lambda *args, **kwargs: b"same"))
    monkeypatch.setattr(lite_encoder, "median_ms", lambda fn, runs=11: 1.0)
    monkeypatch.setattr(lite_encoder.torch, "set_num_threads", torch_threads.append)

    def timings(*args: str) -> set[str]:
        out = tmp_path / "lite_encoder.json"
        coders.clear(), torch_threads.clear()
        lite_encoder.main(["--models", "m", "--qualities", "0.5", *args, "--out", str(out)])
        return set(json.loads(out.read_text())["models"]["m"]["kodim23_q0.5_encode_ms"])

    assert timings() == {"lite_1t", "lite_2t", "torch_1t", "torch_2t", "large_lite_2t", "large_torch_2t"}
    assert coders[:2] == [("LiteEncoder", 2), ("LiteDecoder", 2)] and torch_threads == [2, 1, 2, 2]
    assert timings("--threads", "3,1,3") == {"lite_1t", "lite_3t", "torch_1t", "torch_3t", "large_lite_3t",
                                             "large_torch_3t"}
    assert coders == [("LiteEncoder", 3), ("LiteDecoder", 3), ("LiteEncoder", 1), ("LiteEncoder", 3),
                      ("LiteEncoder", 3)]
    assert torch_threads == [3, 1, 3, 3]


def test_feature_timings_refuses_an_empty_part_list(monkeypatch, capsys, tmp_path):
    """``--parts ""`` (or ``--parts ,``) measured nothing and wrote a results file with no rows."""
    module = load_script("feature_timings", monkeypatch)
    monkeypatch.setattr(module, "write_results", _measured)
    for parts in ("", ","):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            module.main(["--parts", parts, "--out", str(tmp_path / "out.json")])
        assert exit_.value.code == 2
        assert "argument --parts: expected at least one part" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("text, message", [("{", "is not an evaluation summary (JSON)"),
                                           ("[]", "is not an evaluation summary (a JSON object)")])
def test_targets_refuses_a_summary_that_is_not_one(tmp_path, text, message):
    """A --summary that is not JSON, or JSON but not an object, ended in a JSONDecodeError or
    AttributeError traceback (exit 1)."""
    summary = tmp_path / "summary.json"
    summary.write_text(text)
    proc = run("targets", "--summary", str(summary), "--out", str(tmp_path / "targets.json"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and message in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "targets.json").exists()


def test_roi_refuses_a_folder_without_images(tmp_path):
    """``--kodak`` naming a folder without PNG images measured nothing, then failed on the means
    with an IndexError traceback (exit 1)."""
    proc = run("roi", "--kodak", str(tmp_path), "--models", "fidelity", "--out", str(tmp_path / "roi.json"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"--kodak: no PNG images in {tmp_path}" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "roi.json").exists()


def test_large_passes_on_its_child_refusing_a_model(tmp_path):
    """Each row runs in a child process; an unknown --model was the child's one line wrapped in the
    parent's RuntimeError traceback (exit 1)."""
    proc = run("large", "--model", "nosuch", "--sizes", "4k", "--no-untiled", "--out", str(tmp_path / "large.json"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("large.py: error: unknown model 'nosuch'")
    assert not (tmp_path / "large.json").exists()


def test_ablation_ceiling_refuses_a_folder_without_images(tmp_path):
    """A --kodak folder without PNG images was a bare SystemExit message with exit 1, where every
    other benchmark names the option and exits 2 (a usage error, as argparse does)."""
    proc = run("ablation_ceiling", "--kodak", str(tmp_path), "--prefix", "", "--names", "fidelity",
               "--out", str(tmp_path / "ceiling.json"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"--kodak: no PNG images in {tmp_path}" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "ceiling.json").exists()
