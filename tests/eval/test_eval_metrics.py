"""Metric code on hand-made cases whose answers can be worked out on paper."""

from __future__ import annotations

import numpy as np
import pytest

from detforge.errors import DataError
from detforge.eval import evaluate
from detforge.eval.metrics import greedy_match, pairwise_iou

NAMES = ["cat", "dog"]
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def gt(image_id, boxes, classes, size=640):
    return {"image_id": image_id, "width": size, "height": size, "boxes": np.array(boxes, float), "classes": classes}


def pred(image_id, boxes, scores, classes):
    return {"image_id": image_id, "boxes": np.array(boxes, float), "scores": scores, "classes": classes}


def test_perfect_predictions_score_one():
    gts = [
        gt(1, [[10, 10, 60, 80], [200, 200, 400, 380]], [0, 1]),
        gt(2, [[5, 5, 25, 30]], [1]),
    ]
    preds = [pred(g["image_id"], g["boxes"], [0.9] * len(g["classes"]), g["classes"]) for g in gts]
    r = evaluate(preds, gts, NAMES)
    s = r.summary()
    assert s["mAP50-95"] == pytest.approx(1.0)
    assert s["mAP50"] == pytest.approx(1.0)
    assert s["mAP75"] == pytest.approx(1.0)
    assert (s["precision"], s["recall"], s["f1"]) == (1.0, 1.0, 1.0)
    assert np.array_equal(r.confusion, np.diag([1, 2, 0]))
    assert r.instances_per_class.tolist() == [1, 2]
    assert r.images_per_class.tolist() == [1, 2]


def test_no_predictions_score_zero():
    gts = [gt(1, [[10, 10, 60, 80]], [0]), gt(2, [[5, 5, 25, 30]], [1])]
    r = evaluate([], gts, NAMES)
    s = r.summary()
    assert s["mAP50-95"] == 0.0 and s["mAP50"] == 0.0
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    assert s["best_f1_conf"] is None
    assert r.confusion[2].tolist() == [1, 1, 0]  # both objects missed: background row


@pytest.mark.parametrize("shift", [24, 10, 3])
def test_shifted_box_scores_fraction_of_thresholds_passed(shift):
    # A 100x100 box against a copy moved `shift` px right: IoU = (100 - shift) / (100 + shift).
    iou = (100 - shift) / (100 + shift)
    expected = float(np.mean(iou >= COCO_IOU_THRESHOLDS))
    r = evaluate([pred(1, [[shift, 0, 100 + shift, 100]], [0.8], [0])], [gt(1, [[0, 0, 100, 100]], [0])], NAMES)
    s = r.summary()
    assert pairwise_iou(np.array([[0, 0, 100, 100.0]]), np.array([[shift, 0, 100 + shift, 100.0]]))[0, 0] == (
        pytest.approx(iou)
    )
    assert s["mAP50-95"] == pytest.approx(expected)
    assert s["mAP50"] == 1.0
    assert s["mAP75"] == (1.0 if iou >= 0.75 else 0.0)
    assert s["mAP_large"] == pytest.approx(expected)  # 100 * 100 > 96 ** 2
    assert s["mAP_small"] is None and s["mAP_medium"] is None  # nothing of that size to score


def test_wrong_class_scores_zero_and_lands_off_diagonal():
    r = evaluate([pred(1, [[0, 0, 50, 50]], [0.9], [1])], [gt(1, [[0, 0, 50, 50]], [0])], NAMES)
    assert r.map50_95 == 0.0 and r.map50 == 0.0
    assert r.summary()["AP50/dog"] is None  # dog has no ground truth: not averaged in
    expected = np.zeros((3, 3), int)
    expected[1, 0] = 1  # predicted dog, true cat
    assert np.array_equal(r.confusion, expected)


def test_confusion_matrix_background_and_thresholds():
    gts = [gt(1, [[0, 0, 50, 50], [100, 100, 150, 150]], [0, 1])]
    preds = [
        pred(
            1,
            [[0, 0, 50, 50], [300, 300, 350, 350], [100, 100, 150, 150], [0, 0, 50, 50]],
            [0.9, 0.8, 0.2, 0.7],  # 0.2 is under the 0.25 confusion threshold; 0.7 duplicates the cat
            [0, 1, 1, 0],
        )
    ]
    r = evaluate(preds, gts, NAMES)
    expected = np.zeros((3, 3), int)
    expected[0, 0] = 1  # cat found
    expected[1, 2] = 1  # dog box on nothing
    expected[0, 2] = 1  # duplicate cat box
    expected[2, 1] = 1  # dog missed (its only detection is below conf 0.25)
    assert np.array_equal(r.confusion, expected)
    looser = evaluate(preds, gts, NAMES, conf_thres_confusion=0.1)
    assert looser.confusion[1, 1] == 1 and looser.confusion[2, 1] == 0


