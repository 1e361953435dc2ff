"""Task-Aligned Assigner: hand-worked cases, padding, batching, and agreement with Ultralytics."""

import pytest
import torch

from detforge.assign import TaskAlignedAssigner, pad_targets


def row_anchors(xs, y=50.0):
    return torch.tensor([[x, y] for x in xs], dtype=torch.float32)


def grid_anchors(size, strides):
    points, stride_list = [], []
    for s in strides:
        centres = torch.arange(size // s, dtype=torch.float32) * s + s / 2
        gy, gx = torch.meshgrid(centres, centres, indexing="ij")
        points.append(torch.stack((gx, gy), -1).reshape(-1, 2))
        stride_list.append(torch.full((gx.numel(),), float(s)))
    return torch.cat(points), torch.cat(stride_list)


def one_image(gt_boxes, gt_labels):
    boxes = torch.tensor([gt_boxes], dtype=torch.float32)
    return boxes, torch.tensor([gt_labels]), torch.ones(1, len(gt_labels), dtype=torch.bool)


def test_single_gt_topk_and_soft_targets_by_hand():
    # gt (0,0,100,100), class 1 of 2. Anchors at x = 10..110 on y = 50; the last is outside.
    # Anchor i predicts (0, 0, 100, 100·iou_i), whose IoU with the gt is exactly iou_i.
    ious = [0.9, 0.5, 0.8, 0.7, 0.6, 0.95]
    probs = [0.1, 0.9, 0.5, 0.6, 0.2, 0.9]
    anchors = row_anchors([10, 30, 50, 70, 90, 110])
    pred_boxes = torch.tensor([[[0, 0, 100, 100 * u] for u in ious]])
    pred_scores = torch.stack((torch.full((6,), 0.99), torch.tensor(probs)), -1).unsqueeze(0)  # [1, 6, 2]
    gt_boxes, gt_labels, gt_mask = one_image([[0, 0, 100, 100]], [1])

    out = TaskAlignedAssigner(topk=3, overlap="iou", min_side=0)(
        pred_scores, pred_boxes, anchors, gt_boxes, gt_labels, gt_mask
    )

    # metric s^0.5·IoU^6 of the 5 inside anchors ≈ 0.168, 0.015, 0.185, 0.091, 0.021 → top 3 are 0, 2, 3.
    assert out.fg_mask.tolist() == [[True, False, True, True, False, False]]
    metric = [p**0.5 * u**6 for p, u in zip(probs, ious)]
    best_iou, best_metric = 0.9, metric[2]  # among the positives 0, 2, 3
    expected = [metric[i] * best_iou / best_metric if i in (0, 2, 3) else 0.0 for i in range(6)]
    assert torch.allclose(out.scores[0, :, 1], torch.tensor(expected), atol=1e-6)
    assert out.scores[0, :, 0].abs().sum() == 0  # only the gt's class column
    assert torch.equal(out.boxes[0, out.fg_mask[0]], gt_boxes[0, [0, 0, 0]])
    assert out.gt_idx[0, out.fg_mask[0]].tolist() == [0, 0, 0]


def test_gt_without_an_anchor_inside_gets_no_positive():
    anchors, _ = grid_anchors(32, [8])  # centres at 4, 12, 20, 28
    gt_boxes, gt_labels, gt_mask = one_image([[13, 13, 15, 15]], [0])  # between anchor centres
    pred = gt_boxes.expand(1, anchors.shape[0], 4)
    out = TaskAlignedAssigner(min_side=0)(
        torch.full((1, 16, 1), 0.5), pred, anchors, gt_boxes, gt_labels, gt_mask
    )
    assert not out.fg_mask.any()
    assert out.scores.abs().sum() == 0


@pytest.mark.parametrize("min_side, strides", [(16.0, None), (None, "levels")])
def test_tiny_gt_is_widened_for_the_inside_test(min_side, strides):
    anchors, anchor_strides = grid_anchors(32, [8, 16])  # second-smallest stride: 16
    gt_boxes, gt_labels, gt_mask = one_image([[13, 13, 15, 15]], [0])  # widened to (6, 6, 22, 22)
    n = anchors.shape[0]
    pred = gt_boxes.expand(1, n, 4)
    out = TaskAlignedAssigner(min_side=min_side)(
        torch.full((1, n, 1), 0.5),
        pred,
        anchors,
        gt_boxes,
        gt_labels,
        gt_mask,
        anchor_strides if strides else None,
    )
    positives = {tuple(p) for p in anchors[out.fg_mask[0]].tolist()}
    # stride-8 centres 12 and 20 and the stride-16 centre 8 lie inside (6, 22); without widening, none does
    assert positives == {(12.0, 12.0), (20.0, 12.0), (12.0, 20.0), (20.0, 20.0), (8.0, 8.0)}


def test_anchor_claimed_by_two_gts_goes_to_the_higher_iou():
    # gt A = (0,0,60,100) holds anchors 10, 30, 50; gt B = (40,0,100,100) holds 50, 70, 90.
    # Anchor 50 predicts (0,0,50,100): IoU 5/6 with A, 0.1 with B. Gts listed B first.
    anchors = row_anchors([10, 30, 50, 70, 90])
    a, b = [0.0, 0, 60, 100], [40.0, 0, 100, 100]
    pred_boxes = torch.tensor([[a, a, [0, 0, 50, 100], b, b]])
    gt_boxes, gt_labels, gt_mask = one_image([b, a], [0, 1])
    pred_scores = torch.full((1, 5, 2), 0.5)

    out = TaskAlignedAssigner(topk=3, overlap="iou", min_side=0)(
        pred_scores, pred_boxes, anchors, gt_boxes, gt_labels, gt_mask
    )

    assert out.fg_mask.all()
    assert out.gt_idx[0].tolist() == [1, 1, 1, 0, 0]
    assert torch.equal(out.boxes[0], torch.tensor([a, a, a, b, b]))
    # A's positives: IoU 1, 1, 5/6 (its best IoU is 1); B keeps 70 and 90 with IoU 1.
    metric_50 = 0.5**0.5 * (5 / 6) ** 6
    expected_a = torch.tensor([1.0, 1.0, metric_50 / 0.5**0.5])
    assert torch.allclose(out.scores[0, :3, 1], expected_a, atol=1e-5)
    assert torch.allclose(out.scores[0, 3:, 0], torch.ones(2), atol=1e-5)
    assert out.scores[0, :3, 0].abs().sum() == 0 and out.scores[0, 3:, 1].abs().sum() == 0


def test_no_targets():
    anchors, _ = grid_anchors(32, [8, 16])
    n = anchors.shape[0]
    assigner = TaskAlignedAssigner()
    scores, boxes = torch.rand(2, n, 3), torch.rand(2, n, 4) * 32
    empty = assigner(
        scores, boxes, anchors, *pad_targets(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 2)
    )
    padded_only = assigner(
        scores,
        boxes,
        anchors,
        torch.zeros(2, 3, 4),
        torch.zeros(2, 3, dtype=torch.long),
        torch.zeros(2, 3, dtype=bool),
    )
    for out in (empty, padded_only):
        assert out.scores.shape == (2, n, 3) and out.boxes.shape == (2, n, 4)
        assert not out.fg_mask.any()
        assert out.scores.abs().sum() == 0


def test_pad_targets_groups_unsorted_targets_by_image():
    boxes = torch.arange(20.0).view(5, 4)
    cls = torch.tensor([4, 3, 2, 1, 0])
    batch_idx = torch.tensor([2, 0, 2, 0, 2])
    gt_boxes, gt_labels, gt_mask = pad_targets(boxes, cls, batch_idx, batch_size=4)
    assert gt_boxes.shape == (4, 3, 4)
    assert gt_mask.tolist() == [[True, True, False], [False] * 3, [True] * 3, [False] * 3]
    assert gt_labels[0, :2].tolist() == [3, 1] and gt_labels[2].tolist() == [4, 2, 0]  # order kept
    assert torch.equal(gt_boxes[2], boxes[[0, 2, 4]])
    assert gt_boxes[~gt_mask].abs().sum() == 0


def random_batch(batch, size, num_classes, counts, seed):
    """Random predictions and flat targets; `counts` boxes per image."""
    g = torch.Generator().manual_seed(seed)
    anchors, strides = grid_anchors(size, [8, 16, 32])
    n = anchors.shape[0]
    dist = torch.rand(batch, n, 4, generator=g) * size / 4 + 1
    pred_boxes = torch.cat((anchors - dist[..., :2], anchors + dist[..., 2:]), -1)
    pred_scores = torch.rand(batch, n, num_classes, generator=g)
    total = sum(counts)
    xy = torch.rand(total, 2, generator=g) * size * 0.8
    wh = torch.rand(total, 2, generator=g) * size * 0.5 + 2
    boxes = torch.cat((xy, (xy + wh).clamp(max=size)), -1)
    cls = torch.randint(0, num_classes, (total,), generator=g)
    batch_idx = torch.repeat_interleave(torch.arange(batch), torch.tensor(counts))
    return pred_scores, pred_boxes, anchors, strides, boxes, cls, batch_idx


def test_batched_assignment_equals_one_image_at_a_time():
    counts = [3, 0, 7, 1]
    scores, preds, anchors, strides, boxes, cls, batch_idx = random_batch(4, 128, 3, counts, seed=1)
    assigner = TaskAlignedAssigner()
    batched = assigner(scores, preds, anchors, *pad_targets(boxes, cls, batch_idx, 4), strides)
    assert batched.fg_mask.any()
    for i in range(4):
        keep = batch_idx == i
        single = assigner(
            scores[i : i + 1],
            preds[i : i + 1],
            anchors,
            *pad_targets(boxes[keep], cls[keep], batch_idx[keep] * 0, 1),
            strides,
        )
        fg = single.fg_mask[0]
        assert torch.equal(batched.fg_mask[i], fg)
        assert torch.allclose(batched.scores[i], single.scores[0])
        assert torch.equal(batched.gt_idx[i][fg], single.gt_idx[0][fg])
        assert torch.equal(batched.boxes[i][fg], single.boxes[0][fg])


def test_matches_ultralytics_task_aligned_assigner():
    tal = pytest.importorskip("ultralytics.utils.tal")
    counts = [5, 12, 1, 8]
    scores, preds, anchors, strides, boxes, cls, batch_idx = random_batch(4, 160, 5, counts, seed=2)
    gt_boxes, gt_labels, gt_mask = pad_targets(boxes, cls, batch_idx, 4)
    ours = TaskAlignedAssigner(topk=10, alpha=0.5, beta=6.0)(
        scores, preds, anchors, gt_boxes, gt_labels, gt_mask, strides
    )
    ref = tal.TaskAlignedAssigner(topk=10, num_classes=5, alpha=0.5, beta=6.0, stride=[8, 16, 32])
    _, ref_boxes, ref_scores, ref_fg, ref_idx = ref(
        scores, preds, anchors, gt_labels.unsqueeze(-1).float(), gt_boxes, gt_mask.unsqueeze(-1).float()
    )
    assert ours.fg_mask.sum() > 50
    assert torch.equal(ours.fg_mask, ref_fg)
    assert torch.equal(ours.gt_idx[ref_fg], ref_idx[ref_fg])
    assert torch.equal(ours.boxes[ref_fg], ref_boxes[ref_fg])
    assert torch.allclose(ours.scores, ref_scores.float(), atol=1e-5)
