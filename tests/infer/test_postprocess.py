"""NMS and coordinate mapping on hand-made predictions."""

import torch

from detforge.infer.postprocess import non_max_suppression, scale_boxes_to_original


def predictions(rows, num_classes=2):
    """rows of (x1, y1, x2, y2, class, score) → [1, N, 4 + C]."""
    out = torch.zeros(1, len(rows), 4 + num_classes)
    for i, (x1, y1, x2, y2, c, s) in enumerate(rows):
        out[0, i, :4] = torch.tensor([x1, y1, x2, y2])
        out[0, i, 4 + c] = s
    return out


def test_overlapping_same_class_boxes_are_suppressed():
    pred = predictions([(0, 0, 10, 10, 0, 0.9), (1, 1, 10, 10, 0, 0.8), (50, 50, 60, 60, 0, 0.7)])
    (det,) = non_max_suppression(pred, conf=0.25, iou=0.5)
    assert det[:, 4].tolist() == [0.8999999761581421, 0.699999988079071]


def test_nms_is_per_class_unless_agnostic():
    pred = predictions([(0, 0, 10, 10, 0, 0.9), (0, 0, 10, 10, 1, 0.8)])
    assert len(non_max_suppression(pred, iou=0.5)[0]) == 2
    assert len(non_max_suppression(pred, iou=0.5, agnostic=True)[0]) == 1


def test_confidence_classes_and_max_det_filters():
    rows = [(i * 20, 0, i * 20 + 10, 10, i % 2, 0.1 + i * 0.1) for i in range(8)]
    pred = predictions(rows)
    assert len(non_max_suppression(pred, conf=0.45)[0]) == 4
    assert set(non_max_suppression(pred, conf=0.0, classes=[1])[0][:, 5].tolist()) == {1.0}
    det = non_max_suppression(pred, conf=0.0, max_det=3)[0]
    assert len(det) == 3 and det[0, 4] > det[-1, 4]


def test_pre_nms_topk_keeps_best_candidates():
    rows = [(i * 20, 0, i * 20 + 10, 10, 0, 0.3 + i * 0.05) for i in range(10)]
    det = non_max_suppression(predictions(rows), conf=0.1, pre_nms_topk=2)[0]
    assert len(det) == 2 and det[:, 0].tolist() == [180.0, 160.0]


def test_multi_label_keeps_each_class_above_threshold():
    pred = predictions([(0, 0, 10, 10, 0, 0.9)])
    pred[0, 0, 5] = 0.5
    assert len(non_max_suppression(pred, conf=0.3)[0]) == 1
    assert len(non_max_suppression(pred, conf=0.3, multi_label=True)[0]) == 2


def test_scale_back_undoes_letterbox():
    # a 200x100 (w x h) image letterboxed into 64x64: ratio 0.32, vertical padding 16
    boxes = torch.tensor([[32 * 0.32 + 0, 10 * 0.32 + 16, 100 * 0.32, 90 * 0.32 + 16]])
    back = scale_boxes_to_original(boxes, 0.32, (0, 16), (100, 200))
    assert torch.allclose(back, torch.tensor([[32.0, 10.0, 100.0, 90.0]]), atol=1e-4)
    clipped = scale_boxes_to_original(torch.tensor([[-5.0, 0.0, 70.0, 70.0]]), 0.32, (0, 16), (100, 200))
    assert clipped[0].tolist() == [0.0, 0.0, 200.0, 100.0]
