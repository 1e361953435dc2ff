"""Tiny detectors of every head kind with non-trivial weights, for the export tests."""

from __future__ import annotations

import torch

import detforge

HEAD_CONFIGS = {"decoupled": "yolov8", "coupled": "yolov8-coupled", "hybrid": "yolov8-hybrid", "obj": "yolov8-obj"}
NAMES = ["red", "green", "blue"]
IMGSZ = 64


def lively_model(kind: str, seed: int = 0) -> detforge.Detector:
    """A narrow yolov8n variant with random BatchNorm statistics (so fusing matters) and prediction
    convs scaled up so that scores and boxes vary from anchor to anchor (no ties for NMS to order)."""
    torch.manual_seed(seed)
    model = detforge.create_model(HEAD_CONFIGS[kind], scale="n", names=NAMES,
                                  overrides={"scales.n.width": 0.125})
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
        head = model.head
        last = ([b[-1] for b in head.branches] if hasattr(head, "branches")
                else [b[-1] for b in head.box_branches] + [b[-1] for b in head.cls_branches]
                + list(head.obj_preds or []))
        for conv in last:
            conv.weight.normal_(0, 0.5)
            conv.bias.normal_(0, 1.0)
    return model.eval()
