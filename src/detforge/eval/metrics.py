"""Confidence-dependent metrics: precision / recall / F1 at the best-F1 confidence, and the confusion matrix.

COCO's AP averages over every confidence; a user deploying a model needs one threshold and what
it buys. Like Ultralytics, detections are matched to ground truth greedily in descending
confidence (each takes the unclaimed same-class box of highest IoU >= 0.5); per class, precision
and recall are then functions of the confidence threshold, and the threshold that maximizes F1
averaged over the classes present in the ground truth is reported.

Two deliberate differences from Ultralytics: P and R are exact step functions of the threshold
("keep detections with score >= t"), not linearly interpolated between detection scores, and
the best threshold is searched over the detection scores themselves, not a smoothed 1000-point
grid; so the reported P/R/F1 are those of an actual threshold. A class with nothing kept has
precision 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from detforge.eval.records import EvalImage

MATCH_IOU = 0.5
CURVE_POINTS = 1000


def pairwise_iou(gt_boxes: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """[M, 4] x [K, 4] xyxy -> IoU [M, K]."""
    return box_iou(torch.from_numpy(gt_boxes), torch.from_numpy(boxes)).numpy()


def greedy_match(iou: np.ndarray, eligible: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Match detections to ground truths one-to-one, highest score first.

    iou, eligible: [M, K] (gt x detection); scores: [K]. Each detection, in descending score,
    claims the unclaimed eligible ground truth with the highest IoU. Returns the matched gt index
    per detection [K], -1 where unmatched.
    """
    match = np.full(iou.shape[1], -1, dtype=np.int64)
    if iou.size == 0:
        return match
    claimed = np.zeros(iou.shape[0], dtype=bool)
    order = np.argsort(-scores, kind="stable")
    for j in order[eligible[:, order].any(0)]:
        available = np.where(eligible[:, j] & ~claimed, iou[:, j], -1.0)
        k = int(available.argmax())
        if available[k] >= 0:
            match[j] = k
            claimed[k] = True
    return match


def true_positives(record: EvalImage, iou_thres: float = MATCH_IOU) -> np.ndarray:
    """[K] bool: detection matched to a same-class ground truth at IoU >= iou_thres."""
    iou = pairwise_iou(record.gt_boxes, record.boxes)
    eligible = (iou >= iou_thres) & (record.gt_classes[:, None] == record.classes[None, :])
    return greedy_match(iou, eligible, record.scores) >= 0


@dataclass(frozen=True)
class ConfidenceMetrics:
    """P / R / F1 at the best-F1 confidence, and the F1-confidence curves for plotting.

    class_precision, class_recall: [C] at `confidence` (nan for classes without ground truth).
    f1_curve: [C, 1000] F1 at each of `confidence_points` [1000] (0..1); nan rows for classes
    without ground truth.
    """

    precision: float
    recall: float
    f1: float
    confidence: float
    class_precision: np.ndarray
    class_recall: np.ndarray
    f1_curve: np.ndarray
    confidence_points: np.ndarray


def _f1(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    denom = p + r
    return np.divide(2 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)


def _pr_at(scores_desc: np.ndarray, cum_tp: np.ndarray, n_gt: int, thresholds: np.ndarray) -> tuple:
    """Precision and recall of one class when keeping detections with score >= each threshold."""
    kept = np.searchsorted(-scores_desc, -thresholds, side="right")
    tp = np.where(kept > 0, cum_tp[np.maximum(kept - 1, 0)], 0) if len(cum_tp) else np.zeros(len(kept))
    precision = np.divide(tp, kept, out=np.zeros(len(kept)), where=kept > 0)
    return precision, tp / n_gt


def confidence_metrics(
    scores: np.ndarray, classes: np.ndarray, tp: np.ndarray, gt_counts: np.ndarray
) -> ConfidenceMetrics:
    """Best-F1 operating point over all detections.

    scores, classes, tp: [N] for every detection of the set; gt_counts: [C] ground truths per class.
    Mean F1 over the classes with ground truth is a sum of per-class step functions, so it is
    evaluated exactly at every distinct score by accumulating each class's jumps (O(N log N)).
    """
    num_classes = len(gt_counts)
    present = np.flatnonzero(gt_counts > 0)
    grid = np.linspace(0.0, 1.0, CURVE_POINTS)
    f1_curve = np.full((num_classes, CURVE_POINTS), np.nan)
    per_class = {}
    jump_scores, jump_f1 = [], []
    for c in present:
        mask = classes == c
        order = np.argsort(-scores[mask], kind="stable")
        s, cum_tp = scores[mask][order], np.cumsum(tp[mask][order])
        per_class[c] = (s, cum_tp)
        f1_curve[c] = _f1(*_pr_at(s, cum_tp, gt_counts[c], grid))
        if len(s):
            last_of_tie = np.r_[s[1:] != s[:-1], True]  # F1 after every detection with this score is kept
            steps = s[last_of_tie]
            f1 = _f1(*_pr_at(s, cum_tp, gt_counts[c], steps))
            jump_scores.append(steps)
            jump_f1.append(np.diff(f1, prepend=0.0))

    best_conf, best = float("nan"), (0.0, 0.0, 0.0)
    class_p = np.full(num_classes, np.nan)
    class_r = np.full(num_classes, np.nan)
    if jump_scores and len(present):
        all_scores, deltas = np.concatenate(jump_scores), np.concatenate(jump_f1)
        order = np.argsort(-all_scores, kind="stable")
        all_scores, mean_f1 = all_scores[order], np.cumsum(deltas[order]) / len(present)
        at_score = np.r_[all_scores[1:] != all_scores[:-1], True]  # all classes' jumps at this score done
        candidates, values = all_scores[at_score], mean_f1[at_score]
        best_conf = float(candidates[int(values.argmax())])  # first max = highest threshold among ties
    for c in present:
        if np.isnan(best_conf):
            class_p[c], class_r[c] = 0.0, 0.0
            continue
        p, r = _pr_at(*per_class[c], gt_counts[c], np.array([best_conf]))
        class_p[c], class_r[c] = p[0], r[0]
    if len(present):
        p, r = class_p[present], class_r[present]
        best = (float(p.mean()), float(r.mean()), float(_f1(p, r).mean()))
    return ConfidenceMetrics(*best, best_conf, class_p, class_r, f1_curve, grid)


def confusion_matrix(
    records: Sequence[EvalImage], num_classes: int, iou_thres: float = 0.45, conf_thres: float = 0.25
) -> np.ndarray:
    """Counts [C + 1, C + 1] indexed [predicted, true]; index C is background.

    Detections with score > conf_thres are matched class-agnostically (IoU > iou_thres, highest
    score first), so a box of the wrong class lands off the diagonal instead of on the background
    row and column. Unmatched ground truth counts as [background, true]; unmatched detections as
    [predicted, background].
    """
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    bg = num_classes
    for r in records:
        keep = r.scores > conf_thres
        boxes, scores, classes = r.boxes[keep], r.scores[keep], r.classes[keep]
        iou = pairwise_iou(r.gt_boxes, boxes)
        match = greedy_match(iou, iou > iou_thres, scores)
        hit = match >= 0
        np.add.at(matrix, (classes[hit], r.gt_classes[match[hit]]), 1)
        np.add.at(matrix, (classes[~hit], bg), 1)
        missed = np.ones(len(r.gt_classes), dtype=bool)
        missed[match[hit]] = False
        np.add.at(matrix, (bg, r.gt_classes[missed]), 1)
    return matrix
