"""Coupled head (YOLOv5 style): one conv path per level whose last 1×1 conv emits box, class
(and objectness) channels together. Kept for ablations against the decoupled head."""

from __future__ import annotations

import torch
from torch import nn

from detforge.errors import ConfigError
from detforge.models.heads.base import DetectionHead, class_bias_prior
from detforge.models.heads.decoupled import BOX_BIAS, OBJ_PRIOR_LOGIT, conv_stack, matched_target
from detforge.models.heads.matching import (
    UNBOUNDED_ARGS,
    check_width_args,
    count_params,
    fit_width_mult,
    scaled,
)
from detforge.registry import register_head


@register_head("coupled")
class CoupledHead(DetectionHead):
    """Per level: `convs` 3×3 ConvBNAct of `width` channels (default max(c_P3, 4·reg_max)),
    then one 1×1 conv with 4·reg_max + C (+ 1) outputs, split into box / class / objectness.
    `width_mult`, `match_params`, `target_params`: as for the decoupled head (models/heads/matching.py)."""

    unbounded_args = UNBOUNDED_ARGS

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int = 80,
        reg_max: int = 16,
        convs: int = 2,
        width: int | None = None,
        objectness: bool = False,
        width_mult: float = 1.0,
        match_params: bool = False,
        target_params: int | None = None,
    ):
        super().__init__(in_channels, strides, num_classes, reg_max)
        if convs < 0:
            raise ConfigError("head.convs must be ≥ 0")
        check_width_args(width_mult, target_params)
        if match_params or target_params is not None:  # models/heads/matching.py
            target = target_params or matched_target(in_channels, strides, num_classes, reg_max)
            width_mult = fit_width_mult(
                lambda f: count_params(lambda: CoupledHead(in_channels, strides, num_classes, reg_max, convs, width,
                                                           objectness, f)), target, what="CoupledHead")
        self.width_mult = width_mult
        width = scaled(width or max(in_channels[0], 4 * reg_max), width_mult)
        self.has_objectness = objectness
        self.split_sizes = [4 * reg_max, num_classes] + ([1] if objectness else [])
        self.branches = nn.ModuleList(
            nn.Sequential(*conv_stack(c, width, convs), nn.Conv2d(width if convs else c, sum(self.split_sizes), 1))
            for c in in_channels
        )
        self.init_biases()

    @torch.no_grad()
    def init_biases(self) -> None:
        for level, stride in enumerate(self.strides):
            bias = self.branches[level][-1].bias
            bias[: 4 * self.reg_max] = BOX_BIAS
            bias[4 * self.reg_max : 4 * self.reg_max + self.num_classes] = class_bias_prior(self.num_classes, stride)
            if self.has_objectness:
                bias[-1] = OBJ_PRIOR_LOGIT

    def level_maps(self, level: int, x: torch.Tensor):
        parts = self.branches[level](x).split(self.split_sizes, dim=1)
        return parts[0], parts[1], parts[2] if self.has_objectness else None
