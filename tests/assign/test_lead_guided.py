"""Lead-guided TAL: the relaxed (coarse) candidate set and the upper bound on coarse targets."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detforge.assign.lead_guided import RelaxedTaskAlignedAssigner, cap_coarse_scores, coarse_from
from detforge.assign.tal import TaskAlignedAssigner
from detforge.assign.targets import pad_targets
from detforge.models.heads.base import make_anchors

POINTS, STRIDES = make_anchors([(8, 8), (4, 4), (2, 2)], [8, 16, 32], "cpu", torch.float32)

coordinate = st.integers(min_value=0, max_value=64 * 4).map(lambda v: v / 4)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(coordinate, coordinate, coordinate, coordinate), min_size=1, max_size=4),
       st.floats(min_value=0.0, max_value=2.0))
def test_relaxed_candidates_contain_the_plain_ones(corners, margin):
    boxes = torch.tensor([[min(a, c), min(b, d), max(a, c) + 1, max(b, d) + 1] for a, b, c, d in corners])
    gt = pad_targets(boxes, torch.zeros(len(boxes)), torch.zeros(len(boxes)), 1)
    plain = TaskAlignedAssigner()._anchors_inside(POINTS, gt.boxes, STRIDES)
    relaxed = RelaxedTaskAlignedAssigner(margin=margin)._anchors_inside(POINTS, gt.boxes, STRIDES)
    assert not (plain & ~relaxed).any()
    if margin >= 1.0:  # one stride around the box: at least the anchor whose cell holds the centre
        assert relaxed.any(-1).all()


def _assignments(seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(2, len(POINTS), 3, generator=g)
    centres = POINTS + torch.randn(len(POINTS), 2, generator=g) * 3
    sizes = torch.rand(len(POINTS), 2, generator=g) * 30 + 4
    boxes = torch.cat((centres - sizes / 2, centres + sizes / 2), -1).expand(2, -1, -1)
    gt_boxes = torch.tensor([[10.0, 12.0, 40.0, 30.0], [30.0, 30.0, 60.0, 62.0], [0.0, 40.0, 14.0, 60.0]])
    gts = pad_targets(gt_boxes.repeat(2, 1), torch.tensor([0, 1, 2] * 2), torch.tensor([0, 0, 0, 1, 1, 1]), 2)
    fine_assigner = TaskAlignedAssigner(topk=5)
    fine = fine_assigner(scores, boxes, POINTS, *gts, STRIDES)
    coarse = coarse_from(fine_assigner, topk=12, margin=1.0)(scores, boxes, POINTS, *gts, STRIDES)
    return fine, coarse, gts


def test_upper_bound_caps_coarse_only_targets():
    for seed in range(5):
        fine, coarse, gts = _assignments(seed)
        capped = cap_coarse_scores(fine, coarse, gts.mask.shape[1])
        coarse_only = coarse.fg_mask & ~fine.fg_mask
        assert coarse_only.any()
        fine_score, capped_score = fine.scores.amax(-1), capped.scores.amax(-1)
        for image, anchor in coarse_only.nonzero().tolist():
            gt = coarse.gt_idx[image, anchor]
            mine = fine.fg_mask[image] & (fine.gt_idx[image] == gt)
            if mine.any():
                assert capped_score[image, anchor] <= fine_score[image][mine].min() + 1e-7
        # fine positives and everything else are left alone; caps only lower
        assert torch.equal(capped.scores[~coarse_only], coarse.scores[~coarse_only])
        assert (capped.scores <= coarse.scores).all()
