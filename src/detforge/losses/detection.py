"""The detection loss: assign targets with TAL, then CIoU + DFL for boxes and BCE for classes.

Terms and their normalisation follow YOLOv8 so its recipe (gains, learning rates) transfers:
every term is a sum over anchors divided by the total soft-target mass, and the weighted sum is
multiplied by the batch size. The loss only sees the head's `HeadOutput` (logits, anchor points,
strides), so any backbone/neck/head combination trains with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from detforge.assign.lead_guided import cap_coarse_scores, coarse_from
from detforge.assign.tal import Assignment, TaskAlignedAssigner
from detforge.assign.targets import PaddedTargets, pad_targets
from detforge.errors import ConfigError, DataError
from detforge.losses.dfl import dfl_loss
from detforge.ops.boxes import dfl_decode, distance_to_xyxy, xyxy_to_distance
from detforge.ops.iou import aligned_iou
from detforge.registry import register_loss

if TYPE_CHECKING:
    from detforge.models.heads.base import HeadOutput


@register_loss("yolov8")
class DetectionLoss(nn.Module):
    """Loss of a dense anchor-point detector (registered as loss `yolov8`).

    model: the (unwrapped) Detector being trained; num_classes and reg_max default to its head's,
    which is how the trainer builds it (`LOSSES.get(type)(model=..., assigner=..., **keys)`).
    num_classes, reg_max: must match the head; give them instead of `model` to use the loss alone.
    box, dfl, cls, obj: weight (gain) of each term in the total. class_weights: optional per-class
    factors on the classification BCE, e.g. larger for rare classes of an imbalanced dataset.
    assigner: defaults to `TaskAlignedAssigner()`.

    Auxiliary head (`out.aux`, a `HeadOutput` of the same form; see `assign/lead_guided.py`): its
    targets are coarse labels — TAL with `aux_topk` positives per gt among the anchors within
    `aux_margin` strides of the gt box — decided by the lead head's predictions (`lead_guided`;
    False: by the aux head's own), optionally with the coarse targets capped below the fine ones
    (`upper_bound`). Each aux term is added with `aux_weight`; 0 (or no aux output) is exactly the
    plain loss.

    Objectness (heads with an obj branch): BCE towards the IoU of the predicted box with its
    assigned gt on foreground anchors and 0 elsewhere, summed over all anchors and divided by the
    same target-score mass as the other terms (as YOLOX divides by the positive count), so obj
    learns at the pace of cls; a plain mean over ~10⁴ anchors would leave it nearly untrained.
    An IoU target, rather than the 0/1 foreground mask, makes obj·cls rank boxes by localisation
    quality, the same intent as the soft class targets.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        reg_max: int | None = None,
        box: float = 7.5,
        dfl: float = 1.5,
        cls: float = 0.5,
        obj: float = 1.0,
        class_weights: Sequence[float] | None = None,
        assigner: nn.Module | None = None,
        model: nn.Module | None = None,
        aux_weight: float = 0.25,
        aux_topk: int = 20,
        aux_margin: float = 1.0,
        lead_guided: bool = True,
        upper_bound: bool = False,
    ):
        super().__init__()
        head = getattr(model, "head", None)
        if num_classes is None:
            if head is None:
                raise ConfigError("DetectionLoss needs num_classes (or model=<Detector> to read it from the head)")
            num_classes = int(head.num_classes)
        if reg_max is None:
            reg_max = int(getattr(head, "reg_max", 16))
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.box_gain = box
        self.dfl_gain = dfl
        self.cls_gain = cls
        self.obj_gain = obj
        self.assigner = assigner if assigner is not None else TaskAlignedAssigner()
        self.aux_weight = aux_weight
        self.lead_guided = lead_guided
        self.upper_bound = upper_bound
        self.coarse_assigner = (
            coarse_from(self.assigner, aux_topk, aux_margin)
            if isinstance(self.assigner, TaskAlignedAssigner) else self.assigner
        )
        weights = None
        if class_weights is not None:
            weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
            if weights.numel() != num_classes:
                raise ConfigError(
                    f"class_weights has {weights.numel()} entries but the model has {num_classes} classes; "
                    "give exactly one weight per class"
                )
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(
        self, out: HeadOutput, boxes: torch.Tensor, cls: torch.Tensor, batch_idx: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of one batch.

        out: the head's training output (box `[B, N, 4*reg_max]`, cls `[B, N, C]`, obj `[B, N, 1]` or
        None, anchor_points `[N, 2]`, strides `[N]`). boxes `[T, 4]` xyxy pixels, cls `[T]`, batch_idx `[T]`:
        all targets of the batch. Returns the total to backpropagate, `(Σ gain·term) · B`, and the
        gain-weighted terms, detached: {"box", "dfl", "cls"} plus "obj" when the head has one.
        """
        with torch.autocast(out.cls.device.type, enabled=False):  # box geometry and BCE sums need fp32
            terms = self._terms(out, boxes, cls, batch_idx)
        total = sum(terms.values()) * out.cls.shape[0]
        return total, {name: value.detach() for name, value in terms.items()}

    def _terms(
        self, out: HeadOutput, boxes: torch.Tensor, cls: torch.Tensor, batch_idx: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        batch, _, num_classes = out.cls.shape
        if num_classes != self.num_classes or out.box.shape[-1] != 4 * self.reg_max:
            raise ValueError(
                f"head outputs {num_classes} classes and {out.box.shape[-1]} box channels, loss expects "
                f"{self.num_classes} and {4 * self.reg_max}"
            )
        if cls.numel():
            low, high = (int(v) for v in torch.aminmax(cls.detach()))
            if low < 0 or high >= num_classes:
                raise DataError(
                    f"a target has class id {low if low < 0 else high}, outside 0..{num_classes - 1}; "
                    "check the dataset labels against the model's num_classes"
                )
        gts = pad_targets(boxes.float(), cls, batch_idx, batch)
        target = self._assign(self.assigner, out, gts)
        terms = self._head_terms(out, target)
        aux = getattr(out, "aux", None)
        if aux is not None and self.aux_weight > 0:
            coarse = self._assign(self.coarse_assigner, out if self.lead_guided else aux, gts)
            if self.upper_bound:
                coarse = cap_coarse_scores(target, coarse, gts.mask.shape[1])
            for name, value in self._head_terms(aux, coarse).items():
                terms[name] = terms.get(name, 0.0) + self.aux_weight * value
        return terms

    def _assign(self, assigner: nn.Module, out: HeadOutput, gts: PaddedTargets) -> Assignment:
        """Targets for every anchor, decided by `out`'s predictions (the lead head's, for lead guidance)."""
        with torch.no_grad():  # the assigner sees every anchor; gradients flow only through positives
            anchors = out.anchor_points.float()
            pred_boxes = distance_to_xyxy(
                anchors, dfl_decode(out.box.float(), self.reg_max) * out.strides.float().unsqueeze(-1)
            )  # [B, N, 4]
            return assigner(out.cls.float().sigmoid(), pred_boxes, anchors, *gts, out.strides)

    def _head_terms(self, out: HeadOutput, target: Assignment) -> dict[str, torch.Tensor]:
        """Gain-weighted terms of one head's predictions against `target`."""
        box_logits = out.box.float()
        cls_logits = out.cls.float()
        anchors = out.anchor_points.float()
        strides = out.strides.float().unsqueeze(-1)  # [N, 1]
        score_sum = target.scores.sum().clamp(min=1)

        bce = F.binary_cross_entropy_with_logits(cls_logits, target.scores, reduction="none")  # [B, N, C]
        if self.class_weights is not None:
            bce = bce * self.class_weights
        loss_cls = bce.sum() / score_sum

        fg = target.fg_mask
        fg_anchor = fg.nonzero(as_tuple=True)[1]
        fg_logits, fg_target = box_logits[fg], target.boxes[fg]  # [K, 4*reg_max], [K, 4]
        fg_pred = distance_to_xyxy(
            anchors[fg_anchor], dfl_decode(fg_logits, self.reg_max) * strides[fg_anchor]
        )
        weight = target.scores.sum(-1)[fg]  # [K]: each positive counts by its soft target
        loss_box = ((1 - aligned_iou(fg_pred, fg_target, kind="ciou")) * weight).sum() / score_sum
        target_dist = xyxy_to_distance(anchors[fg_anchor], fg_target) / strides[fg_anchor]  # stride units
        loss_dfl = (dfl_loss(fg_logits, target_dist, self.reg_max) * weight).sum() / score_sum

        terms = {
            "box": self.box_gain * loss_box,
            "dfl": self.dfl_gain * loss_dfl,
            "cls": self.cls_gain * loss_cls,
        }
        if out.obj is not None:
            obj_logits = out.obj.float().squeeze(-1)  # [B, N]
            obj_target = torch.zeros_like(obj_logits)
            obj_target[fg] = aligned_iou(fg_pred.detach(), fg_target, kind="iou").clamp(0, 1)
            obj_bce = F.binary_cross_entropy_with_logits(obj_logits, obj_target, reduction="sum")
            terms["obj"] = self.obj_gain * obj_bce / score_sum
        return terms
