"""Start training from existing weights: copy what fits, re-initialize what doesn't, freeze parts."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from detforge.models.detector import Detector

log = logging.getLogger(__name__)


MOSTLY_FRESH = 0.5  # below this share of the parameters transferred, fine-tuning is mostly training from scratch


def transfer_weights(model: Detector, source: Detector, path: str | Path) -> int:
    """Copy every tensor whose name and shape match; returns how many were copied.

    A head trained for another number of classes keeps its box branch and gets a fresh class
    branch — reported in one line, since it changes what the model can predict. The tensors
    left fresh are counted (absent from the weights, or of another shape), and a warning says
    so when most of the model's parameters are not transferred (weights of another scale or
    architecture: `--model yolov8s --weights yolov8n...`).
    """
    target = model.state_dict()
    offered = source.state_dict()
    matched = {k: v for k, v in offered.items() if k in target and target[k].shape == v.shape}
    absent = sum(k not in offered for k in target)
    reshaped = len(target) - len(matched) - absent
    model.load_state_dict(matched, strict=False)
    if source.num_classes != model.num_classes:
        log.info("%s: head re-initialized for %d classes (the weights were trained for %d)",
                 path, model.num_classes, source.num_classes)
    log.info("transferred %d/%d tensors from %s; %d skipped (%d not in the weights, %d of another shape)",
             len(matched), len(target), path, len(target) - len(matched), absent, reshaped)
    total = sum(v.numel() for v in target.values()) or 1
    share = sum(v.numel() for v in matched.values()) / total
    if share < MOSTLY_FRESH:
        log.warning("%s: only %.0f%% of the model's parameters (%d/%d tensors) come from these weights — they were "
                    "made for another architecture (%s, this model is %s); the rest trains from scratch. Use "
                    "weights of the same model, or --model %s to train the weights' own architecture",
                    path, 100 * share, len(matched), len(target), _name(source), _name(model), path)
    return len(matched)


def _name(model: Detector) -> str:
    config = getattr(model, "config", None)
    return getattr(config, "name", None) or type(model).__name__


def freeze(model: nn.Module, parts: str) -> None:
    """`backbone` or `backbone+neck`: stop gradients there (BN statistics still update)."""
    for name in parts.split("+") if parts != "none" else []:
        for p in getattr(model, name).parameters():
            p.requires_grad_(False)
