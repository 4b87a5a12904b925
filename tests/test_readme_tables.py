"""scripts/readme_tables.py: the README's generated tables match the results they are read off."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import readme_tables  # noqa: E402

from edgecodec.zoo import shipped_models  # noqa: E402


def test_the_committed_readme_quotes_the_committed_results():
    assert readme_tables.main(["--check"]) == 0


def _copy_sources(root):
    """The files the blocks are read from, copied under ``root`` so a test can change them."""
    for rel in ("results/kodak/table.md", "benchmarks/results/targets.json",
                *(f"edgecodec/weights/{name}.json" for name in shipped_models())):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, root / rel)


def test_a_changed_card_makes_its_block_stale_and_only_that_block_is_rewritten(tmp_path):
    _copy_sources(tmp_path)
    readme = (REPO / "README.md").read_text()
    card_path = tmp_path / "edgecodec/weights/fidelity.json"
    card = json.loads(card_path.read_text())
    card["kodak"]["points"][0]["psnr"] = 99.25
    card_path.write_text(json.dumps(card))

    text, changed = readme_tables.regenerate(readme, tmp_path)
    assert changed == ["model-cards"]
    assert " | 99.25 | " in text and " | 99.25 | " not in readme
    assert text.count("| fidelity | 0.00 |") == 1
    assert readme_tables.regenerate(text, tmp_path) == (text, [])  # rewriting is idempotent


def test_the_targets_block_counts_the_targets_met(tmp_path):
    _copy_sources(tmp_path)
    path = tmp_path / "benchmarks/results/targets.json"
    data = json.loads(path.read_text())
    for target in data["targets"]:
        target["met"] = True
    path.write_text(json.dumps(data))
    text, changed = readme_tables.regenerate((REPO / "README.md").read_text(), tmp_path)
    n = len(data["targets"])
    assert changed == ["targets"] and f"{n} of {n} targets met." in text


@pytest.mark.parametrize("damage", ["<!-- end generated: targets -->", "<!-- generated: model-cards (scripts/"])
def test_a_broken_marker_is_an_error_not_a_silent_skip(tmp_path, capsys, damage):
    readme = (REPO / "README.md").read_text()
    assert damage in readme
    path = tmp_path / "README.md"
    path.write_text(readme.replace(damage, "", 1))
    assert readme_tables.main(["--check", "--readme", str(path)]) == 2
    assert "needs exactly one complete" in capsys.readouterr().err


def test_an_unknown_block_is_an_error():
    bogus = "<!-- generated: nonsense (scripts/readme_tables.py) -->\nx\n<!-- end generated: nonsense -->\n"
    with pytest.raises(ValueError, match="unknown generated block"):
        readme_tables.regenerate((REPO / "README.md").read_text() + bogus)


def test_the_records_the_docs_say_are_kept_are_not_git_ignored():
    # A `runs/` pattern once matched results/ablation/runs/ too, so the ablation's configs and logs,
    # which the README says the repository keeps, were never committed.
    import subprocess

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    kept = ["results/ablation/runs/cae/log.csv", "results/ablation/runs/gcrb/launches.jsonl",
            "results/ablation/models/ablation-crb.json", "results/shipped-runs/fidelity-edge/log.csv",
            "results/kodak/compressai/fidelity.json", "results/kodak/per_image.csv"]
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "--no-index", *kept],
                             capture_output=True, text=True).stdout.split()
    assert ignored == []
    # while a training run's own folder and the evaluation cache stay out of the repository
    scratch = ["runs/crb/ckpt-00001000.pt", "results/kodak/cache.jsonl"]
    assert subprocess.run(["git", "-C", str(REPO), "check-ignore", "--no-index", *scratch],
                          capture_output=True, text=True).stdout.split() == scratch
