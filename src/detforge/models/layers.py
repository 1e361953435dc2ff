"""Small building blocks shared by backbones, necks and heads.

BatchNorm uses eps=1e-3, momentum=0.03: the YOLO recipe's values, kept so that imported
reference weights behave identically.
"""

from __future__ import annotations

import torch
from torch import nn

from detforge.errors import ConfigError

BN_EPS = 1e-3
BN_MOMENTUM = 0.03
ACTIVATIONS = ("silu", "leaky_relu", "relu", "identity")


def activation(act: bool | str) -> nn.Module:
    """`True`/"silu" → SiLU, `False`/"identity" → Identity, "leaky_relu" → LeakyReLU(0.1) (YOLOv7-tiny),
    "relu" → ReLU. Named so that a model config can choose its activation per model."""
    if act is True or act == "silu":
        return nn.SiLU()
    if act is False or act == "identity":
        return nn.Identity()
    if act == "leaky_relu":
        return nn.LeakyReLU(0.1)
    if act == "relu":
        return nn.ReLU()
    raise ConfigError(f"unknown activation {act!r}; use one of {', '.join(ACTIVATIONS)}")


class ConvBNAct(nn.Module):
    """Conv2d (no bias) → BatchNorm → activation (SiLU by default, see `activation`), 'same' padding.
    `fuse()` folds the BN into the conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: bool | str = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold BatchNorm statistics into the conv weight and a new bias; BN becomes Identity."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        fused = nn.Conv2d(
            self.conv.in_channels, self.conv.out_channels, self.conv.kernel_size, self.conv.stride,
            self.conv.padding, groups=self.conv.groups, bias=True,
        ).to(self.conv.weight.device)
        fused.weight.copy_(self.conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(self.bn.bias - self.bn.running_mean * scale)
        self.conv = fused
        self.bn = nn.Identity()


class Bottleneck(nn.Module):
    """Two 3×3 convs with an optional residual (only when channels match)."""

    def __init__(self, c_in: int, c_out: int, shortcut: bool = True, expansion: float = 1.0):
        super().__init__()
        hidden = int(c_out * expansion)
        self.conv1 = ConvBNAct(c_in, hidden, 3)
        self.conv2 = ConvBNAct(hidden, c_out, 3)
        self.residual = shortcut and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.residual else y


class C2f(nn.Module):
    """CSP block with two convolutions (YOLOv8): split, run n bottlenecks, concat every
    intermediate output, project. Keeping every intermediate gives the gradient many short paths."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = False, expansion: float = 0.5):
        super().__init__()
        self.hidden = int(c_out * expansion)
        self.stem = ConvBNAct(c_in, 2 * self.hidden, 1)
        self.blocks = nn.ModuleList(Bottleneck(self.hidden, self.hidden, shortcut) for _ in range(n))
        self.project = ConvBNAct((2 + n) * self.hidden, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.stem(x).chunk(2, dim=1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.project(torch.cat(parts, dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained max-pools (receptive fields k, 2k-1, 3k-2)
    concatenated with the input — the same result as parallel pools of those sizes, cheaper."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 5):
        super().__init__()
        hidden = c_in // 2
        self.reduce = ConvBNAct(c_in, hidden, 1)
        self.pool = nn.MaxPool2d(kernel, stride=1, padding=kernel // 2)
        self.project = ConvBNAct(hidden * 4, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.reduce(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.project(torch.cat(y, dim=1))
