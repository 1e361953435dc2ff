"""Re-parameterizable 3×3 convolutions (RepVGG-style) and YOLOv7's planned re-parameterization rule.

In training a `RepConv` sums three branches — 3×3 conv+BN, 1×1 conv+BN and, when the shapes
allow it, an identity BN — so the block trains like a small multi-branch net; `fuse()` folds the
three into one 3×3 conv with bias, so inference pays for a single conv.

Planned re-parameterization (YOLOv7 §3.2.1): the identity branch destroys the benefit of a
residual or a concatenation the conv feeds (the block would carry the identity twice), so such a
conv must have no identity branch — `RepConvN`. `rep_conv()` applies that rule for the parts.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from detforge.errors import ConfigError
from detforge.models.layers import BN_EPS, BN_MOMENTUM, ConvBNAct, activation

ConvKind = Literal["conv", "repconv", "repconvn"]


def _branch_kernel_bias(branch: ConvBNAct) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a conv+BN branch as one conv, whether or not the branch is already fused."""
    conv = branch.conv
    if isinstance(branch.bn, nn.BatchNorm2d):
        bn = branch.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return conv.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels, device=conv.weight.device)
    return conv.weight, bias


class RepConv(nn.Module):
    """act(BN(conv3×3(x)) + BN(conv1×1(x)) + BN(x)); the identity BN exists only when
    `c_in == c_out` and `stride == 1` (and `identity=True`).

    Input `[B, c_in, H, W]` → `[B, c_out, H/stride, W/stride]`. `fuse()` → one 3×3 conv.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, groups: int = 1, act: bool | str = True,
                 identity: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = c_in, c_out, groups
        self.dense = ConvBNAct(c_in, c_out, 3, stride, groups, act=False)
        self.pointwise = ConvBNAct(c_in, c_out, 1, stride, groups, act=False)
        has_identity = identity and c_in == c_out and stride == 1
        self.identity = nn.BatchNorm2d(c_in, eps=BN_EPS, momentum=BN_MOMENTUM) if has_identity else None
        self.act = activation(act)
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        y = self.dense(x) + self.pointwise(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return self.act(y)

    @torch.no_grad()
    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single 3×3 (weight, bias) equal to the sum of the branches."""
        weight, bias = _branch_kernel_bias(self.dense)
        w1, b1 = _branch_kernel_bias(self.pointwise)
        weight = weight + F.pad(w1, [1, 1, 1, 1])
        bias = bias + b1
        if self.identity is not None:
            bn = self.identity
            per_group = self.in_channels // self.groups
            eye = torch.zeros_like(weight)
            idx = torch.arange(self.in_channels, device=weight.device)
            eye[idx, idx % per_group, 1, 1] = 1.0
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = weight + eye * scale.view(-1, 1, 1, 1)
            bias = bias + bn.bias - bn.running_mean * scale
        return weight, bias

    @torch.no_grad()
    def fuse(self) -> None:
        """Replace the branches by one 3×3 conv with bias (outputs unchanged up to float rounding)."""
        if self.fused is not None:
            return
        weight, bias = self.equivalent_kernel_bias()
        dense = self.dense.conv
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, dense.stride, dense.padding, groups=self.groups,
                         bias=True).to(weight.device, weight.dtype)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        self.fused = conv
        self.dense = self.pointwise = self.identity = None


class RepConvN(RepConv):
    """RepConv without the identity branch (3×3 + 1×1 only): the one planned re-parameterization
    allows where the conv feeds a residual or a concatenation."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, groups: int = 1, act: bool | str = True):
        super().__init__(c_in, c_out, stride, groups, act, identity=False)


def rep_conv(kind: ConvKind, c_in: int, c_out: int, stride: int = 1, groups: int = 1, act: bool | str = True,
             feeds: Literal["residual", "concat"] | None = None, where: str = "?",
             swap_identity: bool = False) -> nn.Module:
    """A 3×3 conv of the given kind, checked against the planned re-parameterization rule.

    `feeds` says whether the output goes into a residual add or a concatenation; there an
    identity branch is refused (ConfigError naming `where`) unless `swap_identity` turns the
    RepConv into a RepConvN.
    """
    if kind == "conv":
        return ConvBNAct(c_in, c_out, 3, stride, groups, act)
    if kind == "repconvn":
        return RepConvN(c_in, c_out, stride, groups, act)
    if kind != "repconv":
        raise ConfigError(f"{where}: unknown conv kind {kind!r}; use conv, repconv or repconvn")
    has_identity = c_in == c_out and stride == 1
    if has_identity and feeds is not None:
        if swap_identity:
            return RepConvN(c_in, c_out, stride, groups, act)
        raise ConfigError(
            f"{where}: a RepConv with an identity branch feeds a {feeds}; planned re-parameterization "
            f"(YOLOv7 §3.2.1) forbids it — use repconvn there, or set swap_identity: true to swap automatically"
        )
    return RepConv(c_in, c_out, stride, groups, act)
