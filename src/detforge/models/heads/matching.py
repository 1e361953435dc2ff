"""Fair head comparisons: choose a head's branch widths so that its parameter count hits a target.

Head designs differ in size at their natural widths (on yolov8n with 80 classes: hybrid 1.39 M,
decoupled 0.90 M, coupled 0.40 M), so an ablation between them also compares capacity. With
`head.match_params: true` a head scales every width it owns (shared convs, box/class branches, a coupled
head's path) by one factor `width_mult`, found here by bisection on the parameter count, so that it lands
on the decoupled head's size on the same trunk (same input channels, classes and DFL bins); with
`head.target_params: N` on N instead. The count includes the whole head (prediction convs, DFL bins).

Counting builds the candidate heads on PyTorch's meta device: no memory, no initialisation cost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import nn

log = logging.getLogger(__name__)
TOLERANCE = 0.05  # what "matched" promises: within ±5% of the target
MAX_WIDTH_MULT = 16.0  # bounds what a config can make the builder allocate
MAX_TARGET = 10**10  # target_params is only a bisection target (the width stays ≤ MAX_WIDTH_MULT)
UNBOUNDED_ARGS = ("target_params",)  # exempt from the config's part-number bound (config.py)


def check_width_args(width_mult: float, target_params: int | None) -> None:
    if not 0 < width_mult <= MAX_WIDTH_MULT:
        raise ValueError(f"head.width_mult must be in (0, {MAX_WIDTH_MULT:g}] (got {width_mult})")
    if target_params is not None and not 0 < target_params <= MAX_TARGET:
        raise ValueError(f"head.target_params must be in 1..{MAX_TARGET:,} (got {target_params})")


def count_params(build: Callable[[], nn.Module]) -> int:
    """Parameters of the module `build()` returns, built on the meta device."""
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def scaled(width: int, mult: float) -> int:
    """A width times `mult`, rounded, at least 1."""
    return max(1, round(width * mult))


def fit_width_mult(count: Callable[[float], int], target: int, low: float = 1 / 64, high: float = MAX_WIDTH_MULT,
                   what: str = "head") -> float:
    """The factor whose parameter count `count(f)` is closest to `target` (bisection in log space; the count
    grows with f). Logs the result; warns when even the closest is outside ±5%."""
    tried: dict[float, int] = {}

    def at(f: float) -> int:
        if f not in tried:
            tried[f] = count(f)
        return tried[f]

    lo, hi = math.log(low), math.log(high)
    for _ in range(20):
        mid = (lo + hi) / 2
        if at(math.exp(mid)) < target:
            lo = mid
        else:
            hi = mid
    at(1.0)
    best = min(tried, key=lambda f: (abs(tried[f] - target), abs(math.log(f))))
    error = tried[best] / target - 1
    (log.warning if abs(error) > TOLERANCE else log.info)(
        "%s: width_mult %.3f gives %s parameters (target %s, %+.1f%%)", what, best, f"{tried[best]:,}",
        f"{target:,}", 100 * error)
    return best
