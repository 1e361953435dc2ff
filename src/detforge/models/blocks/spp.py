"""SPPCSPC: spatial pyramid pooling inside a cross-stage-partial block (the YOLOv7 neck's top)."""

from __future__ import annotations

import torch
from torch import nn

from detforge.models.layers import ConvBNAct


class SPPCSPC(nn.Module):
    """CSP split: one branch is a 1×1 conv (`shortcut`); the other reduces the input
    (1×1 → 3×3 → 1×1), concatenates it with its max-pools of sizes `kernels` (several receptive
    fields at once), and merges (1×1 → 3×3). A final 1×1 conv fuses both branches.

    `lite=True` is YOLOv7-tiny's version: no 3×3 convs, pools concatenated largest first.
    `hidden` defaults to `c_out`. `[B, c_in, H, W]` → `[B, c_out, H, W]`.
    """

    def __init__(self, c_in: int, c_out: int, hidden: int | None = None, kernels: tuple[int, ...] = (5, 9, 13),
                 lite: bool = False, act: bool | str = True):
        super().__init__()
        h = hidden or c_out
        self.lite = lite
        self.shortcut = ConvBNAct(c_in, h, 1, act=act)
        self.reduce = nn.Sequential(ConvBNAct(c_in, h, 1, act=act)) if lite else nn.Sequential(
            ConvBNAct(c_in, h, 1, act=act), ConvBNAct(h, h, 3, act=act), ConvBNAct(h, h, 1, act=act))
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernels)
        self.merge = nn.Sequential(ConvBNAct((len(kernels) + 1) * h, h, 1, act=act))
        if not lite:
            self.merge.append(ConvBNAct(h, h, 3, act=act))
        self.project = ConvBNAct(2 * h, c_out, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        pooled = [pool(y) for pool in self.pools]
        parts = [*reversed(pooled), y] if self.lite else [y, *pooled]
        return self.project(torch.cat((self.merge(torch.cat(parts, dim=1)), self.shortcut(x)), dim=1))
