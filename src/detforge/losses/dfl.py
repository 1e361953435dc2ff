"""Distribution Focal Loss (Li et al. 2020, "Generalized Focal Loss").

Each box side is a softmax over `reg_max` bins; a real-valued target distance t lies between
bins ⌊t⌋ and ⌊t⌋+1, and the loss is the cross-entropy towards both, weighted by closeness. The
minimum puts all mass on those two bins with expectation exactly t, which is what `dfl_decode`
reads back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dfl_loss(logits: torch.Tensor, target: torch.Tensor, reg_max: int = 16) -> torch.Tensor:
    """Per-box DFL averaged over the four sides.

    logits: `[K, 4*reg_max]` box logits; target: `[K, 4]` (l, t, r, b) distances in stride units.
    Targets are clamped to [0, reg_max − 1.01] so the right bin always exists. Returns `[K]`.
    """
    target = target.clamp(0, reg_max - 1 - 0.01)
    left = target.long()
    weight_left = (left + 1) - target
    log_probs = F.log_softmax(logits.unflatten(-1, (4, reg_max)), dim=-1)  # [K, 4, reg_max]
    log_left = log_probs.gather(-1, left.unsqueeze(-1)).squeeze(-1)
    log_right = log_probs.gather(-1, (left + 1).unsqueeze(-1)).squeeze(-1)
    return -(log_left * weight_left + log_right * (1 - weight_left)).mean(-1)
