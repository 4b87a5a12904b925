"""Rewrite the README's generated tables from the files they are read off, or check that they match.

    .venv/bin/python scripts/readme_tables.py           # rewrite README.md in place
    .venv/bin/python scripts/readme_tables.py --check   # exit 1 when a table is stale

A generated block sits between two HTML comments (invisible on GitHub)::

    <!-- generated: NAME (scripts/readme_tables.py) -->
    ...
    <!-- end generated: NAME -->

and NAME says where its text comes from:

* ``kodak-eval``: ``results/kodak/table.md``, written by ``edgecodec eval ../shared/data/kodak``;
* ``targets``: ``benchmarks/results/targets.json``, written by ``benchmarks/targets.py``;
* ``model-cards``: the Kodak points of the shipped cards ``edgecodec/weights/*.json``, written
  by ``edgecodec export-model --kodak``.

Nothing is measured here: the script only copies figures, so that the README never drifts from
the results it quotes (tests/test_readme_tables.py runs ``--check`` on the committed README).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgecodec.zoo import shipped_models  # noqa: E402  (the README's order: the default first)


def kodak_eval(root: Path) -> str:
    return (root / "results" / "kodak" / "table.md").read_text().strip()


def _number(value: float | int) -> str:
    """targets.json figures as the README prints them: thousands separated, floats as %g."""
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1000:
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:g}"


def targets(root: Path) -> str:
    data = json.loads((root / "benchmarks" / "results" / "targets.json").read_text())
    met = sum(t["met"] for t in data["targets"])
    rows = ["| model | target | measured | limit | met |", "|---|---|---|---|---|"]
    rows += [f"| {t['model']} | {t['target']} | {_number(t['measured'])} | {_number(t['limit'])} | "
             f"{'yes' if t['met'] else 'no'} |" for t in data["targets"]]
    return f"{met} of {len(data['targets'])} targets met.\n\n" + "\n".join(rows)


def model_cards(root: Path) -> str:
    rows = ["| model | quality | bpp | PSNR (dB) | MS-SSIM | ST-LPIPS |", "|---|---|---|---|---|---|"]
    for name in shipped_models():
        card = json.loads((root / "edgecodec" / "weights" / f"{name}.json").read_text())
        rows += [f"| {name} | {p['quality']:.2f} | {p['bpp']:.3f} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} | "
                 f"{p['st_lpips']:.4f} |" for p in card["kodak"]["points"]]
    return "\n".join(rows)


BLOCKS: dict[str, Callable[[Path], str]] = {
    "kodak-eval": kodak_eval, "targets": targets, "model-cards": model_cards}
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) \(scripts/readme_tables\.py\) -->\n)(?P<body>.*?)"
                   r"(<!-- end generated: (?P=name) -->)", re.S)


def regenerate(readme: str, root: Path = REPO) -> tuple[str, list[str]]:
    """README text with every generated block rewritten, and the names of the blocks that changed.

    Raises ValueError for a block name this script does not know, or when a known block is missing
    or appears twice (an unclosed marker leaves its block unmatched, so it counts as missing).
    """
    found = [m.group("name") for m in BLOCK.finditer(readme)]
    unknown = sorted(set(found) - set(BLOCKS))
    if unknown:
        raise ValueError(f"unknown generated block(s): {', '.join(unknown)}")
    for name in BLOCKS:
        if found.count(name) != 1:
            raise ValueError(f"the README needs exactly one complete '{name}' block, found {found.count(name)}")
    changed: list[str] = []

    def replace(match: re.Match) -> str:
        body = BLOCKS[match.group("name")](root) + "\n"
        if body != match.group("body"):
            changed.append(match.group("name"))
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, readme), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a table is stale")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args(argv)
    try:
        text, changed = regenerate(args.readme.read_text())
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        for name in changed:
            print(f"stale: {name} (run scripts/readme_tables.py)")
        return 1 if changed else 0
    if changed:
        args.readme.write_text(text)
    print(f"rewrote: {', '.join(changed)}" if changed else "up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
