"""COCO box metrics through faster-coco-eval, built in memory from `EvalImage`s.

Why faster-coco-eval: it is pycocotools' algorithm (same matching, same 101 recall thresholds,
same area ranges) with the per-image work in C++, so the numbers are the ones papers report.

How our records become COCO objects:
  - images get ids 1..N in ground-truth order (the caller's ids may be strings or anything);
  - class index c becomes category id c + 1 (COCO treats annotation/category id 0 as "unmatched");
  - boxes go from xyxy to xywh, `area` is the box's w * h for ground truth and detections alike,
    and every ground truth has `iscrowd` 0. On the official COCO json, `area` is the *mask*
    area, so the small/medium/large split there can differ slightly from ours.

Difference from Ultralytics' mAP50-95: Ultralytics integrates the precision envelope with the
trapezoid rule over 101 linearly interpolated recall points and scores every detection it is
given (max-det 300); COCO averages the envelope sampled at 101 recall thresholds (the precision
at the first point whose recall reaches each threshold) and keeps only the top `max_dets`
detections per image and class (100 by default). The two usually agree within a few tenths of a
point; pass `max_dets=300` to score the same boxes Ultralytics does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from detforge.eval.records import EvalImage

logger = logging.getLogger(__name__)

AREA_RANGES = {"small": [0.0, 32.0**2], "medium": [32.0**2, 96.0**2], "large": [96.0**2, 1e5**2]}


@dataclass(frozen=True)
class CocoMetrics:
    """COCO summary numbers (nan where COCO has nothing to average, e.g. no small objects).

    ap50_95, ap50: [C] per class (nan for a class without ground truth).
    pr_curve: [C, 101] interpolated precision at IoU 0.5 at each of `recall_points` [101], the
    exact curve AP50 averages; nan for a class without ground truth.
    """

    map50_95: float
    map50: float
    map75: float
    map_small: float
    map_medium: float
    map_large: float
    ap50_95: np.ndarray
    ap50: np.ndarray
    pr_curve: np.ndarray
    recall_points: np.ndarray


def _xywh(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] xyxy -> [N, 4] xywh."""
    out = boxes.copy()
    out[:, 2:] -= boxes[:, :2]
    return out


def _annotations(image_id: int, boxes: np.ndarray, classes: np.ndarray, first_id: int) -> list[dict]:
    xywh = _xywh(boxes)
    areas = xywh[:, 2] * xywh[:, 3]
    return [
        {
            "id": first_id + i,
            "image_id": image_id,
            "category_id": int(c) + 1,
            "bbox": b,
            "area": float(a),
            "iscrowd": 0,
        }
        for i, (b, c, a) in enumerate(zip(xywh.tolist(), classes.tolist(), areas))
    ]


def coco_datasets(records: Sequence[EvalImage], names: Sequence[str]) -> tuple[dict, dict]:
    """Ground-truth and detection datasets in COCO json layout (see module docstring for ids)."""
    images = [{"id": i + 1, "width": r.width, "height": r.height} for i, r in enumerate(records)]
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(names)]
    gts: list[dict] = []
    dts: list[dict] = []
    for i, r in enumerate(records):
        gts += _annotations(i + 1, r.gt_boxes, r.gt_classes, len(gts) + 1)
        start = len(dts)
        dts += _annotations(i + 1, r.boxes, r.classes, start + 1)
        for ann, score in zip(dts[start:], r.scores.tolist()):
            ann["score"] = score
    gt = {"images": images, "categories": categories, "annotations": gts}
    dt = {"images": images, "categories": categories, "annotations": dts}
    return gt, dt


def _mean_valid(values: np.ndarray) -> float:
    """COCO marks 'nothing to score' with -1; average the rest, nan if none."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else float("nan")


def coco_metrics(records: Sequence[EvalImage], names: Sequence[str], max_dets: int = 100) -> CocoMetrics:
    """Run COCOeval (bbox) on the records; `max_dets` caps detections per image and class."""
    gt_json, dt_json = coco_datasets(records, names)
    quiet = logger.debug
    coco_gt = COCO(gt_json, print_function=quiet)
    coco_dt = COCO(dt_json, print_function=quiet)
    evaluator = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", ranges=AREA_RANGES, print_function=quiet)
    evaluator.params.maxDets = [1, 10, max_dets]
    evaluator.run()

    # precision: [T=10 IoU thresholds, R=101 recall thresholds, K classes, A areas, M max-dets]
    precision = np.asarray(evaluator.eval["precision"])[:, :, :, 0, -1]
    stats = [float(s) if s > -1 else float("nan") for s in evaluator.stats[:6]]
    num_classes = len(names)
    ap50_95 = np.array([_mean_valid(precision[:, :, k]) for k in range(num_classes)])
    ap50 = np.array([_mean_valid(precision[0, :, k]) for k in range(num_classes)])
    pr_curve = np.where(precision[0].T > -1, precision[0].T, np.nan)
    return CocoMetrics(
        *stats, ap50_95=ap50_95, ap50=ap50, pr_curve=pr_curve, recall_points=evaluator.params.recThrs.copy()
    )


def coco_results(records: Sequence[EvalImage], category_ids: Sequence[int]) -> list[dict]:
    """Predictions as a COCO results list: image_id (the caller's), category_id, bbox xywh, score.

    category_ids[c] is the dataset's category id for class index c (e.g. COCO's 80 -> 91 map).
    """
    out: list[dict] = []
    for r in records:
        for box, score, cls in zip(_xywh(r.boxes).tolist(), r.scores.tolist(), r.classes.tolist()):
            out.append(
                {
                    "image_id": r.image_id,
                    "category_id": int(category_ids[cls]),
                    "bbox": [round(v, 4) for v in box],
                    "score": round(score, 6),
                }
            )
    return out
