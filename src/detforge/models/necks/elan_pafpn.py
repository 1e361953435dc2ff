"""YOLOv7's PAFPN neck: SPPCSPC on the coarsest level, a top-down pass and a bottom-up pass with
ELAN merges, and a 3×3 output conv per level (RepConv in YOLOv7/YOLOv7-W… where planned)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from detforge.errors import ConfigError
from detforge.models.blocks.down import DownKind, downsample
from detforge.models.blocks.elan import ELAN
from detforge.models.blocks.rep import ConvKind, rep_conv
from detforge.models.blocks.spp import SPPCSPC
from detforge.models.layers import ConvBNAct
from detforge.registry import register_neck


@register_neck("elan_pafpn")
class ELANPAFPN(nn.Module):
    """For L input levels (C_0 finest … C_{L-1} coarsest):

    top = SPPCSPC(C_{L-1}) (`spp_channels`; `spp_lite` for YOLOv7-tiny).
    Top-down, i = L-2 … 0: the coarser map is reduced by a 1×1 conv to `reduce_channels[i]` and
    upsampled ×2, the backbone map C_i by a 1×1 "lateral" conv to the same width; both are
    concatenated (lateral first) and merged by an ELAN (`td_hidden[i]` → `td_channels[i]`).
    Bottom-up, i = 1 … L-1: the finer output is down-sampled (`down`: conv | mp | downc) to
    `down_channels[i-1]`, concatenated with the top-down map of level i (the top for L-1) and merged
    by an ELAN (`bu_hidden[i-1]` → `bu_channels[i-1]`). Level 0's output is its top-down map.
    Each output then passes a 3×3 `out_conv` (conv | repconv | repconvn) to `out_widths[i]`.

    `forward_with_aux` also returns the maps auxiliary heads read: the top-down maps (level 0's
    output, …, the SPPCSPC top), `aux_channels` wide. With `aux_last_group` (E-ELAN necks, as in
    YOLOv7-E6E) an aux head reads the last group of each top-down E-ELAN instead of the merged map.
    """

    def __init__(
        self,
        in_channels: list[int],
        spp_channels: int = 512,
        spp_lite: bool = False,
        reduce_channels: list[int] = (128, 256),
        td_hidden: list[int] = (128, 256),
        td_channels: list[int] = (128, 256),
        down: DownKind = "mp",
        down_channels: list[int] = (256, 512),
        bu_hidden: list[int] = (256, 512),
        bu_channels: list[int] = (256, 512),
        out_widths: list[int] = (256, 512, 1024),
        out_conv: ConvKind = "repconv",
        elan_depth: int = 4,
        elan_every: int = 1,
        elan_width_ratio: float = 0.5,
        cardinality: int = 1,
        aux_last_group: bool = False,
        act: Literal["silu", "leaky_relu", "relu"] = "silu",
    ):
        super().__init__()
        n = len(in_channels)
        if n < 2:
            raise ConfigError(f"neck elan_pafpn needs at least 2 input levels, got {n}")
        for key, values, want in (("reduce_channels", reduce_channels, n - 1), ("td_hidden", td_hidden, n - 1),
                                  ("td_channels", td_channels, n - 1), ("down_channels", down_channels, n - 1),
                                  ("bu_hidden", bu_hidden, n - 1), ("bu_channels", bu_channels, n - 1),
                                  ("out_widths", out_widths, n)):
            if len(values) != want:
                raise ConfigError(f"neck.{key} needs {want} entries for {n} levels, got {list(values)}")

        def elan(c_in: int, c_out: int, hidden: int, name: str) -> ELAN:
            return ELAN(c_in, c_out, hidden, elan_depth, round(hidden * elan_width_ratio), elan_every, cardinality,
                        act, name=name)

        self.spp = SPPCSPC(in_channels[-1], spp_channels, lite=spp_lite, act=act)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.reduce, self.lateral, self.top_down = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        td = [0] * n
        td[-1] = spp_channels
        for i in reversed(range(n - 1)):  # built coarse to fine: the order they run in
            self.reduce.append(ConvBNAct(td[i + 1], reduce_channels[i], 1, act=act))
            self.lateral.append(ConvBNAct(in_channels[i], reduce_channels[i], 1, act=act))
            self.top_down.append(elan(2 * reduce_channels[i], td_channels[i], td_hidden[i],
                                      f"neck.top_down.{n - 2 - i}"))
            td[i] = td_channels[i]
        self.downsample, self.bottom_up = nn.ModuleList(), nn.ModuleList()
        out = [td[0]]
        for i in range(1, n):
            self.downsample.append(downsample(down, out[-1], down_channels[i - 1], act))
            self.bottom_up.append(elan(down_channels[i - 1] + td[i], bu_channels[i - 1], bu_hidden[i - 1],
                                       f"neck.bottom_up.{i - 1}"))
            out.append(bu_channels[i - 1])
        self.out_convs = nn.ModuleList(
            rep_conv(out_conv, c, w, act=act, where=f"neck.out_convs.{i}")
            for i, (c, w) in enumerate(zip(out, out_widths))
        )
        self.in_channels = list(in_channels)
        self.out_channels = list(out_widths)
        self.aux_channels = td
        self.aux_last_group = aux_last_group

    def forward_with_aux(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(outputs, top-down maps for auxiliary heads)."""
        top_down = [self.spp(features[-1])]
        aux = [top_down[0]]
        for reduce, lateral, block, c in zip(self.reduce, self.lateral, self.top_down, reversed(features[:-1])):
            up = self.upsample(reduce(top_down[0]))
            groups = block.forward_groups(torch.cat((lateral(c), up), dim=1))
            top_down.insert(0, groups.sum(dim=1) if groups.shape[1] > 1 else groups[:, 0])
            aux.insert(0, groups[:, -1] if self.aux_last_group else top_down[0])
        outputs = [top_down[0]]
        for down, block, coarser in zip(self.downsample, self.bottom_up, top_down[1:]):
            outputs.append(block(torch.cat((down(outputs[-1]), coarser), dim=1)))
        return [conv(x) for conv, x in zip(self.out_convs, outputs)], aux

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.forward_with_aux(features)[0]
