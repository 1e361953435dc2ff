"""CSPDarknet with C2f stages (the YOLOv8 backbone)."""

from __future__ import annotations

import torch
from torch import nn

from detforge.errors import ConfigError
from detforge.models.layers import SPPF, C2f, ConvBNAct
from detforge.models.scaling import Scaling
from detforge.registry import register_backbone


@register_backbone("csp_darknet")
class CSPDarknet(nn.Module):
    """Stem (P1, stride 2), then one stage per level P2..P5: a stride-2 conv and a C2f block;
    SPPF after the last stage.

    Args (base values, before scaling):
        stem_channels: channels of the stride-2 stem.
        stage_channels: output channels of the stages for P2, P3, P4, P5.
        stage_depths: bottleneck repeats of each stage's C2f.
        out_levels: pyramid levels returned, e.g. [3, 4, 5] (default) or [2, 3, 4, 5] for small objects.
    Output: list of `[B, out_channels[i], H / strides[i], W / strides[i]]`.
    """

    def __init__(
        self,
        in_channels: int = 3,
        stem_channels: int = 64,
        stage_channels: list[int] = (128, 256, 512, 1024),
        stage_depths: list[int] = (3, 6, 6, 3),
        sppf_kernel: int = 5,
        out_levels: list[int] = (3, 4, 5),
        scaling: Scaling | None = None,
    ):
        super().__init__()
        scaling = scaling or Scaling()
        if len(stage_channels) != len(stage_depths):
            raise ConfigError(
                f"backbone.stage_channels has {len(stage_channels)} entries but stage_depths has "
                f"{len(stage_depths)}; give one depth per stage"
            )
        levels = range(2, 2 + len(stage_channels))
        if not out_levels or any(level not in levels for level in out_levels) or list(out_levels) != sorted(
            set(out_levels)
        ):
            raise ConfigError(
                f"backbone.out_levels {list(out_levels)} must be increasing levels among {list(levels)}"
            )
        self.out_levels = list(out_levels)
        self.stem = ConvBNAct(in_channels, scaling.channels(stem_channels), 3, 2)
        widths = [scaling.channels(c) for c in stage_channels]
        stages, c_prev = [], scaling.channels(stem_channels)
        for c_out, depth in zip(widths, stage_depths):
            stages.append(nn.Sequential(ConvBNAct(c_prev, c_out, 3, 2),
                                        C2f(c_out, c_out, scaling.repeats(depth), True)))
            c_prev = c_out
        self.stages = nn.ModuleList(stages)
        self.sppf = SPPF(c_prev, c_prev, sppf_kernel)
        self.out_channels = [widths[level - 2] for level in self.out_levels]
        self.strides = [2**level for level in self.out_levels]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i == len(self.stages) - 1:
                x = self.sppf(x)
            features.append(x)
        return [features[level - 2] for level in self.out_levels]
