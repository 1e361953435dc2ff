"""Learning-rate and momentum schedule: per-iteration warmup, then per-epoch linear or cosine
decay from lr0 to lr0 * lrf.

During warmup the bias group starts high (warmup_bias_lr) and falls to its scheduled value
while the others rise from 0, and momentum rises from warmup_momentum to momentum: large
early bias steps let the box/class priors adapt before the weights move.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def decay_factor(epoch: int, epochs: int, lrf: float, cosine: bool) -> float:
    """Multiplier of lr0 for this epoch: 1 at epoch 0, lrf at the last epoch."""
    progress = epoch / max(epochs - 1, 1)
    if cosine:
        return ((1 - math.cos(progress * math.pi)) / 2) * (lrf - 1) + 1
    return (1 - progress) * (1.0 - lrf) + lrf


class WarmupSchedule:
    """Sets each param group's lr (and SGD momentum / Adam beta1) for a given iteration."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr0: float, epochs: int, lrf: float, cosine: bool,
                 warmup_iters: int, warmup_bias_lr: float, warmup_momentum: float, momentum: float):
        self.optimizer = optimizer
        self.lr0, self.epochs, self.lrf, self.cosine = lr0, epochs, lrf, cosine
        self.warmup_iters = warmup_iters
        self.warmup_bias_lr, self.warmup_momentum, self.momentum = warmup_bias_lr, warmup_momentum, momentum

    def step(self, epoch: int, iteration: int) -> None:
        """`iteration` counts batches from the start of training (across epochs)."""
        scheduled = self.lr0 * decay_factor(epoch, self.epochs, self.lrf, self.cosine)
        warm = iteration < self.warmup_iters
        points = [0, self.warmup_iters]
        for group in self.optimizer.param_groups:
            lr = scheduled
            if warm:
                start = self.warmup_bias_lr if group.get("name") == "bias" else 0.0
                lr = float(np.interp(iteration, points, [start, scheduled]))
            group["lr"] = lr * group.get("lr_mult", 1.0)  # per-branch multiplier (engine/optim.py)
            momentum = float(np.interp(iteration, points, [self.warmup_momentum, self.momentum])) if warm \
                else self.momentum
            if "momentum" in group:
                group["momentum"] = momentum
            elif "betas" in group:
                group["betas"] = (momentum, group["betas"][1])
