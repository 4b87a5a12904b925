"""scripts/ablation.sh, run against a stub `edgecodec` in a copy of the repository's layout (no
training): where its runs, results and charts go."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

STUB = r"""#!/usr/bin/env bash
# Records its arguments and writes what scripts/ablation.sh reads back from each command.
set -euo pipefail
printf '%s\n' "$*" >> "$STUB_LOG"
cmd=$1; shift
opt() { local name=$1; shift; while (($#)); do [[ $1 == "$name" ]] && { echo "$2"; return; }; shift; done; }
case $cmd in
  train)
    run=$(opt --out "$@"); run=${run:-$(opt --resume "$@")}
    mkdir -p "$run" && touch "$run"/{config.yaml,log.csv,val.csv,launches.jsonl} ;;
  export-model) mkdir -p "$(opt --out "$@")" && touch "$(opt --out "$@")/$(opt --name "$@").json" ;;
  eval) mkdir -p "$(opt --out "$@")/crops" && touch "$(opt --out "$@")/crops/kodim01_strip.png" ;;
  plot-training) touch "$(opt -o "$@")" ;;
esac
"""


def _tree(tmp_path: Path) -> Path:
    """The files ablation.sh uses, with setup.sh a no-op and .venv/bin/edgecodec the stub."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts/ablation.sh", root / "scripts")
    (root / "scripts/setup.sh").write_text("true\n")
    shutil.copytree(REPO / "edgecodec" / "configs", root / "edgecodec" / "configs")
    bin_dir = root / ".venv/bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "edgecodec").write_text(STUB)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    for exe in bin_dir.iterdir():
        exe.chmod(0o755)
    return root


def _run(root: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in {"STEPS", "RUNS", "EVAL_OUT", "CHART", "WARM_GCRB", "OVERRIDES", "DATA", "KODAK"}}
    return subprocess.run(["bash", str(root / "scripts/ablation.sh")], capture_output=True, text=True,
                          env={**clean, "STUB_LOG": str(root / "stub.log"), **env})


def _written(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
            and p.relative_to(root).parts[0] not in {"scripts", "edgecodec", ".venv"} and p.name != "stub.log"}


def test_a_shorter_budget_leaves_the_committed_results_and_charts_alone(tmp_path):
    root = _tree(tmp_path)
    result = _run(root, STEPS="30")
    assert result.returncode == 0, result.stderr
    written = _written(root)
    assert all(path.startswith("runs/ablation-30/") for path in written), sorted(written)
    assert {"runs/ablation-30/results/models/ablation-gcrb.json", "runs/ablation-30/results/runs/cae/log.csv",
            "runs/ablation-30/ablation_training.png", "runs/ablation-30/ablation_crops.png"} <= written
    log = (root / "stub.log").read_text()
    assert "--out runs/ablation-30/gcrb --steps 30" in log and "gan.disc_start=10" in log


FULL_STEPS = str(yaml.safe_load((REPO / "edgecodec" / "configs" / "crb.yaml").read_text())["train"]["steps"])


@pytest.mark.parametrize("steps", [None, FULL_STEPS])  # the configs' train.steps: the published run
def test_the_full_schedule_writes_the_committed_results_and_charts(tmp_path, steps):
    root = _tree(tmp_path)
    result = _run(root, **({"STEPS": steps} if steps else {}))
    assert result.returncode == 0, result.stderr
    written = _written(root)
    assert {"results/ablation/models/ablation-cae.json", "results/ablation/runs/crb/val.csv",
            "docs/ablation_training.png", "docs/ablation_crops.png",
            "runs/ablation/models/ablation-crb.json"} <= written
    assert not any(path.startswith("runs/ablation-") for path in written)


def test_steps_that_are_not_a_number_are_refused_before_anything_runs(tmp_path):
    root = _tree(tmp_path)
    result = _run(root, STEPS="3k")
    assert result.returncode == 2
    assert "STEPS=3k" in result.stderr and "Traceback" not in result.stderr
    assert not (root / "stub.log").exists() and not _written(root)
