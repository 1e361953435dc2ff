"""Decoupled anchor-free head (YOLOv8 / YOLOX): separate box, class and optional objectness
branches per level, optionally behind a few shared convs (the "hybrid" head)."""

from __future__ import annotations

import torch
from torch import nn

from detforge.errors import ConfigError
from detforge.models.heads.base import DetectionHead, class_bias_prior
from detforge.models.heads.matching import (
    UNBOUNDED_ARGS,
    check_width_args,
    count_params,
    fit_width_mult,
    scaled,
)
from detforge.models.layers import ConvBNAct
from detforge.registry import register_head

BOX_BIAS = 2.0  # initial DFL logits: a flat distribution over the bins
OBJ_PRIOR_LOGIT = -4.595  # sigmoid ≈ 0.01, the usual objectness prior


def matched_target(in_channels: list[int], strides: list[int], num_classes: int, reg_max: int) -> int:
    """`head.match_params`' target: the parameters of the default decoupled head on the same trunk."""
    return count_params(lambda: DecoupledHead(in_channels, strides, num_classes, reg_max))


def conv_stack(c_in: int, width: int, count: int) -> list[nn.Module]:
    """`count` 3×3 ConvBNAct layers, the first taking `c_in` channels."""
    return [ConvBNAct(c_in if i == 0 else width, width, 3) for i in range(count)]


@register_head("decoupled")
class DecoupledHead(DetectionHead):
    """Per level: [shared convs] → box branch (convs → 4·reg_max DFL logits) and class branch
    (convs → C logits); with `objectness`, a 1×1 conv on the box branch features adds an
    objectness logit (YOLOX's third branch).

    Widths default to the YOLOv8 rule: box = max(16, c_P3 / 4, 4·reg_max),
    class = max(c_P3, min(C, 100)). `width_mult` scales them (and the shared convs' width, else the input's);
    `match_params: true` picks it so the head has the default decoupled head's parameter count on this trunk,
    `target_params: N` so it has N (within ±5%; models/heads/matching.py).
    """

    unbounded_args = UNBOUNDED_ARGS

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int = 80,
        reg_max: int = 16,
        box_convs: int = 2,
        cls_convs: int = 2,
        box_width: int | None = None,
        cls_width: int | None = None,
        objectness: bool = False,
        shared_convs: int = 0,
        width_mult: float = 1.0,
        match_params: bool = False,
        target_params: int | None = None,
    ):
        super().__init__(in_channels, strides, num_classes, reg_max)
        if box_convs < 1 or cls_convs < 1 or shared_convs < 0:
            raise ConfigError("head.box_convs and head.cls_convs must be ≥ 1, head.shared_convs ≥ 0")
        check_width_args(width_mult, target_params)
        if match_params or target_params is not None:  # models/heads/matching.py

            def build(f: float, **changes) -> DecoupledHead:
                kwargs = {"box_convs": box_convs, "cls_convs": cls_convs, "box_width": box_width,
                          "cls_width": cls_width, "objectness": objectness, "shared_convs": shared_convs,
                          "width_mult": f, **changes}
                return DecoupledHead(in_channels, strides, num_classes, reg_max, **kwargs)

            target = target_params or matched_target(in_channels, strides, num_classes, reg_max)
            width_mult = fit_width_mult(lambda f: count_params(lambda: build(f)), target, what=type(self).__name__)
        self.width_mult = width_mult
        box_width = scaled(box_width or max(16, in_channels[0] // 4, 4 * reg_max), width_mult)
        cls_width = scaled(cls_width or max(in_channels[0], min(num_classes, 100)), width_mult)
        self.has_objectness = objectness
        inner = [scaled(c, width_mult) if shared_convs else c for c in in_channels]  # what the branches read
        self.shared = nn.ModuleList(nn.Sequential(*conv_stack(c, w, shared_convs)) for c, w in zip(in_channels, inner))
        self.box_branches = nn.ModuleList(
            nn.Sequential(*conv_stack(c, box_width, box_convs), nn.Conv2d(box_width, 4 * reg_max, 1))
            for c in inner
        )
        self.cls_branches = nn.ModuleList(
            nn.Sequential(*conv_stack(c, cls_width, cls_convs), nn.Conv2d(cls_width, num_classes, 1))
            for c in inner
        )
        self.obj_preds = nn.ModuleList(nn.Conv2d(box_width, 1, 1) for _ in in_channels) if objectness else None
        self.init_biases()

    @torch.no_grad()
    def init_biases(self) -> None:
        for level, stride in enumerate(self.strides):
            self.box_branches[level][-1].bias.fill_(BOX_BIAS)
            self.cls_branches[level][-1].bias.fill_(class_bias_prior(self.num_classes, stride))
            if self.obj_preds is not None:
                self.obj_preds[level].bias.fill_(OBJ_PRIOR_LOGIT)

    def level_maps(self, level: int, x: torch.Tensor):
        x = self.shared[level](x)
        box_branch = self.box_branches[level]
        box_features = box_branch[:-1](x)
        obj = self.obj_preds[level](box_features) if self.obj_preds is not None else None
        return box_branch[-1](box_features), self.cls_branches[level](x), obj


@register_head("hybrid")
class HybridHead(DecoupledHead):
    """A decoupled head whose first `shared_convs` convs (default 1) are shared by the branches:
    the middle ground between the coupled and the decoupled designs, for ablations."""

    def __init__(self, in_channels: list[int], strides: list[int], num_classes: int = 80, reg_max: int = 16,
                 box_convs: int = 1, cls_convs: int = 1, box_width: int | None = None,
                 cls_width: int | None = None, objectness: bool = False, shared_convs: int = 1,
                 width_mult: float = 1.0, match_params: bool = False, target_params: int | None = None):
        if shared_convs < 1:
            raise ConfigError("head.shared_convs must be ≥ 1 for the hybrid head (0 is the decoupled head)")
        super().__init__(in_channels, strides, num_classes, reg_max, box_convs, cls_convs, box_width, cls_width,
                         objectness, shared_convs, width_mult, match_params, target_params)
