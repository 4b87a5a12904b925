"""Training charts from run folders: PSNR, SSIM and bpp against the step, one colour per run.

Values come from each run's val.csv (validation on the same held-out crops every
``train.val_every`` steps). All three validation qualities are drawn, as line styles of the
run's colour: dotted q=0 (lowest rate), solid q=0.5, dashed q=1 (highest rate), so the charts
show both how each run learns and how its rate range opens up. A run without val.csv (stopped
before its first validation) is drawn from its training log.csv instead, as one thin line.
"""

from __future__ import annotations

from pathlib import Path

from .monitor import read_csv

QUALITY_STYLES = {"0.0": ":", "0.5": "-", "1.0": "--"}
PANELS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("bpp", "estimated bpp"))


def _series(rows: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
    return [p[0] for p in points], [p[1] for p in points]


def plot_runs(runs: list[str | Path], out: str | Path, title: str | None = None) -> Path:
    """Draw the charts of ``runs`` into the image ``out`` (format from its suffix, e.g. .png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not runs:
        raise ValueError("no run folders given")
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5.2 * len(PANELS), 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = 0
    for i, run in enumerate(runs):
        run = Path(run)
        colour = colours[i % len(colours)]
        name = run.name
        if (run / "val.csv").is_file():
            rows = read_csv(run / "val.csv")
            for ax, (metric, _) in zip(axes, PANELS):
                for q, style in QUALITY_STYLES.items():
                    steps, values = _series(rows, f"val_{metric}_q{q}")
                    if steps:
                        ax.plot(steps, values, style, color=colour, marker="." if len(steps) < 20 else None,
                                label=f"{name} q={q}")
                        drawn += 1
        elif (run / "log.csv").is_file():
            rows = read_csv(run / "log.csv")
            for ax, (metric, _) in zip(axes, PANELS):
                steps, values = _series(rows, metric)
                if steps:
                    ax.plot(steps, values, "-", color=colour, linewidth=0.8, label=f"{name} (training batches)")
                    drawn += 1
        else:
            raise FileNotFoundError(f"{run}: no val.csv or log.csv (is it a training run folder?)")
    if not drawn:
        raise ValueError("the runs have no logged validation or training points yet")
    for ax, (_, label) in zip(axes, PANELS):
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
    fig.suptitle(title or "validation: dotted q=0, solid q=0.5, dashed q=1")
    rows_of_legend = (len(labels) + 5) // 6
    fig.tight_layout(rect=(0, 0.05 * rows_of_legend + 0.02, 1, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
