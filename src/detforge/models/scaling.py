"""Depth/width multipliers that turn one architecture into the n/s/m/l/x family."""

from __future__ import annotations

import math
from dataclasses import dataclass


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count up to a multiple of `divisor` (hardware-friendly widths)."""
    return int(math.ceil(value / divisor) * divisor)


@dataclass(frozen=True)
class Scaling:
    """Compound scaling of a model: block repeats × depth, channels × width capped at max_channels.

    Part configs are written for the unscaled (width 1.0, depth 1.0) model; parts call
    `channels()` / `repeats()` on every base value they receive.
    """

    depth: float = 1.0
    width: float = 1.0
    max_channels: int = 1024

    def channels(self, base: int) -> int:
        return make_divisible(min(base, self.max_channels) * self.width, 8)

    def repeats(self, base: int) -> int:
        return max(round(base * self.depth), 1) if base > 1 else base
