"""Turn decoded head output into final detections: confidence filter, pre-NMS top-k,
torchvision batched (per-class) NMS, max-det, and mapping back to original image pixels."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms


def non_max_suppression(
    pred: torch.Tensor,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    pre_nms_topk: int = 30000,
    classes: list[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
) -> list[torch.Tensor]:
    """`pred [B, N, 4 + C]` (xyxy + class scores) → per image `[K, 6]` = x1, y1, x2, y2, score, class.

    multi_label: keep every (box, class) pair above `conf`, not only the best class of each box
    (what COCO evaluation at conf 0.001 expects). `pre_nms_topk` bounds the NMS input so that
    an untrained model with thousands of candidates stays fast.
    """
    boxes_all, scores_all = pred[..., :4], pred[..., 4:]
    if classes is not None:
        mask = torch.zeros(scores_all.shape[-1], dtype=torch.bool, device=pred.device)
        mask[torch.as_tensor(classes, device=pred.device)] = True
        scores_all = scores_all * mask
    results = []
    for boxes, scores in zip(boxes_all, scores_all):
        if multi_label:
            box_idx, cls = (scores > conf).nonzero(as_tuple=True)
            score = scores[box_idx, cls]
        else:
            score, cls = scores.max(dim=-1)
            box_idx = (score > conf).nonzero(as_tuple=True)[0]
            score, cls = score[box_idx], cls[box_idx]
        if score.numel() > pre_nms_topk:
            score, top = score.topk(pre_nms_topk)
            box_idx, cls = box_idx[top], cls[top]
        candidates = boxes[box_idx].float()
        keep = batched_nms(candidates, score.float(), torch.zeros_like(cls) if agnostic else cls, iou)[:max_det]
        results.append(torch.cat((candidates[keep], score[keep, None].float(), cls[keep, None].float()), dim=1))
    return results


def scale_boxes_to_original(
    boxes: torch.Tensor, ratio: float, pad: tuple[float, float], original_shape: tuple[int, int]
) -> torch.Tensor:
    """Undo letterboxing: `(box - pad) / ratio`, clipped to the original `(height, width)`."""
    out = boxes.clone()
    out[:, [0, 2]] = ((out[:, [0, 2]] - pad[0]) / ratio).clamp(0, original_shape[1])
    out[:, [1, 3]] = ((out[:, [1, 3]] - pad[1]) / ratio).clamp(0, original_shape[0])
    return out
