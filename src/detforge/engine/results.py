"""Per-epoch results: `results.csv` next to the run and a loss / metric plot of it.

The plot is a `Figure` on its own Agg canvas (see `detforge.eval.plots.new_figure`), never
pyplot: importing or plotting leaves matplotlib's global backend and state alone.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from detforge.eval.plots import new_figure, save_figure


class ResultsLog:
    """Appends one row per epoch; the header comes from the first row's keys. A row with other keys (a run
    resumed by another version) keeps the file's columns: unknown keys are left out, missing ones are NaN."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, row: dict[str, float]) -> None:
        header = self._header()
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header or list(row), restval="nan", extrasaction="ignore")
            if not header:
                writer.writeheader()
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})

    def _header(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as fh:
            return next(csv.reader(fh), [])

    def rows(self) -> list[dict[str, float]]:
        if not self.path.exists():
            return []
        with self.path.open() as fh:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]

    def truncate_after(self, epoch: int) -> None:
        """Drop rows past `epoch` (1-based): a resumed run rewrites what the killed one had not saved."""
        kept = [r for r in self.rows() if r["epoch"] <= epoch]
        self.path.unlink(missing_ok=True)
        for row in kept:
            self.append({k: int(v) if k == "epoch" else v for k, v in row.items()})


def results_panels(columns: list[str]) -> list[tuple[str, list[str]]]:
    """(title, columns) per panel: each loss and metric alone (training losses, then precision, recall
    and mAPs, then the validation losses), every learning-rate group in one panel, then the rest."""
    lrs = [k for k in columns if k.startswith("lr/")]
    panels = [(k, [k]) for prefix in ("train/", "metrics/", "val/") for k in columns if k.startswith(prefix)]
    if lrs:
        panels.append(("learning rate", lrs))
    grouped = {k for _, keys in panels for k in keys}
    return panels + [(k, [k]) for k in columns if k not in grouped and k not in ("epoch", "time")]


def plot_results(log: ResultsLog, path: str | Path) -> Path | None:
    """One panel per column (losses, precision/recall, mAPs, validation losses, learning rates) against epoch."""
    rows = log.rows()
    if not rows:
        return None
    panels = results_panels(list(rows[0]))
    cols = min(len(panels), 5)
    n_rows = -(-len(panels) // cols)
    fig = new_figure((3.2 * cols, 2.6 * n_rows))
    axes = fig.subplots(n_rows, cols, squeeze=False)
    epochs = [r["epoch"] for r in rows]
    for ax, (title, keys) in zip(axes.flat, panels):
        for key in keys:
            ax.plot(epochs, [r[key] for r in rows], marker="o", markersize=3, label=key.removeprefix("lr/"))
        if len(keys) > 1:
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    return save_figure(fig, path, dpi=120)


def json_safe(value: Any) -> Any:
    """`value` with NaN floats as None (JSON has no NaN), through nested dicts and lists."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value
