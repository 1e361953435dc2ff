"""Start training from existing weights: copy what fits, re-initialize what doesn't, freeze parts."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from detforge.models.detector import Detector

log = logging.getLogger(__name__)


def transfer_weights(model: Detector, source: Detector, path: str | Path) -> int:
    """Copy every tensor whose name and shape match; returns how many were copied.

    A head trained for another number of classes keeps its box branch and gets a fresh class
    branch — reported in one line, since it changes what the model can predict.
    """
    target = model.state_dict()
    matched = {k: v for k, v in source.state_dict().items() if k in target and target[k].shape == v.shape}
    model.load_state_dict(matched, strict=False)
    if source.num_classes != model.num_classes:
        log.info("%s: head re-initialized for %d classes (the weights were trained for %d)",
                 path, model.num_classes, source.num_classes)
    log.info("transferred %d/%d tensors from %s", len(matched), len(target), path)
    return len(matched)


def freeze(model: nn.Module, parts: str) -> None:
    """`backbone` or `backbone+neck`: stop gradients there (BN statistics still update)."""
    for name in parts.split("+") if parts != "none" else []:
        for p in getattr(model, name).parameters():
            p.requires_grad_(False)
