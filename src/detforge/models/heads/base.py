"""What every detection head shares: anchor points, DFL decoding and the inference output.

A head turns the neck's maps into per-level raw predictions; this base class flattens them
into one `HeadOutput` (training) or decodes them into `[B, N, 4 + C]` boxes and scores
(inference). Subclasses only decide how the per-level maps are computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from detforge.ops.boxes import dfl_decode, distance_to_xyxy

PRIOR_OBJECTS_PER_IMAGE = 5  # bias prior: about 5 objects per 640-px image, spread over the classes
PRIOR_IMAGE_SIZE = 640


@dataclass
class HeadOutput:
    """Raw head predictions, all levels concatenated (level by level, row-major within a level).

    box: `[B, N, 4*reg_max]` DFL logits of the (left, top, right, bottom) distances.
    cls: `[B, N, C]` class logits.
    obj: `[B, N, 1]` objectness logits, or None when the head has no objectness branch.
    anchor_points: `[N, 2]` anchor centres in input pixels.
    strides: `[N]` stride of each anchor's level.
    aux: the auxiliary head's output in the same form (training with an aux part only), else None.
    """

    box: torch.Tensor
    cls: torch.Tensor
    obj: torch.Tensor | None
    anchor_points: torch.Tensor
    strides: torch.Tensor
    aux: HeadOutput | None = None


class DFL(nn.Module):
    """Distribution Focal Loss decoding as a module: `ops.boxes.dfl_decode` (the one decode, which
    the loss uses too) with the bins held by the model.

    `bins` is a fixed (non-trainable) parameter holding 0..reg_max-1, so the projection is part
    of the model's weights exactly as in the reference models.
    """

    def __init__(self, reg_max: int):
        super().__init__()
        self.reg_max = reg_max
        self.bins = nn.Parameter(torch.arange(reg_max, dtype=torch.float32), requires_grad=False)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """`[..., 4*reg_max]` logits → `[..., 4]` distances in stride units."""
        return dfl_decode(logits, self.reg_max, self.bins)


def make_anchors(shapes: list[tuple[int, int]], strides: list[int], device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres `[N, 2]` (pixels) and strides `[N]` for feature maps of the given (H, W)."""
    points, stride_list = [], []
    for (h, w), s in zip(shapes, strides):
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * s
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x, grid_y), -1).reshape(-1, 2))
        stride_list.append(torch.full((h * w,), float(s), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(stride_list)


def class_bias_prior(num_classes: int, stride: int) -> float:
    """Initial class logit so that sigmoid ≈ expected fraction of positive anchors at this level."""
    return math.log(PRIOR_OBJECTS_PER_IMAGE / num_classes / (PRIOR_IMAGE_SIZE / stride) ** 2)


class DetectionHead(nn.Module):
    """Base class: subclasses set up their layers and implement `level_maps`.

    Declares `in_channels`, `strides`, `num_classes`, `reg_max`, `has_objectness`.
    """

    has_objectness = False

    def __init__(self, in_channels: list[int], strides: list[int], num_classes: int, reg_max: int):
        super().__init__()
        self.in_channels = list(in_channels)
        self.strides = list(strides)
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.dfl = DFL(reg_max)
        self._anchor_cache: tuple | None = None

    def level_maps(self, level: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Return `box [B, 4*reg_max, H, W]`, `cls [B, C, H, W]`, `obj [B, 1, H, W] | None`."""
        raise NotImplementedError

    def anchors(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(f.shape[-2:] for f in features), features[0].device, features[0].dtype)
        if self._anchor_cache is None or self._anchor_cache[0] != key:
            shapes = [tuple(f.shape[-2:]) for f in features]
            self._anchor_cache = (key, make_anchors(shapes, self.strides, features[0].device, features[0].dtype))
        return self._anchor_cache[1]

    def raw(self, features: list[torch.Tensor]) -> HeadOutput:
        maps = [self.level_maps(i, x) for i, x in enumerate(features)]

        def flat(index: int) -> torch.Tensor:
            return torch.cat([m[index].flatten(2).transpose(1, 2) for m in maps], dim=1)

        points, strides = self.anchors(features)
        return HeadOutput(flat(0), flat(1), flat(2) if self.has_objectness else None, points, strides)

    def decode(self, out: HeadOutput) -> torch.Tensor:
        """`HeadOutput` → `[B, N, 4 + C]`: xyxy boxes in input pixels, then class scores in [0, 1]."""
        boxes = distance_to_xyxy(out.anchor_points, self.dfl(out.box) * out.strides[:, None])
        scores = out.cls.sigmoid()
        if out.obj is not None:
            scores = scores * out.obj.sigmoid()
        return torch.cat((boxes, scores), dim=-1)

    def forward(self, features: list[torch.Tensor]) -> HeadOutput | torch.Tensor:
        out = self.raw(features)
        return out if self.training else self.decode(out)
