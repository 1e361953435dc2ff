"""YOLOv7's anchor-based heads: IDetect (lead) and the auxiliary head of IAuxDetect.

IDetect, per level: ImplicitA → 1×1 conv to A·(5 + C) → ImplicitM; outputs follow
`AnchorHead` (anchors, decode). `fuse()` folds both implicit vectors into the conv.

IAuxDetect (the P6 models) = an IDetect lead head + `AuxAnchorHead`, which the detector keeps
as its training-only `aux` part: per level a 3×3 conv on an intermediate neck map, then a 1×1
prediction conv with the lead's anchors. `deploy()` drops it, so inference costs nothing extra.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from detforge.errors import ConfigError
from detforge.models.blocks.implicit import ImplicitA, ImplicitM, fold_implicit
from detforge.models.heads.anchor_base import AnchorHead
from detforge.models.layers import ConvBNAct
from detforge.registry import register_head

P5_ANCHORS = [[12, 16, 19, 36, 40, 28], [36, 75, 76, 55, 72, 146], [142, 110, 192, 243, 459, 401]]
OBJECTS_PER_IMAGE = 8  # objectness bias prior: about 8 objects per 640-px image
CLASS_PRIOR = 0.6


@torch.no_grad()
def init_prediction_bias(conv: nn.Conv2d, num_anchors: int, num_classes: int, stride: int) -> None:
    """Objectness and class logits start near their expected frequencies (focal-loss prior)."""
    bias = conv.bias.view(num_anchors, -1)
    bias[:, 4] += math.log(OBJECTS_PER_IMAGE / (640 / stride) ** 2)
    bias[:, 5:] += math.log(CLASS_PRIOR / (num_classes - 0.99)) if num_classes > 1 else 0.0


@register_head("idetect")
class IDetect(AnchorHead):
    """Anchor-based head with implicit knowledge (see the module docstring).

    Args:
        anchors: per level, the anchor sizes as a flat list `[w0, h0, w1, h1, ...]` in pixels.
        implicit: with ImplicitA/ImplicitM (YOLOv7 training layout); False gives the plain
            `Detect` of the reference's deploy layout.
    Training output: `AnchorHeadOutput`; inference: `[B, N, 4 + C]` xyxy pixels + obj·cls scores.
    """

    def __init__(self, in_channels: list[int], strides: list[int], num_classes: int = 80,
                 anchors: list[list[float]] = P5_ANCHORS, implicit: bool = True):
        super().__init__(in_channels, strides, num_classes, anchors)
        outputs = self.num_anchors * self.num_outputs
        self.preds = nn.ModuleList(nn.Conv2d(c, outputs, 1) for c in in_channels)
        self.implicit_a = nn.ModuleList(ImplicitA(c) for c in in_channels) if implicit else None
        self.implicit_m = nn.ModuleList(ImplicitM(outputs) for _ in in_channels) if implicit else None
        for conv, stride in zip(self.preds, self.strides):
            init_prediction_bias(conv, self.num_anchors, num_classes, stride)

    def level_logits(self, level: int, x: torch.Tensor) -> torch.Tensor:
        if self.implicit_a is None:
            return self.preds[level](x)
        return self.implicit_m[level](self.preds[level](self.implicit_a[level](x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold ImplicitA/ImplicitM into each prediction conv; the implicit modules go away."""
        if self.implicit_a is None:
            return
        for conv, ia, im in zip(self.preds, self.implicit_a, self.implicit_m):
            fold_implicit(conv, ia, im)
        self.implicit_a = self.implicit_m = None


@register_head("yolov7_aux")
class AuxAnchorHead(AnchorHead):
    """Auxiliary anchor head (the aux half of YOLOv7's IAuxDetect): per level a 3×3 conv of
    `widths[i]` channels, then a 1×1 prediction conv. Used as a detector's training-only `aux`
    part; its anchors and class count are the lead head's."""

    def __init__(self, in_channels: list[int], strides: list[int], num_classes: int = 80,
                 anchors: list[list[float]] = P5_ANCHORS, widths: list[int] | None = None,
                 act: str = "silu"):
        super().__init__(in_channels, strides, num_classes, anchors)
        widths = list(widths or in_channels)
        if len(widths) != len(in_channels):
            raise ConfigError(f"aux.widths needs one width per level ({len(in_channels)}), got {widths}")
        self.stems = nn.ModuleList(ConvBNAct(c, w, 3, act=act) for c, w in zip(in_channels, widths))
        self.preds = nn.ModuleList(nn.Conv2d(w, self.num_anchors * self.num_outputs, 1) for w in widths)
        for conv, stride in zip(self.preds, self.strides):
            init_prediction_bias(conv, self.num_anchors, num_classes, stride)

    def level_logits(self, level: int, x: torch.Tensor) -> torch.Tensor:
        return self.preds[level](self.stems[level](x))
