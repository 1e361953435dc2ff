"""Implicit knowledge (YOLOR): a learned per-channel vector added to (ImplicitA) or multiplied
with (ImplicitM) a feature map. Next to a 1×1 conv both are affine in the conv's input/output,
so they fold into that conv's weight and bias at deploy time: zero inference cost."""

from __future__ import annotations

import torch
from torch import nn

IMPLICIT_STD = 0.02


class ImplicitA(nn.Module):
    """`x + a`, with `a: [1, C, 1, 1]` initialised around 0."""

    def __init__(self, channels: int):
        super().__init__()
        self.implicit = nn.Parameter(torch.empty(1, channels, 1, 1))
        nn.init.normal_(self.implicit, mean=0.0, std=IMPLICIT_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit + x


class ImplicitM(nn.Module):
    """`x * m`, with `m: [1, C, 1, 1]` initialised around 1."""

    def __init__(self, channels: int):
        super().__init__()
        self.implicit = nn.Parameter(torch.empty(1, channels, 1, 1))
        nn.init.normal_(self.implicit, mean=1.0, std=IMPLICIT_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit * x


@torch.no_grad()
def fold_implicit(conv: nn.Conv2d, before: ImplicitA | None = None, after: ImplicitM | None = None) -> None:
    """Fold `after(conv(before(x)))` into `conv` in place (a 1×1 conv with bias):
    `W(x + a) + b = Wx + (Wa + b)`, then `m · (Wx + b') = (mW)x + m·b'`."""
    if conv.kernel_size != (1, 1) or conv.groups != 1 or conv.bias is None:
        raise ValueError("implicit knowledge folds only into an ungrouped 1×1 conv with a bias")
    if before is not None:
        conv.bias += (conv.weight.flatten(1) @ before.implicit.flatten()).to(conv.bias.dtype)
    if after is not None:
        m = after.implicit.flatten()
        conv.bias *= m
        conv.weight *= m.view(-1, 1, 1, 1)
