"""YOLOv7's assigner for anchor-based heads: anchor-shape candidates, then SimOTA dynamic-k.

Two stages (Wang et al. 2022, "YOLOv7", and the OTA/SimOTA matching of Ge et al. 2021):

1. Candidates (see `anchor_candidates`): cells near each gt's centre whose anchor has a shape
   within `anchor_t` of the gt's, on every level — 3 positions (offset 0.5) for the lead head,
   5 (offset 1.0) for the coarse labels of an auxiliary head.
2. Dynamic-k matching among all candidates of an image (every gt is scored against every
   candidate, whichever gt proposed it): each gt takes its k cheapest candidates, where
   k = ⌊Σ of its `topk` largest IoUs⌋ (at least 1) and the cost is
   `BCE(√(cls·obj), one-hot) + iou_weight · (−log IoU)`; a candidate wanted by several gts goes
   to the one with the lowest cost. Predictions decide, so the labels follow what the head
   already does well.

A candidate cell may appear more than once (two gts of an image proposing the same cell with the
same anchor); each appearance is a column of its own, as in the reference, and a matched
duplicate is a positive twice. Costs, IoUs and the conflict resolution are computed for the whole
batch at once on `[B, M, K]` tensors; only the per-gt top-k runs per image (grouped by k), over
exactly the image's candidates in the reference's order, so that equal-cost duplicates are
broken as the reference breaks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from detforge.assign.anchor_candidates import anchor_candidates
from detforge.registry import register_assigner

LOG_EPS = 1e-8  # −log(IoU + eps): finite cost for non-overlapping candidates
PROB_EPS = 1e-7  # keeps √(cls·obj) inside (0, 1) so its logit stays finite


class AnchorAssignment(NamedTuple):
    """Positives `[P]` (int64): where each prediction that learns a box sits, and which gt it learns.

    level, image, anchor, cell_y, cell_x: the prediction `maps[level][image, anchor, cell_y, cell_x]`.
    gt: index of the matched gt among the image's padded gts (`pad_targets`).
    """

    level: torch.Tensor
    image: torch.Tensor
    anchor: torch.Tensor
    cell_y: torch.Tensor
    cell_x: torch.Tensor
    gt: torch.Tensor

    def at_level(self, level: int) -> AnchorAssignment:
        keep = self.level == level
        return AnchorAssignment(*(field[keep] for field in self))


def decode_anchor_boxes(
    raw: torch.Tensor, cell_x: torch.Tensor, cell_y: torch.Tensor, anchor_wh: torch.Tensor
) -> torch.Tensor:
    """YOLOv7 box decode in cell units: `xy = 2σ − 0.5 + cell`, `wh = (2σ)²·anchor` → `[..., 4]` cx, cy, w, h.

    raw: `[..., ≥4]` logits (x, y, w, h first); cell_x, cell_y: `[...]`; anchor_wh: `[..., 2]` in cells.
    """
    grid = torch.stack((cell_x, cell_y), dim=-1).to(raw.dtype)
    xy = raw[..., :2].sigmoid() * 2.0 - 0.5 + grid
    wh = (raw[..., 2:4].sigmoid() * 2) ** 2 * anchor_wh
    return torch.cat((xy, wh), dim=-1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    half = boxes[..., 2:] / 2
    return torch.cat((boxes[..., :2] - half, boxes[..., :2] + half), dim=-1)


def batched_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU per image: `[B, M, 4]` × `[B, K, 4]` xyxy → `[B, M, K]`."""
    a, b = boxes1[:, :, None], boxes2[:, None]
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area1 = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area2 = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area1 + area2 - inter).clamp(min=1e-12)


