"""Run logs: CSV files (log.csv for training, val.csv for validation) and TensorBoard (RUN/tb).

CSV columns are whatever the rows carry, in first-seen order. A row with a column the file does
not have yet (a resumed run of an older version, a metric that appears later) rewrites the file
with the wider header; missing values are left empty, never written as NaN.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

from ..atomic import atomic_path

log = logging.getLogger(__name__)


def _rewrite_csv(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    """Replace a CSV whole (atomic_path), so a kill never leaves half a log."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)


def append_csv(path: Path, row: dict[str, Any]) -> None:
    row = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
    header: list[str] = []
    if path.exists() and path.stat().st_size:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    new_keys = [k for k in row if k not in header]
    if header and new_keys:  # widen the file: rewrite every row under the new header
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        header = header + new_keys
        _rewrite_csv(path, header, rows)
    elif not header:
        header = list(row)
        with open(path, "w", newline="") as f:
            csv.writer(f).writerow(header)
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=header, restval="", extrasaction="ignore").writerow(row)


def drop_rows_after(path: Path, step: int) -> int:
    """Remove rows logged past ``step`` (by a run killed after its last checkpoint, which the
    resumed run logs again), so a resumed log has each step once. Returns how many were dropped."""
    if not path.exists() or not path.stat().st_size:
        return 0
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    keep = [r for r in rows if r.get("step") in ("", None) or float(r["step"]) <= step]
    if len(keep) == len(rows):
        return 0
    _rewrite_csv(path, header, keep)
    return len(rows) - len(keep)


def read_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a log CSV as floats (empty cells are left out of each row)."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


class Monitor:
    """Writes training and validation rows to CSV and TensorBoard; a no-op when disabled
    (ranks other than 0)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True,
                 purge_step: int | None = None) -> None:
        """``purge_step``: a resumed run's first step to come; TensorBoard hides the events an
        earlier launch logged from that step on (SummaryWriter's purge_step), as ``drop_rows_after``
        drops those CSV rows, since the resumed run logs those steps again."""
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:  # tensorboard is a declared dependency; be lenient anyway
                log.warning("TensorBoard logging off: %s", exc)
            else:
                self.writer = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge_step)

    def log(self, kind: str, step: int, row: dict[str, Any]) -> None:
        """kind "train" -> log.csv and train/*, "val" -> val.csv and val/*."""
        if not self.enabled:
            return
        append_csv(self.run_dir / ("log.csv" if kind == "train" else "val.csv"), {"step": step, **row})
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("step", "time") and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
