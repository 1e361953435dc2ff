"""Turn the loader's flat target list into per-image padded tensors the assigner can batch over.

The loader yields all boxes of a batch concatenated, each tagged with its image (`batch_idx`).
Padding every image to the largest box count lets the assigner run as a few `[B, M, N]`
tensor operations instead of a Python loop over images.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class PaddedTargets(NamedTuple):
    """Targets padded to M slots per image (M = largest box count in the batch, possibly 0).

    boxes: `[B, M, 4]` xyxy pixels (zeros in padding). labels: `[B, M]` int64. mask: `[B, M]` bool,
    False for padding. The field order is the assigner's argument order, so `*padded` passes it on.
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor


def pad_targets(
    boxes: torch.Tensor, cls: torch.Tensor, batch_idx: torch.Tensor, batch_size: int
) -> PaddedTargets:
    """Scatter flat targets into padded per-image slots, keeping their order within an image.

    boxes: `[T, 4]` xyxy pixels; cls: `[T]` class ids; batch_idx: `[T]` image of each box, any order.
    """
    device = boxes.device
    batch_idx, cls = batch_idx.reshape(-1).long(), cls.reshape(-1)  # also accept `[T, 1]` columns
    counts = torch.bincount(batch_idx, minlength=batch_size)
    max_count = int(counts.max()) if batch_idx.numel() else 0
    gt_boxes = boxes.new_zeros(batch_size, max_count, 4)
    gt_labels = torch.zeros(batch_size, max_count, dtype=torch.long, device=device)
    gt_mask = torch.zeros(batch_size, max_count, dtype=torch.bool, device=device)
    if max_count == 0:
        return PaddedTargets(gt_boxes, gt_labels, gt_mask)
    order = torch.argsort(batch_idx, stable=True)
    image = batch_idx[order]
    first_of_image = torch.cumsum(counts, 0) - counts  # index in `order` where each image starts
    slot = torch.arange(order.numel(), device=device) - first_of_image[image]
    gt_boxes[image, slot] = boxes[order]
    gt_labels[image, slot] = cls[order].long()
    gt_mask[image, slot] = True
    return PaddedTargets(gt_boxes, gt_labels, gt_mask)
