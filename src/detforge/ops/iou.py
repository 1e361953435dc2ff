"""IoU and its penalised variants (GIoU, DIoU, CIoU) between aligned pairs of xyxy boxes.

torchvision has pairwise IoUs and the matching *losses*, but the assigner needs CIoU *values*
for aligned pairs with broadcasting, and predicted boxes can be degenerate (zero height), which
torchvision's CIoU divides by. Here every division carries an `eps`, so the result stays finite.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

IoUKind = Literal["iou", "giou", "diou", "ciou"]
IOU_KINDS: tuple[str, ...] = ("iou", "giou", "diou", "ciou")


def aligned_iou(
    boxes1: torch.Tensor, boxes2: torch.Tensor, kind: IoUKind = "iou", eps: float = 1e-7
) -> torch.Tensor:
    """IoU of each box in `boxes1 [..., 4]` with the box at the same place in `boxes2 [..., 4]` → `[...]`.

    Both are xyxy and broadcast against each other. `kind`:
    - "iou":  intersection / union, in [0, 1];
    - "giou": IoU − (enclosing area − union) / enclosing area, in [−1, 1] (Rezatofighi et al. 2019);
    - "diou": IoU − centre distance² / enclosing diagonal², in [−1, 1] (Zheng et al. 2020);
    - "ciou": DIoU − α·v with v the aspect-ratio mismatch; α is a constant for autograd, as in the paper.
    """
    if kind not in IOU_KINDS:
        raise ValueError(f"kind must be one of {IOU_KINDS}, got {kind!r}")
    x1a, y1a, x2a, y2a = boxes1.unbind(-1)
    x1b, y1b, x2b, y2b = boxes2.unbind(-1)
    wa, ha = x2a - x1a, y2a - y1a
    wb, hb = x2b - x1b, y2b - y1b
    inter = (torch.minimum(x2a, x2b) - torch.maximum(x1a, x1b)).clamp(min=0) * (
        torch.minimum(y2a, y2b) - torch.maximum(y1a, y1b)
    ).clamp(min=0)
    union = wa * ha + wb * hb - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou
    cw = torch.maximum(x2a, x2b) - torch.minimum(x1a, x1b)  # enclosing box
    ch = torch.maximum(y2a, y2b) - torch.minimum(y1a, y1b)
    if kind == "giou":
        enclosing = cw * ch + eps
        return iou - (enclosing - union) / enclosing
    diagonal2 = cw.pow(2) + ch.pow(2) + eps
    centre2 = ((x1b + x2b - x1a - x2a).pow(2) + (y1b + y2b - y1a - y2a).pow(2)) / 4
    diou = iou - centre2 / diagonal2
    if kind == "diou":
        return diou
    v = (4 / math.pi**2) * (torch.atan(wb / (hb + eps)) - torch.atan(wa / (ha + eps))).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return diou - alpha * v
