"""DetectionLoss: numerical parity with Ultralytics' v8DetectionLoss, batching, objectness, class weights."""

import types

import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from detforge.assign import TaskAlignedAssigner, pad_targets
from detforge.errors import ConfigError, DataError
from detforge.losses import DetectionLoss
from detforge.models.heads.base import HeadOutput
from detforge.ops.boxes import dfl_decode, distance_to_xyxy

STRIDES = (8, 16, 32)
REG_MAX = 16


def anchors_for(size):
    points, strides = [], []
    for s in STRIDES:
        centres = torch.arange(size // s, dtype=torch.float32) * s + s / 2
        gy, gx = torch.meshgrid(centres, centres, indexing="ij")
        points.append(torch.stack((gx, gy), -1).reshape(-1, 2))
        strides.append(torch.full((gx.numel(),), float(s)))
    return torch.cat(points), torch.cat(strides)


def random_problem(batch=4, size=160, num_classes=3, boxes_per_image=(3, 0, 6, 2), obj=False, seed=0):
    """Random head logits and flat targets (xyxy pixels) for a `size`-px batch."""
    g = torch.Generator().manual_seed(seed)
    points, strides = anchors_for(size)
    n = points.shape[0]
    out = HeadOutput(
        box=torch.randn(batch, n, 4 * REG_MAX, generator=g),
        cls=torch.randn(batch, n, num_classes, generator=g) - 2,
        obj=torch.randn(batch, n, 1, generator=g) if obj else None,
        anchor_points=points,
        strides=strides,
    )
    total = sum(boxes_per_image)
    xy = torch.rand(total, 2, generator=g) * size * 0.8
    wh = torch.rand(total, 2, generator=g) * size * 0.5 + 3
    boxes = torch.cat((xy, (xy + wh).clamp(max=size)), -1)
    cls = torch.randint(0, num_classes, (total,), generator=g)
    batch_idx = torch.repeat_interleave(torch.arange(batch), torch.tensor(boxes_per_image))
    return out, boxes, cls, batch_idx


def ultralytics_loss(out, boxes, cls, batch_idx, size, num_classes, class_weights=None):
    """The reference: v8DetectionLoss of a yolov8n DetectionModel, fed the same logits and targets."""
    tasks = pytest.importorskip("ultralytics.nn.tasks")
    loss_mod = pytest.importorskip("ultralytics.utils.loss")
    model = tasks.DetectionModel("yolov8n.yaml", nc=num_classes, verbose=False)
    model.args = types.SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
    if class_weights is not None:
        model.class_weights = torch.tensor(class_weights)
    criterion = loss_mod.v8DetectionLoss(model)
    feats = [torch.zeros(out.box.shape[0], 1, size // s, size // s) for s in STRIDES]
    preds = {"boxes": out.box.transpose(1, 2), "scores": out.cls.transpose(1, 2), "feats": feats}
    xywh = torch.cat(((boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]), -1) / size
    batch = {"batch_idx": batch_idx.float(), "cls": cls.float().view(-1, 1), "bboxes": xywh}
    total, items = criterion(preds, batch)
    return total.sum(), items


@pytest.mark.parametrize("class_weights", [None, [0.5, 1.0, 3.0]])
def test_matches_ultralytics_v8_detection_loss(class_weights):
    out, boxes, cls, batch_idx = random_problem()
    total, items = DetectionLoss(3, class_weights=class_weights)(out, boxes, cls, batch_idx)
    ref_total, ref_items = ultralytics_loss(out, boxes, cls, batch_idx, 160, 3, class_weights)
    assert total.item() == pytest.approx(ref_total.item(), rel=1e-4)
    for ours, theirs in (("box", "box_loss"), ("cls", "cls_loss"), ("dfl", "dfl_loss")):
        assert items[ours].item() == pytest.approx(ref_items[theirs].item(), rel=1e-4)
    assert items["box"] > 0 and items["dfl"] > 0


def test_gradients_match_ultralytics():
    out, boxes, cls, batch_idx = random_problem(seed=3)
    box_a, cls_a = out.box.clone().requires_grad_(), out.cls.clone().requires_grad_()
    box_b, cls_b = out.box.clone().requires_grad_(), out.cls.clone().requires_grad_()
    ours = HeadOutput(box_a, cls_a, None, out.anchor_points, out.strides)
    theirs = HeadOutput(box_b, cls_b, None, out.anchor_points, out.strides)
    DetectionLoss(3)(ours, boxes, cls, batch_idx)[0].backward()
    ultralytics_loss(theirs, boxes, cls, batch_idx, 160, 3)[0].backward()
    assert torch.allclose(box_a.grad, box_b.grad, atol=1e-6, rtol=1e-3)
    assert torch.allclose(cls_a.grad, cls_b.grad, atol=1e-6, rtol=1e-3)


def test_batch_of_copies_gives_the_same_terms_and_scales_the_total():
    out, boxes, cls, batch_idx = random_problem(batch=1, boxes_per_image=(5,), obj=True, seed=4)
    criterion = DetectionLoss(3)
    single_total, single = criterion(out, boxes, cls, batch_idx)
    doubled = HeadOutput(
        out.box.repeat(2, 1, 1),
        out.cls.repeat(2, 1, 1),
        out.obj.repeat(2, 1, 1),
        out.anchor_points,
        out.strides,
    )
    total, items = criterion(doubled, boxes.repeat(2, 1), cls.repeat(2), torch.tensor([0] * 5 + [1] * 5))
    for name in ("box", "dfl", "cls", "obj"):
        assert items[name].item() == pytest.approx(single[name].item(), rel=1e-5)
    assert total.item() == pytest.approx(2 * single_total.item(), rel=1e-5)


def test_objectness_targets_are_the_iou_of_the_assigned_box():
    out, boxes, cls, batch_idx = random_problem(batch=2, boxes_per_image=(4, 2), obj=True, seed=5)
    obj = torch.zeros_like(out.obj, requires_grad=True)  # logit 0: dBCE/dx = 0.5 - target
    gain = 2.0
    criterion = DetectionLoss(3, obj=gain)
    total, items = criterion(
        HeadOutput(out.box, out.cls, obj, out.anchor_points, out.strides), boxes, cls, batch_idx
    )
    total.backward()
    # Recompute the assignment, then the IoUs with torchvision.
    batch = obj.shape[0]
    pred_boxes = distance_to_xyxy(out.anchor_points, dfl_decode(out.box, REG_MAX) * out.strides[:, None])
    gts = pad_targets(boxes, cls, batch_idx, batch)
    assigned = TaskAlignedAssigner()(out.cls.sigmoid(), pred_boxes, out.anchor_points, *gts, out.strides)
    score_sum = assigned.scores.sum().clamp(min=1)
    target = 0.5 - obj.grad.squeeze(-1) * score_sum / (gain * batch)  # undo the sum / score_sum, times B

    fg = assigned.fg_mask
    assert fg.sum() > 10
    expected = box_iou(pred_boxes[fg], assigned.boxes[fg]).diagonal()
    assert torch.allclose(target[fg], expected, atol=1e-4)
    assert torch.allclose(target[~fg], torch.zeros(()), atol=1e-5)
    assert "obj" in items and set(items) == {"box", "dfl", "cls", "obj"}


def test_no_targets_leaves_only_background_classification():
    out, _, _, _ = random_problem(batch=2, boxes_per_image=(0, 0), obj=True, seed=6)
    box = out.box.clone().requires_grad_()
    out = HeadOutput(box, out.cls, out.obj, out.anchor_points, out.strides)
    empty = torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    total, items = DetectionLoss(3)(out, *empty)
    assert items["box"] == 0 and items["dfl"] == 0
    # Nothing is positive: cls and obj are BCE towards 0, summed (the target mass clamps to 1).
    expected_cls = 0.5 * nn.functional.softplus(out.cls).sum()
    assert items["cls"].item() == pytest.approx(expected_cls.item(), rel=1e-5)
    assert items["obj"].item() == pytest.approx(nn.functional.softplus(out.obj).sum().item(), rel=1e-5)
    total.backward()
    assert box.grad is not None and box.grad.abs().sum() == 0


def test_class_weights_scale_the_classification_term_only():
    out, boxes, cls, batch_idx = random_problem(seed=7)
    _, plain = DetectionLoss(3)(out, boxes, cls, batch_idx)
    _, weighted = DetectionLoss(3, class_weights=[2.0, 2.0, 2.0])(out, boxes, cls, batch_idx)
    assert weighted["cls"].item() == pytest.approx(2 * plain["cls"].item(), rel=1e-5)
    assert weighted["box"] == plain["box"] and weighted["dfl"] == plain["dfl"]
    with pytest.raises(ConfigError, match="one weight per class"):
        DetectionLoss(3, class_weights=[1.0, 2.0])


def test_gains_are_applied_to_the_terms():
    out, boxes, cls, batch_idx = random_problem(seed=8)
    total, base = DetectionLoss(3, box=1.0, dfl=1.0, cls=1.0)(out, boxes, cls, batch_idx)
    _, scaled = DetectionLoss(3, box=3.0, dfl=5.0, cls=0.25)(out, boxes, cls, batch_idx)
    assert scaled["box"].item() == pytest.approx(3 * base["box"].item(), rel=1e-6)
    assert scaled["dfl"].item() == pytest.approx(5 * base["dfl"].item(), rel=1e-6)
    assert scaled["cls"].item() == pytest.approx(0.25 * base["cls"].item(), rel=1e-6)
    assert total.item() == pytest.approx(4 * sum(v.item() for v in base.values()), rel=1e-6)  # × batch size


class TinyHead(nn.Module):
    """A 1×1-conv 'head' on fixed random features, enough to check that the loss trains."""

    def __init__(self, num_classes, size, channels=8, obj=True):
        super().__init__()
        self.num_classes = num_classes
        self.outs = nn.ModuleList(
            nn.Conv2d(channels, 4 * REG_MAX + num_classes + int(obj), 1) for _ in STRIDES
        )
        self.obj = obj
        self.points, self.strides = anchors_for(size)

    def forward(self, feats):
        maps = torch.cat([conv(f).flatten(2) for conv, f in zip(self.outs, feats)], -1).transpose(1, 2)
        box, cls, obj = maps.split((4 * REG_MAX, self.num_classes, int(self.obj)), -1)
        return HeadOutput(box, cls, obj if self.obj else None, self.points, self.strides)


def test_one_sgd_step_lowers_the_loss():
    torch.manual_seed(0)
    size = 128
    _, boxes, cls, batch_idx = random_problem(batch=2, size=size, boxes_per_image=(3, 2), seed=9)
    head = TinyHead(3, size)
    feats = [torch.randn(2, 8, size // s, size // s) for s in STRIDES]
    criterion = DetectionLoss(3)
    optimizer = torch.optim.SGD(head.parameters(), lr=1e-3, momentum=0.0)
    before, _ = criterion(head(feats), boxes, cls, batch_idx)
    before.backward()
    optimizer.step()
    after, _ = criterion(head(feats), boxes, cls, batch_idx)
    assert after.item() < before.item()


def test_rejects_a_head_that_does_not_fit():
    out, boxes, cls, batch_idx = random_problem(seed=10)
    with pytest.raises(ValueError, match="classes"):
        DetectionLoss(5)(out, boxes, cls, batch_idx)


def test_rejects_class_ids_the_model_does_not_have():
    out, boxes, cls, batch_idx = random_problem(seed=11)
    cls = cls.clone()
    cls[0] = 3
    with pytest.raises(DataError, match="class id 3, outside 0..2"):
        DetectionLoss(3)(out, boxes, cls, batch_idx)


def test_accepts_class_and_image_columns():
    out, boxes, cls, batch_idx = random_problem(seed=12)
    _, flat = DetectionLoss(3)(out, boxes, cls, batch_idx)
    _, columns = DetectionLoss(3)(out, boxes, cls.float().view(-1, 1), batch_idx.float().view(-1, 1))
    assert all(torch.equal(flat[k], columns[k]) for k in flat)
