"""Task-Aligned Assigner (Feng et al. 2021, "TOOD"), as used to train YOLOv8.

Which anchors should learn which object? TAL lets the current predictions decide: among the
anchors whose centre lies inside a ground-truth box, it keeps the `topk` with the highest
alignment metric `t = s^α · IoU^β`, where s is the predicted probability of the gt's class and
IoU the overlap of the predicted box with the gt. The classification target is not 1 but `t`
rescaled per gt so its best anchor gets that anchor's IoU: the classifier learns to score boxes
by how well they are localised, which is what NMS ranks by.

The whole batch is assigned at once on `[B, M, N]` tensors (M = gts per image after padding,
N = anchors); the few expensive quantities (IoU, class score) are evaluated only for the
(gt, anchor) pairs with the anchor inside the box.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from detforge.ops.iou import IoUKind, aligned_iou
from detforge.registry import register_assigner


class Assignment(NamedTuple):
    """Per-anchor training targets. Entries of background anchors are only placeholders.

    boxes: `[B, N, 4]` xyxy pixels of the assigned gt.
    scores: `[B, N, C]` soft class targets (zero rows for background).
    fg_mask: `[B, N]` bool, True for anchors that learn a box.
    gt_idx: `[B, N]` int64 index of the assigned gt among the image's padded gts.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    fg_mask: torch.Tensor
    gt_idx: torch.Tensor


