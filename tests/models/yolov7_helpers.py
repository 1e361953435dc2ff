"""Helpers shared by the YOLOv7 model tests."""

from __future__ import annotations

import torch
from torch import nn

from detforge.models.blocks import ImplicitA, ImplicitM


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and implicit vectors, so that fusing them is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        if isinstance(m, (ImplicitA, ImplicitM)):
            m.implicit.data.add_(torch.randn(m.implicit.shape, generator=g) * 0.2)
    return module
