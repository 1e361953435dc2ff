"""The anchor-based head contract (YOLOv7's IDetect family): training output and decoding.

Each level predicts, for each of A anchor boxes per cell, `5 + C` logits in the reference
order (x, y, w, h, objectness, classes...). Decoding, per the YOLOv5/YOLOv7 recipe:
`xy = (2σ(t_xy) − 0.5 + cell) · stride`, `wh = (2σ(t_wh))² · anchor`, score = σ(obj) · σ(cls).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from detforge.errors import ConfigError


@dataclass
class AnchorHeadOutput:
    """Raw anchor-head predictions (training mode).

    maps: per level `[B, A, H, W, 5 + C]` logits (x, y, w, h, obj, cls...).
    anchors: `[L, A, 2]` anchor (w, h) in input pixels.
    strides: stride of each level.
    aux: the auxiliary heads' output in the same form (training only), else None.
    """

    maps: list[torch.Tensor]
    anchors: torch.Tensor
    strides: list[int]
    aux: AnchorHeadOutput | None = None


def level_grid(h: int, w: int, device, dtype) -> torch.Tensor:
    """`[1, 1, H, W, 2]` cell (x, y) indices."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                            indexing="ij")
    return torch.stack((xs, ys), -1).view(1, 1, h, w, 2)


def decode_anchor_maps(maps: list[torch.Tensor], anchors: torch.Tensor, strides: list[int]) -> torch.Tensor:
    """`AnchorHeadOutput.maps` → `[B, N, 4 + C]`: xyxy boxes in input pixels, then obj·cls scores.

    N runs level by level, within a level anchor by anchor, then row-major over cells (the
    reference's order).
    """
    out = []
    for level, m in enumerate(maps):
        b, a, h, w, _ = m.shape
        y = m.sigmoid()
        grid = level_grid(h, w, m.device, y.dtype)
        xy = (y[..., :2] * 2 - 0.5 + grid) * strides[level]
        wh = (y[..., 2:4] * 2) ** 2 * anchors[level].to(y.dtype).view(1, a, 1, 1, 2)
        scores = y[..., 5:] * y[..., 4:5]
        out.append(torch.cat((xy - wh / 2, xy + wh / 2, scores), -1).view(b, a * h * w, -1))
    return torch.cat(out, 1)


class AnchorHead(nn.Module):
    """Base of anchor-based heads: holds the anchors, turns per-level conv outputs into
    `AnchorHeadOutput` (training) or decoded `[B, N, 4 + C]` (inference).

    Declares `in_channels`, `strides`, `num_classes`, `num_anchors`, `has_objectness`.
    Subclasses implement `level_logits(level, x) -> [B, A·(5 + C), H, W]`.
    """

    has_objectness = True

    def __init__(self, in_channels: list[int], strides: list[int], num_classes: int, anchors: list[list[float]]):
        super().__init__()
        if len(anchors) != len(in_channels) or any(len(a) % 2 or len(a) != len(anchors[0]) for a in anchors):
            raise ConfigError(
                f"head.anchors needs one list of (w, h) pairs per level ({len(in_channels)} levels), "
                f"the same count on every level; got {anchors}"
            )
        self.in_channels = list(in_channels)
        self.strides = list(strides)
        self.num_classes = num_classes
        self.num_anchors = len(anchors[0]) // 2
        self.num_outputs = 5 + num_classes
        # Pixels; a buffer so that it travels with the weights (trained anchors may differ).
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(len(anchors), -1, 2))

    def level_logits(self, level: int, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def raw(self, features: list[torch.Tensor]) -> AnchorHeadOutput:
        maps = []
        for level, x in enumerate(features):
            y = self.level_logits(level, x)
            b, _, h, w = y.shape
            maps.append(y.view(b, self.num_anchors, self.num_outputs, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return AnchorHeadOutput(maps, self.anchors, self.strides)

    def decode(self, out: AnchorHeadOutput) -> torch.Tensor:
        return decode_anchor_maps(out.maps, out.anchors, out.strides)

    def forward(self, features: list[torch.Tensor]) -> AnchorHeadOutput | torch.Tensor:
        out = self.raw(features)
        return out if self.training else self.decode(out)
