"""YOLOX's objectness loss for anchor-point heads with an objectness branch (registered as `yolox_obj`).

What makes it YOLOX's rather than the `yolov8` loss's IoU-target objectness:
- target: binary foreground (1 on every assigned anchor, 0 elsewhere), not the predicted box's IoU;
- normalisation: the BCE summed over all anchors is divided by the number of positives (YOLOX's
  `num_fg`), not by the soft-target mass the other terms use;
- the assigner ranks anchors by the score inference uses, σ(cls)·σ(obj) (`DetectionHead.decode`),
  so training positives are chosen by the same quantity NMS later sorts by;
- its own gain `obj`, default 0.5. Source of the default: YOLOX (`yolox/models/yolo_head.py`, v0.3)
  weighs objectness and classification equally (both gain 1, IoU loss 5, all divided by `num_fg`); we
  keep that obj : cls = 1 : 1 ratio on top of the YOLOv8 recipe this loss inherits (box 7.5, cls 0.5,
  dfl 1.5), hence box : obj : cls = 7.5 : 0.5 : 0.5.

Box (CIoU + DFL) and class terms are the `yolov8` loss's unchanged, so a head comparison differs only
in the head (and, for the objectness variant, in this term).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from detforge.assign.tal import Assignment
from detforge.assign.targets import PaddedTargets
from detforge.losses.detection import DetectionLoss
from detforge.ops.boxes import dfl_decode, distance_to_xyxy
from detforge.registry import register_loss

if TYPE_CHECKING:
    from detforge.models.heads.base import HeadOutput

YOLOX_OBJ_GAIN = 0.5  # = the cls gain: YOLOX's obj : cls = 1 : 1 (see the module docstring)


@register_loss("yolox_obj")
class ObjectnessLoss(DetectionLoss):
    """The `yolov8` loss with YOLOX's objectness term (module docstring). Arguments as `DetectionLoss`;
    `obj` is the objectness gain (default 0.5). A head without an objectness branch trains exactly as
    with the `yolov8` loss."""

    def __init__(
        self,
        num_classes: int | None = None,
        reg_max: int | None = None,
        box: float = 7.5,
        dfl: float = 1.5,
        cls: float = 0.5,
        obj: float = YOLOX_OBJ_GAIN,
        class_weights: Sequence[float] | None = None,
        assigner: nn.Module | None = None,
        model: nn.Module | None = None,
        aux_weight: float = 0.25,
        aux_topk: int = 20,
        aux_margin: float = 1.0,
        lead_guided: bool = True,
        upper_bound: bool = False,
    ):
        super().__init__(num_classes, reg_max, box, dfl, cls, obj, class_weights, assigner, model, aux_weight,
                         aux_topk, aux_margin, lead_guided, upper_bound)

    def _assign(self, assigner: nn.Module, out: HeadOutput, gts: PaddedTargets) -> Assignment:
        """As the base, but the assigner's scores are σ(cls)·σ(obj): the inference score."""
        if out.obj is None:
            return super()._assign(assigner, out, gts)
        with torch.no_grad():
            anchors = out.anchor_points.float()
            pred_boxes = distance_to_xyxy(
                anchors, dfl_decode(out.box.float(), self.reg_max) * out.strides.float().unsqueeze(-1)
            )
            scores = out.cls.float().sigmoid() * out.obj.float().sigmoid()
            return assigner(scores, pred_boxes, anchors, *gts, out.strides)

    def _head_terms(self, out: HeadOutput, target: Assignment) -> dict[str, torch.Tensor]:
        terms = super()._head_terms(replace(out, obj=None), target)
        if out.obj is not None:
            logits = out.obj.float().squeeze(-1)  # [B, N]
            fg = target.fg_mask.float()
            bce = F.binary_cross_entropy_with_logits(logits, fg, reduction="sum")
            terms["obj"] = self.obj_gain * bce / fg.sum().clamp(min=1)
        return terms