@register_assigner("tal")
class TaskAlignedAssigner(nn.Module):
    """Assign gts to anchors by the task-alignment metric (registered as assigner `tal`).

    topk: positives kept per gt. alpha, beta: exponents of class score and IoU in the metric.
    eps: guards the divisions and the strict inside-box test.
    overlap: IoU flavour for the metric; "ciou" (clamped at 0) is what YOLOv8 uses.
    min_side: gt sides shorter than this (pixels) are widened about their centre for the
    inside-box test only, so an object smaller than the anchor spacing still gets candidates.
    None takes the second-smallest level stride from the `strides` passed to `forward` (16 px for
    strides 8/16/32, matching Ultralytics 8.4); 0 turns it off.
    """

    def __init__(
        self,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
        eps: float = 1e-9,
        overlap: IoUKind = "ciou",
        min_side: float | None = None,
    ):
        super().__init__()
        self.topk = topk
        self.alpha = alpha
        self.beta = beta
        self.eps = eps
        self.overlap = overlap
        self.min_side = min_side

    @torch.no_grad()
    def forward(
        self,
        pred_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        anchor_points: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_mask: torch.Tensor,
        strides: torch.Tensor | None = None,
    ) -> Assignment:
        """Assign a batch.

        pred_scores: `[B, N, C]` class probabilities (after sigmoid). pred_boxes: `[B, N, 4]` xyxy
        pixels. anchor_points: `[N, 2]` pixels. gt_boxes `[B, M, 4]` xyxy pixels, gt_labels `[B, M]`,
        gt_mask `[B, M]` bool: the padded output of `pad_targets`. strides: `[N]`, used for `min_side`.
        """
        batch, anchors, num_classes = pred_scores.shape
        if gt_boxes.shape[1] == 0:
            return Assignment(
                pred_boxes.new_zeros(batch, anchors, 4),
                pred_scores.new_zeros(batch, anchors, num_classes),
                torch.zeros(batch, anchors, dtype=torch.bool, device=pred_scores.device),
                torch.zeros(batch, anchors, dtype=torch.long, device=pred_scores.device),
            )
        gt_labels = gt_labels.long()
        candidates = self._anchors_inside(anchor_points, gt_boxes, strides) & gt_mask.bool().unsqueeze(-1)
        overlaps, align = self._metrics(pred_scores, pred_boxes, gt_labels, gt_boxes, candidates)

        # Top-k anchors per gt by the metric, as (image, gt, anchor) triples; the inside test drops
        # anchors that topk had to take from the zeros of a gt with fewer than k candidates.
        top = align.topk(min(self.topk, anchors), dim=-1).indices  # [B, M, k]
        img, gt, slot = candidates.gather(-1, top).nonzero(as_tuple=True)
        anchor = top[img, gt, slot]

        # An anchor wanted by several gts goes to the gt it overlaps most (as in TOOD / YOLOv8).
        claims = torch.zeros(batch, anchors, dtype=torch.long, device=top.device)
        claims.index_put_((img, anchor), torch.ones_like(anchor), accumulate=True)
        fg_mask = claims > 0
        gt_idx = torch.zeros_like(claims)
        gt_idx[img, anchor] = gt
        multi_img, multi_anchor = (claims > 1).nonzero(as_tuple=True)
        gt_idx[multi_img, multi_anchor] = overlaps[multi_img, :, multi_anchor].argmax(-1)

        # Soft targets: the metric rescaled per gt so that its best positive scores its best IoU.
        img, anchor = fg_mask.nonzero(as_tuple=True)
        gt = gt_idx[img, anchor]
        pair_align, pair_overlap = align[img, gt, anchor], overlaps[img, gt, anchor]
        flat_gt = img * gt_boxes.shape[1] + gt
        best_align = align.new_zeros(gt_mask.numel()).scatter_reduce_(0, flat_gt, pair_align, "amax")
        best_overlap = align.new_zeros(gt_mask.numel()).scatter_reduce_(0, flat_gt, pair_overlap, "amax")
        score = pair_align * best_overlap[flat_gt] / (best_align[flat_gt] + self.eps)

        target_scores = pred_scores.new_zeros(batch, anchors, num_classes)
        target_scores[img, anchor, gt_labels[img, gt]] = score.to(target_scores.dtype)
        target_boxes = gt_boxes.gather(1, gt_idx.unsqueeze(-1).expand(-1, -1, 4))  # [B, N, 4]
        return Assignment(target_boxes, target_scores, fg_mask, gt_idx)

    def _anchors_inside(
        self, anchor_points: torch.Tensor, gt_boxes: torch.Tensor, strides: torch.Tensor | None
    ) -> torch.Tensor:
        """`[B, M, N]` bool: anchor centre strictly inside the (possibly widened) gt box."""
        min_side = self._min_side(strides)
        if min_side is not None:
            centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
            half = (gt_boxes[..., 2:] - gt_boxes[..., :2]).clamp(min=min_side) / 2
            gt_boxes = torch.cat((centre - half, centre + half), dim=-1)
        x, y = anchor_points[:, 0], anchor_points[:, 1]
        x1, y1, x2, y2 = (gt_boxes[..., i : i + 1] for i in range(4))  # [B, M, 1] each
        return (x > x1 + self.eps) & (y > y1 + self.eps) & (x < x2 - self.eps) & (y < y2 - self.eps)

    def _min_side(self, strides: torch.Tensor | None) -> float | torch.Tensor | None:
        """Smallest gt side for the inside test (a 0-d tensor when taken from strides: no host sync)."""
        if self.min_side is not None:
            return float(self.min_side) if self.min_side > 0 else None
        if strides is None or strides.numel() == 0:
            return None
        smallest = strides.min()
        next_up = torch.where(strides > smallest, strides, torch.full_like(strides, float("inf"))).min()
        return torch.where(torch.isinf(next_up), smallest, next_up)

    def _metrics(
        self,
        pred_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        candidates: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Overlaps and alignment metric `[B, M, N]`, evaluated only at candidate pairs (zero elsewhere)."""
        b, m, n = candidates.nonzero(as_tuple=True)
        overlap = aligned_iou(gt_boxes[b, m], pred_boxes[b, n], kind=self.overlap).clamp_(min=0)
        score = pred_scores[b, n, gt_labels[b, m]]
        overlaps = pred_boxes.new_zeros(candidates.shape)
        align = pred_boxes.new_zeros(candidates.shape)
        overlaps[b, m, n] = overlap.to(overlaps.dtype)
        align[b, m, n] = (score.pow(self.alpha) * overlap.pow(self.beta)).to(align.dtype)
        return overlaps, align
