"""Candidate (cell, anchor) pairs of an anchor-based head, as YOLOv5/YOLOv7 pick them.

An anchor-based head predicts a box per (anchor, grid cell) with its centre inside the cell
extended by half a cell on each side (`xy = 2σ − 0.5`), so a gt may be learned not only by the
cell holding its centre but also by the neighbours that centre is close to. For every gt, level
and anchor whose shape is close enough to the gt's (both side ratios within `anchor_t`), the
candidates are the centre cell plus:

- offset 0.5 ("fine", 3 positions): the horizontal and the vertical neighbour nearer to the
  centre (the centre lies in that half of its cell);
- offset 1.0 ("coarse", 5 positions): all four neighbours;

a neighbour is taken only when it lies inside the map (the centre is more than one cell from
the border). Every candidate of offset 0.5 is also one of offset 1.0: the coarse set contains
the fine one.

The output keeps a fixed layout, one slot per (level, position, anchor, gt): `K = L·5·A·M`
slots per image, with a validity mask, so everything downstream stays batched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

# Position order: centre, then the neighbour reached by subtracting the offset in x, in y, then
# by adding it in x, in y (left, up, right, down).
POSITION_SIGNS = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1))


class Candidates(NamedTuple):
    """Candidate slots `[B, K]` (K = L·5·A·M, fixed layout level → position → anchor → gt).

    level, anchor, cell_y, cell_x: int64 location of the prediction the slot points at.
    gt: int64 index (among the image's padded gts) of the gt that proposed the slot.
    valid: bool, False for slots whose gt is padding, whose anchor shape is too far from the
    gt's, or whose neighbour is not taken.
    """

    level: torch.Tensor
    anchor: torch.Tensor
    cell_y: torch.Tensor
    cell_x: torch.Tensor
    gt: torch.Tensor
    valid: torch.Tensor


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """`[..., 4]` xyxy → `[..., 4]` (centre x, centre y, width, height)."""
    return torch.cat(((boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]), dim=-1)


def anchor_candidates(
    gt_boxes: torch.Tensor,
    gt_mask: torch.Tensor,
    anchors: torch.Tensor,
    strides: Sequence[int] | torch.Tensor,
    shapes: Sequence[tuple[int, int]],
    anchor_t: float = 4.0,
    offset: float = 0.5,
) -> Candidates:
    """Candidate slots for padded gts.

    gt_boxes: `[B, M, 4]` xyxy input pixels; gt_mask: `[B, M]` bool (False = padding).
    anchors: `[L, A, 2]` anchor (w, h) in input pixels; strides: L level strides; shapes: L map
    (H, W). anchor_t: largest allowed ratio between a gt side and the anchor's matching side.
    offset: 0.5 for the 3-position (fine) set, 1.0 for the 5-position (coarse) set.
    """
    batch, num_gt = gt_mask.shape
    num_anchors = anchors.shape[1]
    device = gt_boxes.device
    xywh = xyxy_to_cxcywh(gt_boxes.float())
    signs = torch.tensor(POSITION_SIGNS, device=device, dtype=torch.float32) * offset  # [5, 2]
    parts: list[tuple[torch.Tensor, ...]] = []
    for level, ((height, width), stride) in enumerate(zip(shapes, strides)):
        stride = float(stride)
        centre = xywh[..., :2] / stride  # [B, M, 2] in cells
        size = xywh[..., 2:] / stride
        anchor_size = anchors[level].to(device).float() / stride  # [A, 2] in cells
        ratio = size[:, :, None] / anchor_size  # [B, M, A, 2]
        shape_ok = torch.maximum(ratio, 1 / ratio).amax(-1) < anchor_t  # [B, M, A]

        frac = centre % 1.0
        inverse = torch.tensor([width, height], device=device, dtype=centre.dtype) - centre
        near_low = (frac < offset) & (centre > 1.0)  # [B, M, 2]: take the left / upper neighbour
        near_high = ((inverse % 1.0) < offset) & (inverse > 1.0)  # right / lower neighbour
        taken = torch.stack(
            (torch.ones_like(near_low[..., 0]), near_low[..., 0], near_low[..., 1], near_high[..., 0],
             near_high[..., 1]), dim=-1,
        )  # [B, M, 5]
        cell = (centre[:, :, None] - signs).long()  # [B, M, 5, 2] (truncation, as the reference)
        cell_x = cell[..., 0].clamp(0, width - 1)
        cell_y = cell[..., 1].clamp(0, height - 1)

        # Slot layout position → anchor → gt within a level, the reference's candidate order, so
        # that ties (the same cell proposed by two gts) break the same way downstream.
        valid = (shape_ok.permute(0, 2, 1)[:, None] & taken.permute(0, 2, 1)[:, :, None]
                 & gt_mask[:, None, None])  # [B, 5, A, M]
        shape = valid.shape
        anchor_idx = torch.arange(num_anchors, device=device).view(1, 1, -1, 1).expand(shape)
        gt_idx = torch.arange(num_gt, device=device).view(1, 1, 1, -1).expand(shape)
        parts.append((
            torch.full(shape, level, device=device, dtype=torch.long),
            anchor_idx,
            cell_y.permute(0, 2, 1)[:, :, None].expand(shape),
            cell_x.permute(0, 2, 1)[:, :, None].expand(shape),
            gt_idx,
            valid,
        ))
    return Candidates(*(torch.cat([p[i].reshape(batch, -1) for p in parts], dim=1) for i in range(6)))
