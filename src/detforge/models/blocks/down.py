"""Down-sampling blocks of the YOLOv7 family: the MP block, plain conv / max-pool, and ReOrg."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from detforge.errors import ConfigError
from detforge.models.layers import ConvBNAct

DownKind = Literal["conv", "mp", "downc", "maxpool"]


class MPDown(nn.Module):
    """The MP block: a max-pool branch ∥ a strided-conv branch, concatenated (conv branch first).

    pool branch: 2×2 max-pool → 1×1 conv to `c_out / 2`;
    conv branch: 1×1 conv to `hidden` → 3×3 stride-2 conv to `c_out / 2`.
    Halving with both a fixed (pool) and a learned (conv) operator keeps strong activations
    and learns the rest. `hidden` defaults to `c_out / 2` (YOLOv7's MP-1); the E6/D6/E6E models'
    DownC is the same block with `hidden = c_in`. `[B, c_in, H, W]` → `[B, c_out, H/2, W/2]`.
    """

    def __init__(self, c_in: int, c_out: int, hidden: int | None = None, act: bool | str = True):
        super().__init__()
        half = c_out // 2
        self.pool = nn.MaxPool2d(2, 2)
        self.pool_conv = ConvBNAct(c_in, half, 1, act=act)
        self.reduce = ConvBNAct(c_in, hidden or half, 1, act=act)
        self.down = ConvBNAct(hidden or half, half, 3, 2, act=act)
        self.kind = "mp"  # or "downc" (set by `downsample`): how the reference lays out its weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.down(self.reduce(x)), self.pool_conv(self.pool(x))), dim=1)


class ReOrg(nn.Module):
    """Space-to-depth (the P6 models' stem): every 2×2 pixel block becomes 4 channels.
    `[B, C, H, W]` → `[B, 4C, H/2, W/2]`, channel blocks ordered (even row, even col),
    (odd row, even col), (even row, odd col), (odd row, odd col)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), dim=1)


def downsample(kind: DownKind, c_in: int, c_out: int, act: bool | str = True) -> nn.Module:
    """A stride-2 block: `conv` (3×3 s2), `mp` (MP block, hidden c_out/2), `downc` (MP block,
    hidden c_in) or `maxpool` (2×2 max-pool; keeps the channels, so c_out must equal c_in)."""
    if kind == "conv":
        return ConvBNAct(c_in, c_out, 3, 2, act=act)
    if kind == "mp":
        return MPDown(c_in, c_out, act=act)
    if kind == "downc":
        block = MPDown(c_in, c_out, hidden=c_in, act=act)
        block.kind = "downc"
        return block
    if kind == "maxpool":
        if c_in != c_out:
            raise ConfigError(f"a maxpool down-sampler keeps the channels ({c_in}), it cannot give {c_out}")
        return nn.MaxPool2d(2, 2)
    raise ConfigError(f"unknown down-sampler {kind!r}; use conv, mp, downc or maxpool")
