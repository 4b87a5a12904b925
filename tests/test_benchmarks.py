"""The benchmark scripts: each imports and refuses a bad value in one line (exit 2), not with a
traceback or by measuring something else; the one that had stopped running runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
