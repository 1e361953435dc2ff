"""Box encodings shared by the heads (inference decoding) and the losses (training targets).

A box is predicted as four distances (left, top, right, bottom) from an anchor centre. The
distances come out of Distribution Focal Loss logits: one softmax over `reg_max` bins per side,
whose expectation is the distance in stride units. Keeping the encode/decode pair in one place
guarantees the loss trains exactly the quantity the head decodes.
"""

from __future__ import annotations

import torch


def dfl_decode(box_logits: torch.Tensor, reg_max: int, bins: torch.Tensor | None = None) -> torch.Tensor:
    """Expected bin index per side: `[..., 4*reg_max]` logits → `[..., 4]` distances in stride units.

    The one DFL decode: the heads (`models.heads.base.DFL`, passing the model's fixed `bins`
    parameter) and the loss both call it. `bins` defaults to 0..reg_max-1.
    """
    probs = box_logits.unflatten(-1, (4, reg_max)).softmax(-1)
    if bins is None:
        bins = torch.arange(reg_max, device=box_logits.device, dtype=probs.dtype)
    return probs @ bins.to(probs.dtype)


def distance_to_xyxy(anchor_points: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Anchor centres `[..., 2]` and (l, t, r, b) distances `[..., 4]` (same units) → xyxy `[..., 4]`."""
    return torch.cat((anchor_points - dist[..., :2], anchor_points + dist[..., 2:]), dim=-1)


def xyxy_to_distance(anchor_points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Inverse of `distance_to_xyxy`: xyxy `[..., 4]` → (l, t, r, b) distances `[..., 4]` from the anchors."""
    return torch.cat((anchor_points - boxes[..., :2], boxes[..., 2:] - anchor_points), dim=-1)
