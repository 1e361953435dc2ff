"""Numbers `detforge data check` shows for a split: counts per class and box sizes."""

from __future__ import annotations

import numpy as np

from detforge.data.problems import SKIPPED
from detforge.data.scan import SplitLabels

SMALL, MEDIUM = 32**2, 96**2  # COCO's area thresholds, in pixels of the original image


def split_stats(labels: SplitLabels, names: list[str]) -> dict:
    """images, skipped images, images without boxes, boxes, per-class box counts and box sizes."""
    store = labels.store
    counts = np.bincount(store.classes, minlength=len(names)) if len(store.classes) else np.zeros(len(names), int)
    per_image = np.diff(store.offsets)
    w = store.boxes[:, 2] - store.boxes[:, 0]
    h = store.boxes[:, 3] - store.boxes[:, 1]
    area = w * h
    sizes = {}
    if len(area):
        sizes = {
            "width": _summary(w), "height": _summary(h),
            "small": int((area < SMALL).sum()), "medium": int(((area >= SMALL) & (area < MEDIUM)).sum()),
            "large": int((area >= MEDIUM).sum()),
        }
    return {
        "images": len(store),
        "skipped": len({p.file for p in labels.problems if p.action == SKIPPED}),
        "without_boxes": int((per_image == 0).sum()),
        "boxes": len(store.classes),
        "per_class": {name: int(c) for name, c in zip(names, counts[: len(names)])},
        "box_size": sizes,
        "problems": len(labels.problems),
    }


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"min": round(float(values.min()), 1), "median": round(float(np.median(values)), 1),
            "max": round(float(values.max()), 1)}
