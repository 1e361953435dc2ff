"""IoU variants against values worked out by hand, and against torchvision's independent versions."""

import math

import pytest
import torch
from torchvision.ops import box_iou, complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou

from detforge.ops.iou import IOU_KINDS, aligned_iou


def pair(a, b):
    return torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)


@pytest.mark.parametrize("kind", IOU_KINDS)
def test_identical_boxes_score_one(kind):
    a, _ = pair([3.0, 4.0, 50.0, 20.0], [0, 0, 0, 0])
    assert aligned_iou(a, a, kind).item() == pytest.approx(1.0, abs=1e-6)


def test_disjoint_boxes():
    # (0,0,1,1) and (2,0,3,1): no overlap; enclosing box 3x1; centres 2 apart; diagonal² = 10.
    a, b = pair([0, 0, 1, 1], [2, 0, 3, 1])
    assert aligned_iou(a, b, "iou").item() == pytest.approx(0.0, abs=1e-9)
    assert aligned_iou(a, b, "giou").item() == pytest.approx(-1 / 3, abs=1e-6)
    assert aligned_iou(a, b, "diou").item() == pytest.approx(-4 / 10, abs=1e-6)
    assert aligned_iou(a, b, "ciou").item() == pytest.approx(-4 / 10, abs=1e-6)  # same aspect: v = 0


def test_shifted_box():
    # (0,0,2,2) vs (1,0,3,2): intersection 2, union 6; enclosing 3x2 = union; centres 1 apart, diagonal² 13.
    a, b = pair([0, 0, 2, 2], [1, 0, 3, 2])
    assert aligned_iou(a, b, "iou").item() == pytest.approx(1 / 3, abs=1e-6)
    assert aligned_iou(a, b, "giou").item() == pytest.approx(1 / 3, abs=1e-6)
    assert aligned_iou(a, b, "diou").item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-6)
    assert aligned_iou(a, b, "ciou").item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-6)


def test_ciou_aspect_ratio_term():
    # (0,0,2,2) inside (0,0,4,2): IoU 1/2, centres 1 apart, diagonal² 20, aspect 1 vs 2.
    a, b = pair([0, 0, 2, 2], [0, 0, 4, 2])
    v = 4 / math.pi**2 * (math.atan(2) - math.atan(1)) ** 2
    alpha = v / (1 - 0.5 + v)
    assert aligned_iou(a, b, "ciou").item() == pytest.approx(0.5 - 1 / 20 - alpha * v, abs=1e-6)


def test_agrees_with_torchvision_on_random_boxes():
    torch.manual_seed(0)
    xy = torch.rand(2, 200, 2) * 100
    boxes = torch.cat((xy, xy + torch.rand(2, 200, 2) * 60 + 1), -1).double()
    a, b = boxes
    assert torch.allclose(aligned_iou(a, b, "iou"), box_iou(a, b).diagonal(), atol=1e-6)
    assert torch.allclose(aligned_iou(a, b, "giou"), generalized_box_iou(a, b).diagonal(), atol=1e-6)
    assert torch.allclose(aligned_iou(a, b, "diou"), 1 - distance_box_iou_loss(a, b), atol=1e-6)
    assert torch.allclose(aligned_iou(a, b, "ciou"), 1 - complete_box_iou_loss(a, b), atol=1e-6)


def test_broadcasts_and_stays_finite_on_degenerate_boxes():
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 8.0, 9.0]]).unsqueeze(1)  # [2, 1, 4]
    preds = torch.tensor(
        [[2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 9.0, 1.0], [0.0, 0.0, 10.0, 10.0]], requires_grad=True
    )
    out = aligned_iou(gts, preds, "ciou")
    assert out.shape == (2, 3)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(preds.grad).all()


def test_rejects_unknown_kind():
    a, b = pair([0, 0, 1, 1], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="kind"):
        aligned_iou(a, b, "siou")
