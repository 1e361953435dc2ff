"""`evaluate`: every detection metric of a prediction set in one call, returned as an `EvalResult`.

COCO numbers come from faster-coco-eval (see `detforge.eval.coco` for how they differ from
Ultralytics'), the operating point and confusion matrix from `detforge.eval.metrics`. The result
keeps the predictions so they can be written as a COCO results json for external tools.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detforge.errors import DataError
from detforge.eval import plots
from detforge.eval.coco import CocoMetrics, coco_metrics, coco_results
from detforge.eval.metrics import ConfidenceMetrics, confidence_metrics, confusion_matrix, true_positives
from detforge.eval.records import EvalImage, build_records


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one evaluation. Arrays are per class, [C]; `confusion` is [C + 1, C + 1] [pred, true]."""

    names: list[str]
    coco: CocoMetrics
    conf: ConfidenceMetrics
    confusion: np.ndarray
    images_per_class: np.ndarray
    instances_per_class: np.ndarray
    records: list[EvalImage]
    losses: dict[str, float] = field(default_factory=dict)  # mean validation losses, when the loop computed them

    @property
    def map50_95(self) -> float:
        return self.coco.map50_95

    @property
    def map50(self) -> float:
        return self.coco.map50

    @property
    def map75(self) -> float:
        return self.coco.map75

    def summary(self) -> dict:
        """Flat JSON-able dict; a metric COCO cannot compute (e.g. no small objects) is None."""

        def num(value: float) -> float | None:
            return None if math.isnan(value) else float(value)

        out: dict = {
            "images": len(self.records),
            "instances": int(self.instances_per_class.sum()),
            "mAP50-95": num(self.coco.map50_95),
            "mAP50": num(self.coco.map50),
            "mAP75": num(self.coco.map75),
            "mAP_small": num(self.coco.map_small),
            "mAP_medium": num(self.coco.map_medium),
            "mAP_large": num(self.coco.map_large),
            "precision": self.conf.precision,
            "recall": self.conf.recall,
            "f1": self.conf.f1,
            "best_f1_conf": num(self.conf.confidence),
        }
        for c, name in enumerate(self.names):
            out[f"AP50-95/{name}"] = num(self.coco.ap50_95[c])
            out[f"AP50/{name}"] = num(self.coco.ap50[c])
        return out

    def per_class_table(self) -> str:
        """Plain-text table: class, images, instances, P, R, AP50, AP50-95 (P, R at the best-F1 confidence)."""
        header = ("class", "images", "instances", "P", "R", "AP50", "AP50-95")
        rows = [
            ("all", len(self.records), int(self.instances_per_class.sum()),
             self.conf.precision, self.conf.recall, self.coco.map50, self.coco.map50_95)
        ]
        for c, name in enumerate(self.names):
            if self.instances_per_class[c] == 0:
                continue
            rows.append(
                (name, int(self.images_per_class[c]), int(self.instances_per_class[c]),
                 self.conf.class_precision[c], self.conf.class_recall[c], self.coco.ap50[c], self.coco.ap50_95[c])
            )
        width = max(len(header[0]), *(len(str(r[0])) for r in rows))
        lines = [f"{header[0]:>{width}}" + "".join(f"{h:>11}" for h in header[1:])]
        for row in rows:
            cells = [f"{row[1]:>11}", f"{row[2]:>11}"] + [f"{v:>11.3f}" for v in row[3:]]
            lines.append(f"{row[0]:>{width}}" + "".join(cells))
        return "\n".join(lines)

    def to_coco_results(self, path: str | Path, category_ids: Sequence[int] | None = None) -> Path:
        """Write predictions as a COCO results json (image_id, category_id, bbox xywh, score).

        category_ids[c] is the dataset's category id of class index c; default c + 1.
        image_id is written as given to `evaluate`, so it must match the dataset's json ids.
        """
        ids = list(category_ids) if category_ids is not None else list(range(1, len(self.names) + 1))
        if len(ids) != len(self.names):
            raise DataError(f"{len(ids)} category_ids for {len(self.names)} classes; give one id per class name")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(coco_results(self.records, ids)))
        return path

    def save_plots(self, save_dir: str | Path) -> dict[str, Path]:
        """PR curves, F1-confidence curve and normalized confusion matrix as PNGs in save_dir."""
        save_dir = Path(save_dir)
        return {
            "pr_curve": plots.plot_pr_curves(
                self.coco.recall_points, self.coco.pr_curve, self.coco.ap50, self.names, save_dir / "PR_curve.png"
            ),
            "f1_curve": plots.plot_f1_curve(
                self.conf.confidence_points, self.conf.f1_curve, self.names, save_dir / "F1_curve.png"
            ),
            "confusion_matrix": plots.plot_confusion_matrix(
                self.confusion, self.names, save_dir / "confusion_matrix_normalized.png"
            ),
        }


def evaluate(
    predictions: Iterable[Mapping],
    ground_truths: Iterable[Mapping],
    names: Sequence[str],
    iou_thres_confusion: float = 0.45,
    conf_thres_confusion: float = 0.25,
    max_dets: int = 100,
) -> EvalResult:
    """Score predictions against ground truth, all boxes xyxy in pixels of the original image.

    predictions: one mapping per image {image_id, boxes [K, 4], scores [K], classes [K] int};
        an image with no entry counts as "nothing detected".
    ground_truths: one mapping per image {image_id, width, height, boxes [M, 4], classes [M]}.
    names: class names; class ids index into it.
    max_dets: COCO's cap on detections per image and class (100 in the COCO protocol).
    """
    names = list(names)
    if not names:
        raise DataError("evaluate() got no class names; pass the dataset's `names` list")
    records = build_records(predictions, ground_truths, len(names))
    nc = len(names)
    gt_classes = [r.gt_classes for r in records]
    instances = np.bincount(np.concatenate([np.zeros(0, np.int64), *gt_classes]), minlength=nc)
    images = np.zeros(nc, dtype=np.int64)
    for cls in gt_classes:
        images[np.unique(cls)] += 1

    scores = np.concatenate([np.zeros(0)] + [r.scores for r in records])
    classes = np.concatenate([np.zeros(0, np.int64)] + [r.classes for r in records])
    tp = np.concatenate([np.zeros(0, bool)] + [true_positives(r) for r in records])
    return EvalResult(
        names=names,
        coco=coco_metrics(records, names, max_dets),
        conf=confidence_metrics(scores, classes, tp, instances),
        confusion=confusion_matrix(records, nc, iou_thres_confusion, conf_thres_confusion),
        images_per_class=images,
        instances_per_class=instances,
        records=records,
    )
