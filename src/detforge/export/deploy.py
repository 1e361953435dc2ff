"""The one place where export turns a detector into the model it traces.

Every format (ONNX, TorchScript, OpenVINO via ONNX) traces the deployed model: a private copy,
in eval mode, fused, with training-only parts (auxiliary heads) removed, and without the
predictor's CPU-only rewrites (pre-packed oneDNN convs cannot be traced). The detector's own
`deploy(target="export")` knows how; a model without it (older code, a duck-typed module) gets
`fuse().eval()`.
"""

from __future__ import annotations

import copy
import inspect

import torch
from torch import nn

from detforge.errors import ExportError


def deployed_copy(model: nn.Module, source: str = "model") -> nn.Module:
    """A traced-ready copy of `model` on CPU float32; the caller's model is untouched.

    Raises `ExportError` when the copy still carries training-only parts or its eval output is
    not one `[B, N, 4 + C]` tensor (such a model would export its training graph).
    """
    model = copy.deepcopy(model).cpu().float()
    deploy = getattr(model, "deploy", None)
    if callable(deploy) and "target" in inspect.signature(deploy).parameters:
        model = deploy(target="export") or model
    else:
        fuse = getattr(model, "fuse", None)
        model = (fuse() if callable(fuse) else model) or model
    model = model.eval()
    if getattr(model, "aux", None) is not None:
        raise ExportError(
            f"{source}: the model still has auxiliary (training-only) heads after deploy(); export the deployed "
            "model: model.deploy(target='export'), or update the part that defines `aux` to drop it"
        )
    return model


def check_output(model: nn.Module, example: torch.Tensor, source: str = "model") -> torch.Tensor:
    """Run `model` once on `example` and insist on the inference contract `[B, N, 4 + num_classes]`."""
    with torch.no_grad():
        out = model(example)
    classes = getattr(model, "num_classes", None)
    if not isinstance(out, torch.Tensor) or out.ndim != 3 or (classes is not None and out.shape[-1] != 4 + classes):
        kind = type(out).__name__ if not isinstance(out, torch.Tensor) else f"shape {list(out.shape)}"
        raise ExportError(
            f"{source}: the deployed model returns {kind}, not [B, N, 4 + C] boxes and scores; "
            "only detectors in eval mode can be exported"
        )
    return out
