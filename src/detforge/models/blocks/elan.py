"""ELAN and E-ELAN: YOLOv7's computational blocks (paper §3.1).

ELAN: two 1×1 stems read the input; a chain of `depth` 3×3 convs grows from the second stem;
the stems and every `every`-th chain output are concatenated (deepest first) and a 1×1
*transition* conv projects the result to `c_out`. The many short gradient paths are what let
deep stacks of it keep learning.

E-ELAN (`cardinality` g > 1) widens the same block without touching its gradient paths:
*expand cardinality* — every conv gets g times the channels and, after the stems, g groups
(group convolution), so g independent ELANs run side by side on one input; *shuffle* — the
concatenated maps are reordered group by group, so each group's transition conv sees exactly
its own group's features; *merge cardinality* — the g transition outputs are added. With g = 1
it is ELAN; its weights equal g separate ELANs summed (the layout of the reference E6E files).
"""

from __future__ import annotations

import torch
from torch import nn

from detforge.errors import ConfigError
from detforge.models.blocks.rep import ConvKind, rep_conv
from detforge.models.layers import ConvBNAct


class ELAN(nn.Module):
    """`[B, c_in, H, W]` → `[B, c_out, H, W]`.

    Args:
        hidden: width of each 1×1 stem (per group).
        depth: number of chained 3×3 convs.
        width: width of the 3×3 convs (per group); default `hidden`.
        every: concatenate every `every`-th chain output, counted back from the last
            (2: YOLOv7/YOLOv7x backbones, 1: the YOLOv7 necks' "ELAN-H" and YOLOv7-tiny).
        cardinality: number of groups; > 1 makes it an E-ELAN.
        conv: kind of the 3×3 chain convs (`conv`, `repconv`, `repconvn`); they feed the
            concatenation, so planned re-parameterization forbids an identity branch there
            (`swap_identity` turns a `repconv` into `repconvn` instead of refusing).
    """

    def __init__(self, c_in: int, c_out: int, hidden: int, depth: int = 4, width: int | None = None,
                 every: int = 2, cardinality: int = 1, act: bool | str = True, conv: ConvKind = "conv",
                 swap_identity: bool = False, name: str = "elan"):
        super().__init__()
        g, width = cardinality, width or hidden
        if depth < 1 or every < 1 or g < 1:
            raise ConfigError(f"{name}: an ELAN needs elan_depth ≥ 1, elan_every ≥ 1 and cardinality ≥ 1 "
                              f"(got {depth}, {every}, {g})")
        self.cardinality = g
        self.stem_a = ConvBNAct(c_in, g * hidden, 1, act=act)
        self.stem_b = ConvBNAct(c_in, g * hidden, 1, act=act)
        self.convs = nn.ModuleList(
            rep_conv(conv, g * (hidden if i == 0 else width), g * width, 1, g, act, feeds="concat",
                     where=f"{name}.convs.{i}", swap_identity=swap_identity)
            for i in range(depth)
        )
        self.taps = list(range(depth - 1, -1, -every))  # chain outputs concatenated, deepest first
        self.part_widths = [width] * len(self.taps) + [hidden, hidden]
        self.transition = ConvBNAct(g * sum(self.part_widths), g * c_out, 1, groups=g, act=act)
        self.out_channels = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cardinality == 1:
            return self.forward_groups(x)[:, 0]
        return self.forward_groups(x).sum(dim=1)  # merge cardinality

    def forward_groups(self, x: torch.Tensor) -> torch.Tensor:
        """The groups' transition outputs before they are merged: `[B, cardinality, c_out, H, W]`."""
        a = self.stem_a(x)
        y = b = self.stem_b(x)
        chain = []
        for conv in self.convs:
            y = conv(y)
            chain.append(y)
        parts = [chain[i] for i in self.taps] + [b, a]
        g = self.cardinality
        if g == 1:
            return self.transition(torch.cat(parts, dim=1)).unsqueeze(1)
        # shuffle: group k's slice of every part, then the next group's, for the grouped transition
        groups = [p.chunk(g, dim=1) for p in parts]
        shuffled = torch.cat([chunks[k] for k in range(g) for chunks in groups], dim=1)
        return self.transition(shuffled).unflatten(1, (g, self.out_channels))


class EELAN(ELAN):
    """Extended ELAN: an ELAN with `cardinality` (default 2) groups; see the module docstring."""

    def __init__(self, c_in: int, c_out: int, hidden: int, depth: int = 4, width: int | None = None,
                 every: int = 2, cardinality: int = 2, act: bool | str = True, conv: ConvKind = "conv",
                 swap_identity: bool = False, name: str = "eelan"):
        super().__init__(c_in, c_out, hidden, depth, width, every, cardinality, act, conv, swap_identity, name)