def test_greedy_match_gives_box_to_highest_score():
    iou = np.array([[0.9, 0.6]])
    assert greedy_match(iou, iou >= 0.5, np.array([0.3, 0.8])).tolist() == [-1, 0]
    assert greedy_match(iou, iou >= 0.5, np.array([0.8, 0.3])).tolist() == [0, -1]


def test_best_f1_confidence_on_hand_made_set():
    # cat: 4 objects in 4 images; detections by score: TP .9, TP .8, FP .7, TP .6, FP .3.
    # Keeping score >= t: t=.9 P1 R.25 | .8 P1 R.5 | .7 P2/3 R.5 | .6 P.75 R.75 (F1 .75) | .3 P.6 R.75.
    # dog: one object found at .95 (F1 1 for any t <= .95). Mean F1 peaks at t = .6: (.75 + 1) / 2.
    gts = [gt(i, [[0, 0, 40, 40]], [0]) for i in range(4)] + [gt(9, [[0, 0, 40, 40]], [1])]
    hit, miss = [0, 0, 40, 40], [200, 200, 240, 240]
    preds = [
        pred(0, [hit], [0.9], [0]),
        pred(1, [hit, miss], [0.8, 0.3], [0, 0]),
        pred(2, [miss, hit], [0.7, 0.6], [0, 0]),
        pred(9, [hit], [0.95], [1]),
    ]
    r = evaluate(preds, gts, NAMES)
    s = r.summary()
    assert s["best_f1_conf"] == pytest.approx(0.6)
    assert s["precision"] == pytest.approx((0.75 + 1) / 2)
    assert s["recall"] == pytest.approx((0.75 + 1) / 2)
    assert s["f1"] == pytest.approx((0.75 + 1) / 2)
    assert r.conf.class_precision.tolist() == pytest.approx([0.75, 1.0])
    # the plotted curve agrees with the exact search wherever the grid hits the plateau (.3, .6]
    mean_curve = r.conf.f1_curve.mean(0)
    assert mean_curve.max() == pytest.approx(0.875)
    assert 0.3 < r.conf.confidence_points[mean_curve.argmax()] <= 0.6


def test_small_medium_large_split():
    # one class; small 20x20 (400 px^2), medium 50x50, large 200x200; medium is missed.
    boxes = [[0, 0, 20, 20], [100, 100, 150, 150], [300, 300, 500, 500]]
    r = evaluate([pred(1, [boxes[0], boxes[2]], [0.9, 0.8], [0, 0])], [gt(1, boxes, [0, 0, 0])], NAMES)
    s = r.summary()
    assert s["mAP_small"] == 1.0
    assert s["mAP_medium"] == 0.0
    assert s["mAP_large"] == 1.0
    # all sizes: precision 1 up to recall 2/3, i.e. at 67 of COCO's 101 recall thresholds
    assert s["mAP50"] == pytest.approx(67 / 101)


def test_max_dets_caps_detections_per_image():
    # 100 confident false positives outrank the one true box; COCO's default cap of 100 drops it.
    fps = [[300 + i, 300, 310 + i, 310] for i in range(100)]
    preds = [pred(1, [*fps, [0, 0, 50, 50]], [0.9] * 100 + [0.5], [0] * 101)]
    gts = [gt(1, [[0, 0, 50, 50]], [0])]
    assert evaluate(preds, gts, NAMES).map50 == 0.0
    assert evaluate(preds, gts, NAMES, max_dets=300).map50 == pytest.approx(1 / 101)


def test_per_class_table_lists_classes_with_ground_truth():
    gts = [gt("a.jpg", [[10, 10, 60, 80]], [0])]
    r = evaluate([pred("a.jpg", [[10, 10, 60, 80]], [0.9], [0])], gts, NAMES)
    lines = r.per_class_table().splitlines()
    assert lines[0].split() == ["class", "images", "instances", "P", "R", "AP50", "AP50-95"]
    assert lines[1].split() == ["all", "1", "1", "1.000", "1.000", "1.000", "1.000"]
    assert lines[2].split()[0] == "cat" and len(lines) == 3  # dog has no instances


def test_bad_input_raises_one_line_errors():
    gts = [gt(1, [[0, 0, 10, 10]], [0])]
    with pytest.raises(DataError, match="class id 5"):
        evaluate([pred(1, [[0, 0, 10, 10]], [0.9], [5])], gts, NAMES)
    with pytest.raises(DataError, match="no ground truth"):
        evaluate([pred(2, [[0, 0, 10, 10]], [0.9], [0])], gts, NAMES)
    with pytest.raises(DataError, match="expected \\[N, 4\\]"):
        evaluate([pred(1, [[0, 0, 10]], [0.9], [0])], gts, NAMES)
    with pytest.raises(DataError, match="scores"):
        evaluate([pred(1, [[0, 0, 10, 10]], [0.9, 0.8], [0])], gts, NAMES)
