"""ELAN backbone (the YOLOv7 family's trunk): stem, then per level a down-sampler and an ELAN
(or E-ELAN) block."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from detforge.errors import ConfigError
from detforge.models.blocks.down import DownKind, ReOrg, downsample
from detforge.models.blocks.elan import ELAN
from detforge.models.blocks.rep import ConvKind
from detforge.models.layers import ConvBNAct
from detforge.registry import register_backbone

Activation = Literal["silu", "leaky_relu", "relu"]


@register_backbone("elan_net")
class ELANNet(nn.Module):
    """Stem (optionally behind a ReOrg space-to-depth), then one stage per level from P2:
    a down-sampler (`conv`, `mp`, `downc` or `maxpool`, see `blocks.down.downsample`) and an ELAN.

    Args:
        stem: the stem convs as `[channels, kernel, stride]`; with `reorg` the input is first
            space-to-depth'ed (stride 2). The stem must end at stride 2 (P1).
        stage_down: down-sampler kind per stage (P2, P3, ...).
        stage_down_channels: output channels of each down-sampler (for `maxpool`: its input's).
        stage_hidden: ELAN stem width per stage; stage_channels: ELAN output (transition) width.
        elan_depth / elan_every / elan_width_ratio: the ELAN chain (see `blocks.elan.ELAN`);
            the 3×3 width is `hidden × elan_width_ratio`.
        cardinality: > 1 makes every stage an E-ELAN.
        elan_conv: kind of the ELAN chain convs (planned re-parameterization applies).
        out_levels: pyramid levels returned, e.g. [3, 4, 5] (P5 models) or [3, 4, 5, 6].
    Output: list of `[B, out_channels[i], H / strides[i], W / strides[i]]`.
    """

    def __init__(
        self,
        stem: list[list[int]] = ((32, 3, 1), (64, 3, 2), (64, 3, 1)),
        stage_down: list[DownKind] = ("conv", "mp", "mp", "mp"),
        stage_down_channels: list[int] = (128, 256, 512, 1024),
        stage_hidden: list[int] = (64, 128, 256, 256),
        stage_channels: list[int] = (256, 512, 1024, 1024),
        elan_depth: int = 4,
        elan_every: int = 2,
        elan_width_ratio: float = 1.0,
        cardinality: int = 1,
        elan_conv: ConvKind = "conv",
        swap_identity: bool = False,
        reorg: bool = False,
        act: Activation = "silu",
        in_channels: int = 3,
        out_levels: list[int] = (3, 4, 5),
    ):
        super().__init__()
        lengths = {len(stage_down), len(stage_down_channels), len(stage_hidden), len(stage_channels)}
        if len(lengths) != 1:
            raise ConfigError(
                "backbone.stage_down, stage_down_channels, stage_hidden and stage_channels need one entry per stage"
            )
        stride, c = (2, 4 * in_channels) if reorg else (1, in_channels)
        layers: list[nn.Module] = [ReOrg()] if reorg else []
        for i, spec in enumerate(stem):
            if len(spec) != 3:
                raise ConfigError(f"backbone.stem[{i}] must be [channels, kernel, stride], got {spec}")
            layers.append(ConvBNAct(c, spec[0], spec[1], spec[2], act=act))
            c, stride = spec[0], stride * spec[2]
        if stride != 2:
            raise ConfigError(f"backbone.stem must end at stride 2 (P1), it ends at stride {stride}")
        self.stem = nn.Sequential(*layers)
        levels = list(range(2, 2 + len(stage_channels)))
        if not out_levels or any(lv not in levels for lv in out_levels) or list(out_levels) != sorted(set(out_levels)):
            raise ConfigError(f"backbone.out_levels {list(out_levels)} must be increasing levels among {levels}")
        stages = []
        for i, (kind, c_down, hidden, c_out) in enumerate(
            zip(stage_down, stage_down_channels, stage_hidden, stage_channels)
        ):
            if kind == "maxpool" and c_down != c:
                raise ConfigError(f"backbone.stage_down_channels[{i}]: a maxpool keeps {c} channels, got {c_down}")
            elan = ELAN(c_down, c_out, hidden, elan_depth, round(hidden * elan_width_ratio), elan_every, cardinality,
                        act, elan_conv, swap_identity, name=f"backbone.stages.{i}.elan")
            stages.append(nn.Sequential(downsample(kind, c, c_down, act), elan))
            c = c_out
        self.stages = nn.ModuleList(stages)
        self.out_levels = list(out_levels)
        self.out_channels = [stage_channels[lv - 2] for lv in self.out_levels]
        self.strides = [2**lv for lv in self.out_levels]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return [features[lv - 2] for lv in self.out_levels]
