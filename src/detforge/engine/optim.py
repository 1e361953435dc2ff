"""Optimizer with three parameter groups: conv/linear weights (with weight decay), normalization
weights and all biases (without — decaying them only fights the normalization).

Per-branch learning rates (`lr_mult: {box, cls, obj, backbone}`): each of the three groups is split
further by branch, and a split group carries `lr_mult`, which the schedule (engine/lr.py) multiplies
into every lr it sets. Which branch a parameter belongs to is read from its name (`branch_of`).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from detforge.errors import ConfigError

log = logging.getLogger(__name__)
NORM_LAYERS = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm)


BRANCHES = ("box", "cls", "obj", "backbone")


def branch_of(name: str) -> str | None:
    """The lr_mult branch of a parameter by its name in the Detector: `backbone.*` → backbone; a head (or
    aux head) module named `box_*`, `cls_*` or `obj_*` (box_branches, cls_branches, obj_preds) → that
    branch. Everything else (neck, shared head convs, a coupled head's mixed convs) → None: lr as is."""
    parts = name.split(".")
    if parts[0] == "backbone":
        return "backbone"
    if parts[0] in ("head", "aux") and len(parts) > 1:
        for branch in ("box", "cls", "obj"):
            if parts[1].startswith(branch + "_"):
                return branch
    return None


def parameter_groups(model: nn.Module) -> tuple[list, list, list]:
    """(decayed weights, normalization weights, biases) among trainable parameters."""
    groups = branch_groups(model, by_branch=False)
    return groups[("decay", None)], groups[("norm", None)], groups[("bias", None)]


def branch_groups(model: nn.Module, by_branch: bool = True) -> dict[tuple[str, str | None], list]:
    """{(kind, branch): trainable parameters}; kind is decay (conv/linear weights), norm (normalization
    weights) or bias; branch is `branch_of` the parameter with `by_branch`, else None."""
    groups: dict[tuple[str, str | None], list] = {(kind, None): [] for kind in ("bias", "decay", "norm")}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            kind = "bias" if name == "bias" else "norm" if isinstance(module, NORM_LAYERS) else "decay"
            branch = branch_of(f"{module_name}.{name}") if by_branch else None
            groups.setdefault((kind, branch), []).append(param)
    return groups


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


def build_optimizer(model: nn.Module, name: str, lr0: float, momentum: float, weight_decay: float,
                    lr_mult: dict[str, float] | None = None) -> torch.optim.Optimizer:
    """Groups `bias`, `decay`, `norm` (lr0); with `lr_mult` ({box, cls, obj, backbone} → factor), a branch whose
    factor is not 1 gets its own groups `decay/box`, ... carrying `lr_mult` (the schedule applies it)."""
    mult = {k: float(v) for k, v in (lr_mult or {}).items() if float(v) != 1.0}
    unknown = set(mult) - set(BRANCHES)
    if unknown:
        raise ConfigError(f"lr_mult.{min(unknown)}: unknown branch; use {', '.join(BRANCHES)}")
    groups = branch_groups(model, by_branch=bool(mult))
    merged: dict[tuple[str, str | None], list] = {}
    for (kind, branch), params in groups.items():  # branches without a multiplier stay in the plain groups
        merged.setdefault((kind, branch if branch in mult else None), []).extend(params)
    bias = merged.pop(("bias", None))
    if name == "sgd":
        optimizer = torch.optim.SGD(bias, lr=lr0, momentum=momentum, nesterov=True)
    elif name == "adamw":
        optimizer = torch.optim.AdamW(bias, lr=lr0, betas=(momentum, 0.999), weight_decay=0.0)
    else:
        raise ConfigError(f"optimizer {name!r} is not supported; use sgd, adamw or auto")
    optimizer.param_groups[0]["name"] = "bias"
    for kind, branch in sorted(merged, key=lambda key: (key[1] is not None, key[1] or "", key[0])):
        params = merged[(kind, branch)]
        if branch is not None and not params:
            continue
        group = {"params": params, "weight_decay": weight_decay if kind == "decay" else 0.0,
                 "name": kind if branch is None else f"{kind}/{branch}"}
        if branch is not None:
            group["lr_mult"] = mult[branch]
        optimizer.add_param_group(group)
    log.debug("optimizer %s lr=%g: %s", name, lr0,
              ", ".join(f"{g['name']} {len(g['params'])}" for g in optimizer.param_groups))
    return optimizer
