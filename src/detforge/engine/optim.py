"""Optimizer with three parameter groups: conv/linear weights (with weight decay), normalization
weights and all biases (without — decaying them only fights the normalization)."""

from __future__ import annotations

import logging

import torch
from torch import nn

from detforge.errors import ConfigError

log = logging.getLogger(__name__)
NORM_LAYERS = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm)


def parameter_groups(model: nn.Module) -> tuple[list, list, list]:
    """(decayed weights, normalization weights, biases) among trainable parameters."""
    decay, norm, bias = [], [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if name == "bias":
                bias.append(param)
            elif isinstance(module, NORM_LAYERS):
                norm.append(param)
            else:
                decay.append(param)
    return decay, norm, bias


def resolve_auto(name: str, lr0: float, momentum: float, warmup_bias_lr: float, num_classes: int,
                 iterations: int) -> tuple[str, float, float, float]:
    """`auto`: AdamW with a class-count-scaled lr for short runs, SGD for long ones (the YOLOv8 rule).

    Returns (optimizer, lr0, momentum, warmup_bias_lr); `auto` starts the bias warmup at zero, since
    Adam's per-parameter steps make a high bias lr jump the priors.
    """
    if name != "auto":
        return name, lr0, momentum, warmup_bias_lr
    if iterations > 10_000:
        return "sgd", 0.01, momentum, 0.0
    return "adamw", round(0.002 * 5 / (4 + num_classes), 6), 0.9, 0.0


def build_optimizer(model: nn.Module, name: str, lr0: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    decay, norm, bias = parameter_groups(model)
    if name == "sgd":
        optimizer = torch.optim.SGD(bias, lr=lr0, momentum=momentum, nesterov=True)
    elif name == "adamw":
        optimizer = torch.optim.AdamW(bias, lr=lr0, betas=(momentum, 0.999), weight_decay=0.0)
    else:
        raise ConfigError(f"optimizer {name!r} is not supported; use sgd, adamw or auto")
    optimizer.param_groups[0]["name"] = "bias"
    optimizer.add_param_group({"params": decay, "weight_decay": weight_decay, "name": "decay"})
    optimizer.add_param_group({"params": norm, "weight_decay": 0.0, "name": "norm"})
    log.debug("optimizer %s lr=%g: %d decayed weights, %d norm weights, %d biases",
              name, lr0, len(decay), len(norm), len(bias))
    return optimizer
