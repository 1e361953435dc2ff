"""Trainer policy: skip training steps whose loss is NaN/inf, and stop the run when that keeps happening.

A policy of the training loop rather than a loss: it works whatever loss the config picks.

One bad batch (an fp16 overflow, a degenerate label) should not poison the weights: the trainer
asks `check(loss)` before `backward()` and skips the step on False. A loss that stays non-finite
means training has diverged, and continuing would only burn time, so after `max_consecutive`
bad steps in a row the guard raises `TrainingDivergedError` with what to try.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import torch

from detforge.errors import TrainingDivergedError

logger = logging.getLogger(__name__)


class NonFiniteGuard:
    """Counts consecutive non-finite losses; `skipped` counts all skipped steps of the run."""

    def __init__(self, max_consecutive: int = 10):
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.skipped = 0

    def check(
        self, loss: torch.Tensor | float, items: Mapping[str, torch.Tensor | float] | None = None
    ) -> bool:
        """True when `loss` is finite (take the step); False to skip it, logging a warning.

        items: the per-term losses, used only to name the culprits in the log and the error.
        Raises TrainingDivergedError on the `max_consecutive`-th non-finite loss in a row.
        """
        value = float(loss.detach().float().sum()) if isinstance(loss, torch.Tensor) else float(loss)
        if math.isfinite(value):
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.skipped += 1
        bad = [name for name, term in (items or {}).items() if not math.isfinite(float(term))]
        culprits = f" (non-finite terms: {', '.join(bad)})" if bad else ""
        if self.consecutive >= self.max_consecutive:
            raise TrainingDivergedError(
                f"loss was {value} for {self.consecutive} steps in a row{culprits}; training diverged: "
                "lower lr0 or raise warmup_epochs, disable mixed precision or check the labels for degenerate boxes"
            )
        logger.warning(
            "non-finite loss %s%s: step skipped (%d in a row, stop at %d)",
            value,
            culprits,
            self.consecutive,
            self.max_consecutive,
        )
        return False
