"""The module export traces: the deployed detector with its decode laid out for a graph.

`Detector.forward` in eval mode flattens each level to `[B, H·W, ·]`, concatenates, and decodes
row by row — right for PyTorch, but traced as it is the graph gets a transpose per level and
per branch, shape arithmetic frozen at the traced size (so a dynamic-size export breaks) and
anchor tables recomputed from Python. `ExportGraph` computes the same numbers channel-first:

    per level:  box logits [B, 4·R, H·W], class logits [B, C, H·W] (and objectness)
    all levels: concatenated along anchors → softmax over the R bins → one MatMul with the bin
                values → `× (−s, −s, s, s) + (cx, cy, cx, cy)` → xyxy `[B, 4, N]`
    output:     concat(boxes, scores) `[B, 4 + C, N]` → one transpose → `[B, N, 4 + C]`

The anchor centres and signed strides come from `tensor.shape` inside the graph, so a dynamic
export stays correct at every size and a static one folds them into constants. The head's own
`level_maps` computes the maps, so every anchor-free head kind (decoupled, hybrid, coupled,
objectness) shares this path; heads with another decode (e.g. anchor-based) are traced as they
are. Tests compare it with `head.decode` for each head kind.
"""

from __future__ import annotations

import torch
from torch import nn

from detforge.models.heads.base import DetectionHead


def has_standard_decode(model: nn.Module) -> bool:
    """True when the model's head is an anchor-free `DetectionHead` using the base class's raw/decode."""
    head = getattr(model, "head", None)
    return (isinstance(head, DetectionHead) and type(head).raw is DetectionHead.raw
            and type(head).decode is DetectionHead.decode and hasattr(model, "features"))


class ExportGraph(nn.Module):
    """Wraps a deployed detector: `images [B, 3, H, W]` → `[B, N, 4 + C]`, equal to `model(images)`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.names = model.names
        self.strides = list(model.strides)
        self.num_classes = model.num_classes
        self.lean = has_standard_decode(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.lean:
            return self.model(x)
        head = self.model.head
        features = self.model.features(x)
        box_maps, cls_maps, obj_maps, centres, scales = [], [], [], [], []
        for level, (feature, stride) in enumerate(zip(features, head.strides)):
            box, cls, obj = head.level_maps(level, feature)
            box_maps.append(box.flatten(2))
            cls_maps.append(cls.flatten(2))
            if obj is not None:
                obj_maps.append(obj.flatten(2))
            centre, scale = _level_anchors(feature, float(stride))
            centres.append(centre)
            scales.append(scale)
        box = torch.cat(box_maps, 2)  # [B, 4R, N]
        reg_max = head.reg_max
        probs = box.reshape(box.shape[0], 4, reg_max, box.shape[2]).softmax(2)  # [B, 4, R, N]
        dist = (head.dfl.bins.to(box.dtype).view(1, 1, 1, reg_max) @ probs).squeeze(2)  # [B, 4, N]
        boxes = dist * torch.cat(scales, 1) + torch.cat(centres, 1)  # [B, 4, N] xyxy
        scores = torch.cat(cls_maps, 2).sigmoid()
        if obj_maps:
            scores = scores * torch.cat(obj_maps, 2).sigmoid()
        return torch.cat((boxes, scores), 1).transpose(1, 2)


def _level_anchors(feature: torch.Tensor, stride: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per anchor of one level: `(cx, cy, cx, cy)` `[4, H·W]` and `(−s, −s, s, s)` `[4, H·W]` in pixels."""
    h, w = feature.shape[-2:]
    ys = (torch.arange(h, dtype=feature.dtype, device=feature.device) + 0.5) * stride
    xs = (torch.arange(w, dtype=feature.dtype, device=feature.device) + 0.5) * stride
    grid_x = xs.view(1, -1).expand(h, w).reshape(1, -1)
    grid_y = ys.view(-1, 1).expand(h, w).reshape(1, -1)
    centre = torch.cat((grid_x, grid_y, grid_x, grid_y), 0)
    sign = torch.tensor([-stride, -stride, stride, stride], dtype=feature.dtype, device=feature.device)
    return centre, sign.view(4, 1).expand_as(centre)