@register_assigner("yolov7_ota")
class YOLOv7Assigner(nn.Module):
    """Candidates within `anchor_t`, then SimOTA dynamic-k matching (see the module docstring).

    anchor_t: largest gt/anchor side ratio of a candidate. topk: how many of a gt's best IoUs
    sum to its k. iou_weight: weight of −log IoU in the cost. offset: 0.5 = 3 candidate positions
    (fine labels), 1.0 = 5 positions (coarse labels). aux_topk: the `topk` the reference uses for
    both heads when an auxiliary head is trained (its lead and coarse assignments).
    """

    def __init__(
        self,
        anchor_t: float = 4.0,
        topk: int = 10,
        iou_weight: float = 3.0,
        offset: float = 0.5,
        coarse_offset: float = 1.0,
        aux_topk: int = 20,
    ):
        super().__init__()
        self.anchor_t = anchor_t
        self.topk = topk
        self.iou_weight = iou_weight
        self.offset = offset
        self.coarse_offset = coarse_offset
        self.aux_topk = aux_topk

    @torch.no_grad()
    def forward(
        self,
        maps: Sequence[torch.Tensor],
        anchors: torch.Tensor,
        strides: Sequence[int],
        gt_boxes: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_mask: torch.Tensor,
        offset: float | None = None,
        topk: int | None = None,
    ) -> AnchorAssignment:
        """Assign a batch.

        maps: per level `[B, A, H, W, 5 + C]` logits (x, y, w, h, obj, classes) — the head whose
        predictions guide the matching. anchors: `[L, A, 2]` (w, h) input pixels; strides: L ints.
        gt_boxes `[B, M, 4]` xyxy pixels, gt_labels `[B, M]`, gt_mask `[B, M]`: from `pad_targets`.
        offset, topk: override the instance's (the coarse labels use `coarse_offset`, `aux_topk`).
        """
        offset = self.offset if offset is None else offset
        topk = self.topk if topk is None else topk
        batch = gt_mask.shape[0]
        device = gt_boxes.device
        shapes = [tuple(m.shape[2:4]) for m in maps]
        cand = anchor_candidates(gt_boxes, gt_mask.bool(), anchors, strides, shapes, self.anchor_t, offset)

        # Keep only valid slots, packed to the left in their original order: [B, K].
        counts = cand.valid.sum(1)
        width = int(counts.max()) if counts.numel() else 0
        if width == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return AnchorAssignment(*(empty,) * 6)
        order = torch.argsort((~cand.valid).to(torch.int8), dim=1, stable=True)[:, :width]
        level, anchor, cell_y, cell_x, _, valid = (field.gather(1, order) for field in cand)
        image = torch.arange(batch, device=device)[:, None].expand_as(level)

        pred = self._gather(maps, level, image, anchor, cell_y, cell_x)  # [B, K, 5 + C]
        stride = torch.as_tensor([float(s) for s in strides], device=device)[level]  # [B, K]
        anchor_cells = anchors.to(device).float() / torch.as_tensor(
            [float(s) for s in strides], device=device
        ).view(-1, 1, 1)
        boxes = decode_anchor_boxes(pred, cell_x, cell_y, anchor_cells[level, anchor]) * stride[..., None]
        pair_valid = valid[:, None] & gt_mask.bool()[:, :, None]  # [B, M, K]
        iou = batched_box_iou(gt_boxes.float(), cxcywh_to_xyxy(boxes)) * pair_valid

        k = iou.topk(min(topk, width), dim=-1).values.sum(-1).long().clamp(min=1)  # [B, M]
        cost = self._class_cost(pred, gt_labels) + self.iou_weight * -torch.log(iou + LOG_EPS)
        cost = cost.masked_fill(~pair_valid, float("inf"))
        matched = self._dynamic_k(cost, k, counts, gt_mask.bool())

        positive = matched.any(1)  # [B, K]
        gt = matched.to(torch.uint8).argmax(1)
        b, slot = positive.nonzero(as_tuple=True)
        return AnchorAssignment(level[b, slot], b, anchor[b, slot], cell_y[b, slot], cell_x[b, slot], gt[b, slot])

    @staticmethod
    def _gather(maps, level, image, anchor, cell_y, cell_x) -> torch.Tensor:
        pred = maps[0].new_zeros(*level.shape, maps[0].shape[-1], dtype=torch.float32)
        for index, m in enumerate(maps):
            at = level == index
            pred[at] = m[image[at], anchor[at], cell_y[at], cell_x[at]].float()
        return pred

    @staticmethod
    def _class_cost(pred: torch.Tensor, gt_labels: torch.Tensor) -> torch.Tensor:
        """`[B, M, K]`: Σ over classes of BCE(√(σ(cls)·σ(obj)), one-hot of the gt's class).

        BCE(x, 1) = BCE(x, 0) − x for a logit x, so the sum is the all-zero-target BCE of the
        candidate minus its logit at the gt's class: no `[B, M, K, C]` tensor is needed.
        """
        prob = (pred[..., 5:].sigmoid() * pred[..., 4:5].sigmoid()).sqrt().clamp(PROB_EPS, 1 - PROB_EPS)
        logit = torch.log(prob / (1 - prob))  # [B, K, C]
        negative = F.binary_cross_entropy_with_logits(logit, torch.zeros_like(logit), reduction="none").sum(-1)
        labels = gt_labels.long().clamp(0, logit.shape[-1] - 1)
        at_label = logit.transpose(1, 2).gather(1, labels[:, :, None].expand(-1, -1, logit.shape[1]))
        return negative[:, None] - at_label

    @staticmethod
    def _dynamic_k(cost: torch.Tensor, k: torch.Tensor, counts: torch.Tensor, gt_mask: torch.Tensor) -> torch.Tensor:
        """`[B, M, K]` bool: each gt's k cheapest slots, then one gt per contested slot (lowest cost).

        A cell proposed by two gts is two slots with equal cost, so which one a gt takes depends on
        how `topk` breaks ties; taking it per image over exactly the image's slots, in the
        reference's order, breaks them as the reference does (rows sharing a k go in one call).
        """
        matched = torch.zeros_like(cost, dtype=torch.bool)
        for image, (count, ks, real) in enumerate(zip(counts.tolist(), k.tolist(), gt_mask.tolist())):
            if count == 0:
                continue
            rows_by_k: dict[int, list[int]] = {}
            for row, (value, is_real) in enumerate(zip(ks, real)):
                if is_real:
                    rows_by_k.setdefault(value, []).append(row)
            for value, rows in rows_by_k.items():
                picks = cost[image, rows, :count].topk(min(value, count), dim=-1, largest=False).indices
                matched[image, torch.tensor(rows, device=cost.device)[:, None], picks] = True
        contested = matched.sum(1, keepdim=True) > 1  # [B, 1, K]
        cheapest = F.one_hot(cost.argmin(1), cost.shape[1]).transpose(1, 2).bool()  # [B, M, K]
        return torch.where(contested, cheapest, matched)
