"""Training charts from run folders: PSNR, SSIM and bpp against the step, one colour per run.

Values come from each run's val.csv (validation on the same held-out crops every
``train.val_every`` steps). All three validation qualities are drawn, as line styles of the
run's colour: dotted q=0 (lowest rate), solid q=0.5, dashed q=1 (highest rate), so the charts
show both how each run learns and how its rate range opens up. Runs without a rate
(``train.rate: none``, the original experiment) validate once per step: one solid line each
(``val_psnr``, ``val_ssim``). A run without validation rows (stopped before its first validation)
is drawn from its training log.csv instead, as one thin line. A panel no run has values for (bpp, when
every run is a float-latent one) is left out.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..atomic import atomic_path
from ..errors import OutputWriteError
from .monitor import read_csv

QUALITY_STYLES = {"0.0": ":", "0.5": "-", "1.0": "--"}
PANELS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("bpp", "estimated bpp"))


def _series(rows: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
    return [p[0] for p in points], [p[1] for p in points]


def run_labels(runs: list[Path]) -> list[str]:
    """Each run's legend name: its folder's name, with as many parent folders as it takes to tell
    runs of the same name apart (a/cae and b/cae)."""
    parts = [Path(os.path.abspath(run)).parts for run in runs]
    labels = []
    for i, own in enumerate(parts):
        depth = 1
        while depth < len(own) and any(j != i and other != own and other[-depth:] == own[-depth:]
                                       for j, other in enumerate(parts)):
            depth += 1
        labels.append("/".join(own[-depth:]))
    return labels


def plot_runs(runs: list[str | Path], out: str | Path, title: str | None = None) -> Path:
    """Draw the charts of ``runs`` into the image ``out`` (format from its suffix, e.g. .png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not runs:
        raise ValueError("no run folders given")
    lines: list[tuple[str, tuple, dict]] = []  # (panel metric, plot args, plot kwargs)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = run_labels([Path(run) for run in runs])
    for i, run in enumerate(runs):
        run = Path(run)
        colour = colours[i % len(colours)]
        name = names[i]
        if not (run / "val.csv").is_file() and not (run / "log.csv").is_file():
            raise FileNotFoundError(f"{run}: no val.csv or log.csv (is it a training run folder?)")
        rows = _read(run / "val.csv") if (run / "val.csv").is_file() else []
        if rows:  # (a resume that redoes the first validation leaves val.csv with its header alone)
            for metric, _ in PANELS:
                steps, values = _series(rows, f"val_{metric}")  # a run without rate: no qualities
                if steps:
                    lines.append((metric, (steps, values, "-"), dict(
                        color=colour, marker="." if len(steps) < 20 else None, label=name)))
                for q, style in QUALITY_STYLES.items():
                    steps, values = _series(rows, f"val_{metric}_q{q}")
                    if steps:
                        lines.append((metric, (steps, values, style), dict(
                            color=colour, marker="." if len(steps) < 20 else None, label=f"{name} q={q}")))
        elif (run / "log.csv").is_file():
            rows = _read(run / "log.csv")
            for metric, _ in PANELS:
                steps, values = _series(rows, metric)
                if steps:
                    lines.append((metric, (steps, values, "-"), dict(
                        color=colour, linewidth=0.8, label=f"{name} (training batches)")))
    if not lines:
        raise ValueError("the runs have no logged validation or training points yet")
    panels = [(metric, label) for metric, label in PANELS if any(line[0] == metric for line in lines)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    axes = list(axes[0])
    for ax, (metric, _) in zip(axes, panels):
        for line_metric, args, kwargs in lines:
            if line_metric == metric:
                ax.plot(*args, **kwargs)
    for ax, (_, label) in zip(axes, panels):
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:  # SSIM may be missing from older runs: collect every label once
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize="small", frameon=False)
    qualities = any(" q=" in str(kwargs.get("label")) for _, _, kwargs in lines)
    fig.suptitle(title or ("validation: dotted q=0, solid q=0.5, dashed q=1" if qualities
                           else "validation on the held-out images"))
    rows_of_legend = (len(labels) + 5) // 6
    fig.tight_layout(rect=(0, 0.05 * rows_of_legend + 0.02, 1, 1))
    out = Path(out)
    # The format is the suffix's; matplotlib would write "training" as "training.png" (replacing
    # that file) while the command said "wrote training".
    fmt = out.suffix[1:].lower()
    if fmt not in fig.canvas.get_supported_filetypes():
        plt.close(fig)
        raise ValueError(f"{out}: give an image name ending in one of "
                         f"{', '.join('.' + f for f in sorted(fig.canvas.get_supported_filetypes()))}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file on its path: exit 11, not an internal error
        plt.close(fig)
        raise OutputWriteError.making(out, exc) from None
    try:  # through atomic_path: an interrupted plot never leaves half an image under the name
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=110, format=fmt)
    except OSError as exc:
        raise OutputWriteError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return out


def _read(path: Path) -> list[dict[str, float]]:
    """A log's rows; a damaged one is named (float()'s error alone did not say which file)."""
    try:
        return read_csv(path)
    except (ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: not a training log ({exc})") from None
