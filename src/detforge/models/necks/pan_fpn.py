"""PAN-FPN neck: a top-down pass (FPN) then a bottom-up pass (PAN), C2f blocks at each merge."""

from __future__ import annotations

import torch
from torch import nn

from detforge.errors import ConfigError
from detforge.models.layers import C2f, ConvBNAct
from detforge.models.scaling import Scaling
from detforge.registry import register_neck


@register_neck("pan_fpn")
class PANFPN(nn.Module):
    """Fuses any number (≥ 2) of levels; output level i has `out_channels[i]` channels.

    Top-down: the coarser map is upsampled ×2, concatenated with the finer backbone map, merged
    by a C2f. Bottom-up: the finer output is downsampled by a stride-2 conv, concatenated with
    the top-down map of the next level, merged by a C2f. The coarsest backbone map feeds the
    bottom-up pass directly (as in YOLOv8).

    `forward_with_aux` also returns the maps an auxiliary head reads (`train --aux`): the
    top-down maps (level 0's output, the intermediate top-down maps, the coarsest backbone map),
    `aux_channels` wide — the same place YOLOv7's neck feeds its auxiliary heads.

    Args:
        in_channels: channels of each input level (given by the backbone, already scaled).
        depth: base bottleneck repeats of each C2f.
        channels: base output channels per level; default = the input channels.
    """

    def __init__(
        self,
        in_channels: list[int],
        depth: int = 3,
        channels: list[int] | None = None,
        scaling: Scaling | None = None,
    ):
        super().__init__()
        scaling = scaling or Scaling()
        if len(in_channels) < 2:
            raise ConfigError(f"neck pan_fpn needs at least 2 input levels, got {len(in_channels)}")
        if channels is not None and len(channels) != len(in_channels):
            raise ConfigError(
                f"neck.channels has {len(channels)} entries but the backbone gives {len(in_channels)} levels"
            )
        out = list(in_channels) if channels is None else [scaling.channels(c) for c in channels]
        n = scaling.repeats(depth)
        levels = len(in_channels)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        top_down, td_channels = [], [0] * levels
        td_channels[-1] = in_channels[-1]
        for i in reversed(range(levels - 1)):
            top_down.append(C2f(td_channels[i + 1] + in_channels[i], out[i], n))
            td_channels[i] = out[i]
        self.top_down = nn.ModuleList(top_down)
        self.downsample = nn.ModuleList(ConvBNAct(out[i], out[i], 3, 2) for i in range(levels - 1))
        self.bottom_up = nn.ModuleList(C2f(out[i] + td_channels[i + 1], out[i + 1], n) for i in range(levels - 1))
        self.in_channels = list(in_channels)
        self.out_channels = out
        self.aux_channels = td_channels

    def forward_with_aux(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(outputs, top-down maps for auxiliary heads)."""
        top_down = [features[-1]]
        for block, lateral in zip(self.top_down, reversed(features[:-1])):
            top_down.insert(0, block(torch.cat([self.upsample(top_down[0]), lateral], dim=1)))
        outputs = [top_down[0]]
        for down, block, coarser in zip(self.downsample, self.bottom_up, top_down[1:]):
            outputs.append(block(torch.cat([down(outputs[-1]), coarser], dim=1)))
        return outputs, top_down

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.forward_with_aux(features)[0]
