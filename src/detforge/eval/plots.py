"""Evaluation plots written as PNGs next to a run: PR curves, F1-confidence curve, confusion matrix.

Figures are built with `matplotlib.figure.Figure` and the Agg canvas directly, never pyplot, so
plotting works without a display, from threads, and never changes the global backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MAX_LEGEND_CLASSES = 20  # above this, per-class curves stay grey and unlabelled


def new_figure(size: tuple[float, float] = (8.0, 6.0)) -> Figure:
    """A `Figure` on its own Agg canvas: no pyplot, no global backend, nothing to close."""
    fig = Figure(figsize=size, tight_layout=True)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write `fig` to `path` (PNG unless the suffix says otherwise), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _class_curves(ax, x: np.ndarray, curves: np.ndarray, labels: Sequence[str]) -> None:
    """One thin line per class that has a curve (rows of nan are skipped)."""
    labelled = len(labels) <= MAX_LEGEND_CLASSES
    for row, label in zip(curves, labels):
        if np.isnan(row).all():
            continue
        if labelled:
            ax.plot(x, row, linewidth=1, label=label)
        else:
            ax.plot(x, row, linewidth=1, color="grey", alpha=0.5)


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def figure_rgb(fig: Figure) -> np.ndarray:
    """A figure rendered to an RGB uint8 `[H, W, 3]` array (for trackers such as TensorBoard)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def plot_pr_curves(
    recall: np.ndarray, precision: np.ndarray, ap50: np.ndarray, names: Sequence[str], path: str | Path
) -> Path:
    """Precision-recall at IoU 0.5, per class and the mean over classes, saved as a PNG.

    recall: [R]; precision: [C, R] (nan rows = class without ground truth); ap50: [C].
    """
    return save_figure(pr_curve_figure(recall, precision, ap50, names), path)


def pr_curve_figure(recall: np.ndarray, precision: np.ndarray, ap50: np.ndarray, names: Sequence[str]) -> Figure:
    """The figure `plot_pr_curves` saves."""
    fig = new_figure()
    ax = fig.add_subplot()
    labels = [f"{n} {ap:.3f}" for n, ap in zip(names, ap50)]
    _class_curves(ax, recall, precision, labels)
    valid = ~np.isnan(precision).all(1)
    if valid.any():
        mean_ap = float(np.nanmean(ap50[valid]))
        ax.plot(recall, precision[valid].mean(0), linewidth=3, color="blue", label=f"all classes {mean_ap:.3f} mAP@0.5")
    _finish(ax, "Recall", "Precision", "Precision-Recall curve (IoU 0.5)")
    return fig


def plot_f1_curve(confidence: np.ndarray, f1: np.ndarray, names: Sequence[str], path: str | Path) -> Path:
    """F1 against confidence threshold, per class and the mean, with its maximum marked.

    confidence: [N] thresholds in 0..1; f1: [C, N] (nan rows = class without ground truth).
    """
    fig = new_figure()
    ax = fig.add_subplot()
    _class_curves(ax, confidence, f1, list(names))
    valid = ~np.isnan(f1).all(1)
    if valid.any():
        mean = f1[valid].mean(0)
        best = len(mean) - 1 - int(mean[::-1].argmax())  # highest threshold among ties, as in metrics.py
        ax.plot(confidence, mean, linewidth=3, color="blue",
                label=f"all classes {mean[best]:.2f} at {confidence[best]:.3f}")
        ax.axvline(confidence[best], color="blue", linestyle=":", linewidth=1)
    _finish(ax, "Confidence", "F1", "F1-Confidence curve")
    return save_figure(fig, path)


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: str | Path) -> Path:
    """Confusion matrix [C + 1, C + 1] ([predicted, true], last = background), each true column summing to 1."""
    column_sums = matrix.sum(0, keepdims=True)
    norm = np.divide(matrix, column_sums, out=np.zeros(matrix.shape), where=column_sums > 0)
    labels = [*names, "background"]
    n = len(labels)
    side = min(max(6.0, 0.3 * n + 3.0), 16.0)
    fig = new_figure((side + 1.5, side))
    ax = fig.add_subplot()
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(n)
    font = 10 if n <= 12 else 8 if n <= 30 else 6 if n <= 60 else 5
    ax.set_xticks(ticks, labels, rotation=90, fontsize=font)
    ax.set_yticks(ticks, labels, fontsize=font)
    ax.set(xlabel="True", ylabel="Predicted", title="Confusion matrix (normalized by true class)")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if norm[i, j] > 0.005:
                    color = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=font, color=color)
    return save_figure(fig, path)
