"""Coarse-to-fine lead-guided labels for anchor-free heads (YOLOv7 §3.4 carried over to TAL).

YOLOv7 trains an auxiliary head with labels that the *lead* head's predictions decide: fine
labels (the normal assignment) for the lead head, coarse labels — a relaxed candidate set, so
more positives — for the auxiliary head. No reference does this for an anchor-free head; here:

- fine = the standard `TaskAlignedAssigner` on the lead head's scores and boxes;
- coarse = `RelaxedTaskAlignedAssigner` on the *same* lead predictions: an anchor is a candidate
  when its centre lies within `margin` strides of the gt box (not only inside it), and `topk`
  is larger;
- optionally `cap_coarse_scores`, the paper's upper bound: a coarse-only positive's soft target
  is capped at the lowest fine target of its gt, so the auxiliary head never learns to score a
  cell above the cells the lead head is taught to prefer.
"""

from __future__ import annotations

import torch

from detforge.assign.tal import Assignment, TaskAlignedAssigner
from detforge.ops.iou import IoUKind
from detforge.registry import register_assigner


@register_assigner("tal_relaxed")
class RelaxedTaskAlignedAssigner(TaskAlignedAssigner):
    """TAL with a wider candidate set: anchors inside the gt box grown by `margin` × their stride.

    topk, alpha, beta, eps, overlap, min_side: as `TaskAlignedAssigner` (topk defaults larger).
    Every candidate of the plain assigner with the same `min_side` is also a candidate here.
    """

    def __init__(
        self,
        topk: int = 20,
        alpha: float = 0.5,
        beta: float = 6.0,
        margin: float = 1.0,
        eps: float = 1e-9,
        overlap: IoUKind = "ciou",
        min_side: float | None = None,
    ):
        super().__init__(topk, alpha, beta, eps, overlap, min_side)
        self.margin = margin

    def _anchors_inside(
        self, anchor_points: torch.Tensor, gt_boxes: torch.Tensor, strides: torch.Tensor | None
    ) -> torch.Tensor:
        inside = super()._anchors_inside(anchor_points, gt_boxes, strides)
        if strides is None or self.margin <= 0:
            return inside
        grow = strides.to(gt_boxes.dtype) * self.margin  # [N]
        x, y = anchor_points[:, 0], anchor_points[:, 1]
        x1, y1, x2, y2 = (gt_boxes[..., i : i + 1] for i in range(4))  # [B, M, 1] each
        near = (x > x1 - grow) & (y > y1 - grow) & (x < x2 + grow) & (y < y2 + grow)
        return inside | near


def coarse_from(fine: TaskAlignedAssigner, topk: int, margin: float) -> RelaxedTaskAlignedAssigner:
    """The relaxed counterpart of a fine assigner: its alpha/beta/overlap/min_side, a larger set."""
    return RelaxedTaskAlignedAssigner(topk, fine.alpha, fine.beta, margin, fine.eps, fine.overlap, fine.min_side)


def cap_coarse_scores(fine: Assignment, coarse: Assignment, num_gt: int) -> Assignment:
    """Upper-bound the coarse soft targets: a coarse positive that is not a fine positive gets at
    most the lowest fine target of its gt (no cap when the gt has no fine positive).

    fine, coarse: assignments of the same batch (`scores [B, N, C]`, `fg_mask`, `gt_idx [B, N]`);
    num_gt: M, the padded gt count. Returns `coarse` with capped scores.
    """
    batch = fine.fg_mask.shape[0]
    fine_score = fine.scores.amax(-1)  # [B, N]: the target at the gt's class
    img, anchor = fine.fg_mask.nonzero(as_tuple=True)
    flat_gt = img * num_gt + fine.gt_idx[img, anchor]
    lowest = fine_score.new_full((batch * num_gt,), float("inf"))
    lowest.scatter_reduce_(0, flat_gt, fine_score[img, anchor], "amin")
    cap = lowest.view(batch, num_gt).gather(1, coarse.gt_idx)  # [B, N]
    coarse_only = coarse.fg_mask & ~fine.fg_mask
    capped = torch.where(coarse_only[..., None], torch.minimum(coarse.scores, cap[..., None]), coarse.scores)
    return coarse._replace(scores=capped)
