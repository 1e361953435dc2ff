"""YOLOX objectness loss (`yolox_obj`): binary foreground target normalised by the positives, its own gain,
and the assigner fed the inference score σ(cls)·σ(obj)."""

import math

import pytest
import torch
from torch import nn

from detforge.assign.tal import Assignment
from detforge.losses import DetectionLoss, ObjectnessLoss
from detforge.models.heads.base import HeadOutput
from detforge.registry import LOSSES


class FixedAssigner(nn.Module):
    """Anchors 0 and 2 of 4 are positive for the one gt; records the scores it was given."""

    def forward(self, scores, pred_boxes, anchors, gt_boxes, gt_labels, gt_mask, strides=None):
        self.scores = scores.clone()
        fg = torch.tensor([[True, False, True, False]])
        boxes = gt_boxes[:, :1].expand(1, 4, 4).clone()
        target = torch.zeros(1, 4, 2)
        target[0, [0, 2], 1] = 0.8
        return Assignment(boxes, target, fg, torch.zeros(1, 4, dtype=torch.long))


def problem():
    anchors = torch.tensor([[4.0, 4.0], [12.0, 4.0], [4.0, 12.0], [12.0, 12.0]])
    out = HeadOutput(box=torch.zeros(1, 4, 4 * 4), cls=torch.tensor([[[0.0, 1.0], [0.0, -1.0], [0.0, 2.0],
                                                                      [0.0, 0.0]]]),
                     obj=torch.tensor([[[0.0], [0.0], [2.0], [-2.0]]]), anchor_points=anchors,
                     strides=torch.full((4,), 8.0))
    return out, torch.tensor([[0.0, 0.0, 16.0, 16.0]]), torch.tensor([1]), torch.tensor([0])


def test_objectness_term_matches_hand_computation():
    out, boxes, cls, batch_idx = problem()
    loss = ObjectnessLoss(num_classes=2, reg_max=4, assigner=FixedAssigner())
    _, terms = loss(out, boxes, cls, batch_idx)
    # targets 1, 0, 1, 0 on logits 0, 0, 2, -2: BCE = ln 2, ln 2, ln(1 + e^-2), ln(1 + e^-2); 2 positives
    by_hand = 0.5 * (2 * math.log(2) + 2 * math.log1p(math.exp(-2))) / 2
    assert float(terms["obj"]) == pytest.approx(by_hand, rel=1e-6)
    plain_terms = DetectionLoss(num_classes=2, reg_max=4, assigner=FixedAssigner())(out, boxes, cls, batch_idx)[1]
    for name in ("box", "dfl", "cls"):  # everything but objectness is the yolov8 loss
        assert float(terms[name]) == pytest.approx(float(plain_terms[name]))


def test_assigner_sees_the_inference_score():
    out, boxes, cls, batch_idx = problem()
    assigner = FixedAssigner()
    ObjectnessLoss(num_classes=2, reg_max=4, assigner=assigner)(out, boxes, cls, batch_idx)
    assert torch.allclose(assigner.scores, out.cls.sigmoid() * out.obj.sigmoid())


def test_registered_with_the_documented_default_gain():
    assert LOSSES.get("yolox_obj") is ObjectnessLoss
    assert ObjectnessLoss(num_classes=2).obj_gain == 0.5
    out, boxes, cls, batch_idx = problem()
    no_obj = HeadOutput(out.box, out.cls, None, out.anchor_points, out.strides)
    _, terms = ObjectnessLoss(num_classes=2, reg_max=4, assigner=FixedAssigner())(no_obj, boxes, cls, batch_idx)
    assert "obj" not in terms
