"""YOLOv7's loss for anchor-based heads, with its auxiliary head trained by coarse lead-guided labels.

Per level, over the positives the assigner picked (`YOLOv7Assigner`):
- box: mean of 1 − CIoU between the decoded prediction and its gt (in cell units);
- obj: BCE of every objectness logit of the level towards the positive's CIoU (clamped at 0;
  0 elsewhere), averaged over the whole map and weighted by the level's `balance`;
- cls: BCE of the positives' class logits towards the one-hot class, averaged (skipped for a
  single-class model, whose class score carries no information beyond obj).
The level sums are weighted by box/obj/cls gains and the total is multiplied by the batch size,
as the reference does. With `rescale`, the gains are those of the reference's recipe for 3
levels, 80 classes and 640 px: box × 3/L, cls × C/80 · 3/L, obj × (imgsz/640)² · 3/L.

Auxiliary head (paper §3.4, "coarse-to-fine lead-guided label assigner"): the lead head's
predictions guide both assignments — fine labels (3 positions) for the lead head, coarse labels
(5 positions) for the auxiliary head — and the auxiliary terms enter with `aux_weight`.
`upper_bound` adds the paper's restriction that the reference code leaves out: a coarse-only
positive (a cell that is not a fine positive) gets an objectness target no higher than the
lowest fine target of its gt, so the auxiliary head never learns to score a coarse cell above
the cells the lead head is taught to prefer. `lead_guided=False` matches the aux head with its
own predictions instead (the paper's "independent assigner" ablation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from detforge.assign.anchor_candidates import xyxy_to_cxcywh
from detforge.assign.targets import PaddedTargets, pad_targets
from detforge.assign.yolov7_ota import AnchorAssignment, YOLOv7Assigner, cxcywh_to_xyxy, decode_anchor_boxes
from detforge.errors import ConfigError, DataError
from detforge.ops.iou import aligned_iou
from detforge.registry import register_loss

if TYPE_CHECKING:
    from detforge.models.heads.anchor_base import AnchorHeadOutput

BALANCE = {3: (4.0, 1.0, 0.4), 4: (4.0, 1.0, 0.25, 0.06), 5: (4.0, 1.0, 0.25, 0.06, 0.02)}
REFERENCE_LEVELS, REFERENCE_CLASSES, REFERENCE_SIZE = 3, 80, 640


class HeadTerms(NamedTuple):
    """Unweighted loss sums of one head, and the objectness target of each positive `[P]`."""

    box: torch.Tensor
    obj: torch.Tensor
    cls: torch.Tensor
    obj_targets: torch.Tensor


@register_loss("yolov7")
class YOLOv7Loss(nn.Module):
    """Loss of an anchor-based head (`AnchorHeadOutput`), plus its auxiliary head when `out.aux` is set.

    model: the detector (accepted for the registry contract; the loss reads everything it needs
    from the head's output). assigner: a `YOLOv7Assigner` (default settings when None).
    box, obj, cls: gains. balance: per-level objectness weights (default: the reference's for the
    level count). rescale: scale the gains as the reference's recipe does; imgsz: the training
    size for that scaling (None: the size of each batch's input). aux_weight: weight of the
    auxiliary head's terms (0 ignores the aux head). lead_guided, upper_bound: see the module docstring.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        assigner: YOLOv7Assigner | None = None,
        box: float = 0.05,
        obj: float = 0.7,
        cls: float = 0.3,
        balance: Sequence[float] | None = None,
        rescale: bool = True,
        imgsz: int | None = None,
        aux_weight: float = 0.25,
        lead_guided: bool = True,
        upper_bound: bool = False,
    ):
        super().__init__()
        self.assigner = assigner if assigner is not None else YOLOv7Assigner()
        if not isinstance(self.assigner, YOLOv7Assigner):
            raise ConfigError(
                f"loss yolov7 needs the yolov7_ota assigner, got {type(self.assigner).__name__}; "
                "set assigner: {type: yolov7_ota} or remove the assigner key"
            )
        self.box, self.obj, self.cls = box, obj, cls
        self.balance = tuple(balance) if balance is not None else None
        self.rescale = rescale
        self.imgsz = imgsz
        self.aux_weight = aux_weight
        self.lead_guided = lead_guided
        self.upper_bound = upper_bound

    def forward(
        self, out: AnchorHeadOutput, boxes: torch.Tensor, cls: torch.Tensor, batch_idx: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of one batch.

        out: maps (per level `[B, A, H, W, 5 + C]` logits), anchors `[L, A, 2]` pixels, strides,
        aux (same fields, or None). boxes `[T, 4]` xyxy pixels, cls `[T]`, batch_idx `[T]`.
        Returns `(Σ gain·term) · B` and the gain-weighted terms {"box", "obj", "cls"}, detached.
        """
        with torch.autocast(out.maps[0].device.type, enabled=False):
            terms = self._terms(out, boxes, cls, batch_idx)
        total = sum(terms.values()) * out.maps[0].shape[0]
        return total, {name: value.detach() for name, value in terms.items()}

    def _terms(self, out, boxes, cls, batch_idx) -> dict[str, torch.Tensor]:
        maps = [m.float() for m in out.maps]
        strides = [int(s) for s in out.strides]
        num_classes = maps[0].shape[-1] - 5
        _check_classes(cls, num_classes)
        gts = pad_targets(boxes.float(), cls, batch_idx, maps[0].shape[0])
        aux = getattr(out, "aux", None)
        with_aux = aux is not None and self.aux_weight > 0
        a = self.assigner

        fine = a(maps, out.anchors, strides, *gts, topk=a.aux_topk if with_aux else a.topk)
        lead = self._head_terms(maps, out.anchors, strides, fine, gts)
        box, obj, cls_sum = lead.box, lead.obj, lead.cls
        if with_aux:
            aux_maps = [m.float() for m in aux.maps]
            guide = maps if self.lead_guided else aux_maps
            coarse = a(guide, out.anchors, strides, *gts, offset=a.coarse_offset, topk=a.aux_topk)
            cap = coarse_caps(fine, lead.obj_targets, coarse, maps, gts) if self.upper_bound else None
            extra = self._head_terms(aux_maps, aux.anchors, strides, coarse, gts, cap)
            box = box + self.aux_weight * extra.box
            obj = obj + self.aux_weight * extra.obj
            cls_sum = cls_sum + self.aux_weight * extra.cls
        gain_box, gain_obj, gain_cls = self.gains(len(maps), num_classes, self._imgsz(maps, strides))
        return {"box": gain_box * box, "obj": gain_obj * obj, "cls": gain_cls * cls_sum}

    def gains(self, num_levels: int, num_classes: int, imgsz: int) -> tuple[float, float, float]:
        """(box, obj, cls) gains, rescaled from the reference's 3 levels / 80 classes / 640 px when `rescale`."""
        if not self.rescale:
            return self.box, self.obj, self.cls
        levels = REFERENCE_LEVELS / num_levels
        return (
            self.box * levels,
            self.obj * (imgsz / REFERENCE_SIZE) ** 2 * levels,
            self.cls * num_classes / REFERENCE_CLASSES * levels,
        )

    def _imgsz(self, maps: list[torch.Tensor], strides: list[int]) -> int:
        if self.imgsz is not None:
            return self.imgsz
        return max(maps[0].shape[2], maps[0].shape[3]) * strides[0]

    def _balance(self, num_levels: int) -> tuple[float, ...]:
        balance = self.balance if self.balance is not None else BALANCE.get(num_levels)
        if balance is None or len(balance) != num_levels:
            raise ConfigError(
                f"loss.balance needs one objectness weight per level ({num_levels}), got {balance}; "
                "set loss.balance to a list of that length"
            )
        return balance

    def _head_terms(
        self,
        maps: list[torch.Tensor],
        anchors: torch.Tensor,
        strides: list[int],
        assigned: AnchorAssignment,
        gts: PaddedTargets,
        obj_cap: torch.Tensor | None = None,
    ) -> HeadTerms:
        """Loss sums of one head's maps for the given positives; `obj_cap [P]` bounds their obj targets."""
        balance = self._balance(len(maps))
        zero = maps[0].sum() * 0
        box, obj, cls = zero, zero, zero
        obj_targets = maps[0].new_zeros(assigned.level.shape)
        num_classes = maps[0].shape[-1] - 5
        for level, (pred_map, stride) in enumerate(zip(maps, strides)):
            at = assigned.level == level
            pos = assigned.at_level(level)
            target_obj = torch.zeros_like(pred_map[..., 4])
            if pos.level.numel():
                pred = pred_map[pos.image, pos.anchor, pos.cell_y, pos.cell_x]  # [P, 5 + C]
                anchor_cells = anchors[level].to(pred).float()[pos.anchor] / stride
                zeros = torch.zeros_like(pos.cell_x)
                pred_box = decode_anchor_boxes(pred, zeros, zeros, anchor_cells)  # relative to the cell
                gt_box = xyxy_to_cxcywh(gts.boxes[pos.image, pos.gt]) / stride
                gt_box = torch.cat((gt_box[:, :2] - torch.stack((pos.cell_x, pos.cell_y), 1), gt_box[:, 2:]), 1)
                ciou = aligned_iou(cxcywh_to_xyxy(pred_box), cxcywh_to_xyxy(gt_box), kind="ciou")
                box = box + (1.0 - ciou).mean()
                score = ciou.detach().clamp(min=0)
                if obj_cap is not None:
                    score = torch.minimum(score, obj_cap[at])
                obj_targets[at] = score
                target_obj[pos.image, pos.anchor, pos.cell_y, pos.cell_x] = score
                if num_classes > 1:
                    onehot = F.one_hot(gts.labels[pos.image, pos.gt], num_classes).to(pred.dtype)
                    cls = cls + F.binary_cross_entropy_with_logits(pred[:, 5:], onehot)
            obj = obj + F.binary_cross_entropy_with_logits(pred_map[..., 4], target_obj) * balance[level]
        return HeadTerms(box, obj, cls, obj_targets)


def coarse_caps(
    fine: AnchorAssignment,
    fine_targets: torch.Tensor,
    coarse: AnchorAssignment,
    maps: list[torch.Tensor],
    gts: PaddedTargets,
) -> torch.Tensor:
    """Upper bound `[P_coarse]` of each coarse positive's objectness target.

    A coarse positive that is also a fine positive keeps its own target (cap +inf); a coarse-only
    positive is capped at the lowest fine target of its gt (+inf when its gt has no fine positive).
    """
    fine_keys, coarse_keys = cell_keys(fine, maps), cell_keys(coarse, maps)
    num_gt = gts.mask.shape[1]
    lowest = fine_targets.new_full((gts.mask.numel(),), float("inf"))
    lowest.scatter_reduce_(0, fine.image * num_gt + fine.gt, fine_targets, "amin")
    cap = lowest[coarse.image * num_gt + coarse.gt]
    return torch.where(torch.isin(coarse_keys, fine_keys), torch.full_like(cap, float("inf")), cap)


def cell_keys(assigned: AnchorAssignment, maps: list[torch.Tensor]) -> torch.Tensor:
    """One int64 per prediction slot (level, image, anchor, y, x), unique across levels."""
    sizes = torch.tensor([m[..., 0].numel() for m in maps], device=assigned.level.device)
    start = torch.cumsum(sizes, 0) - sizes
    shape = torch.tensor([m.shape[1:4] for m in maps], device=assigned.level.device)  # [L, 3]: A, H, W
    anchors, height, width = (shape[assigned.level, i] for i in range(3))
    local = ((assigned.image * anchors + assigned.anchor) * height + assigned.cell_y) * width + assigned.cell_x
    return start[assigned.level] + local


def _check_classes(cls: torch.Tensor, num_classes: int) -> None:
    if cls.numel():
        low, high = (int(v) for v in torch.aminmax(cls.detach()))
        if low < 0 or high >= num_classes:
            raise DataError(
                f"a target has class id {low if low < 0 else high}, outside 0..{num_classes - 1}; "
                "check the dataset labels against the model's num_classes"
            )
