"""Sliced inference: find small objects in large images by predicting overlapping tiles.

Scaling a 4000-pixel photo down to 640 shrinks a 20-pixel object to 3 pixels, below what the
detector can see. Cutting the photo into overlapping tiles of about the model's input size keeps
every object at its native size; the tiles' boxes are shifted back into the photo and merged
with NMS (an object on a seam is seen whole by the tile that overlaps it, and the partial box of
its neighbour is suppressed when it overlaps enough). The full-frame prediction is merged in too
(by default) so that objects larger than a tile are still found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import batched_nms


@dataclass(frozen=True)
class SliceSettings:
    """size: tile side in original pixels; overlap: fraction of `size` neighbouring tiles share;
    full_frame: also predict the whole image and merge its boxes in; merge_iou: NMS IoU for merging
    (None: the predictor's `iou`)."""

    size: int = 640
    overlap: float = 0.2
    full_frame: bool = True
    merge_iou: float | None = None

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ValueError(f"slice size {self.size} is too small; use at least 32 pixels")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"slice overlap {self.overlap} must be in [0, 1)")


def _starts(length: int, size: int, step: int) -> list[int]:
    """Tile offsets along one axis: every `step`, plus one flush with the far edge."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, step))
    return starts + [length - size]


def tile_windows(height: int, width: int, size: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Windows `(x1, y1, x2, y2)` of at most `size` pixels covering a `height x width` image.

    Neighbours overlap by at least `overlap * size` pixels; the last row and column are flush
    with the image's edges, so no window sticks out and every pixel is covered.
    """
    step = max(1, round(size * (1 - overlap)))
    return [
        (x, y, min(x + size, width), min(y + size, height))
        for y in _starts(height, size, step)
        for x in _starts(width, size, step)
    ]


def predict_sliced(
    detect: Callable[[list[np.ndarray]], list[torch.Tensor]],
    image: np.ndarray,
    settings: SliceSettings,
    batch: int,
    iou: float,
    max_det: int,
    agnostic: bool = False,
) -> torch.Tensor:
    """Detections `[K, 6]` (x1, y1, x2, y2, conf, class; image pixels) of one RGB `[H, W, 3]` image.

    detect: maps a list of images to their per-image `[K, 6]` detections in their own pixels
    (e.g. `Predictor.detect`); tiles are passed `batch` at a time. Merging is per class unless `agnostic`.
    """
    height, width = image.shape[:2]
    windows = tile_windows(height, width, settings.size, settings.overlap)
    found = []
    for i in range(0, len(windows), batch):
        group = windows[i:i + batch]
        crops = [image[y1:y2, x1:x2] for x1, y1, x2, y2 in group]
        for (x1, y1, _, _), det in zip(group, detect(crops)):
            shifted = det.clone()
            shifted[:, [0, 2]] += x1
            shifted[:, [1, 3]] += y1
            found.append(shifted)
    if settings.full_frame and len(windows) > 1:
        found += detect([image])
    merged = torch.cat(found) if found else torch.zeros((0, 6))
    merge_iou = settings.merge_iou if settings.merge_iou is not None else iou
    groups = torch.zeros(len(merged), dtype=torch.long) if agnostic else merged[:, 5].long()
    keep = batched_nms(merged[:, :4], merged[:, 4], groups, merge_iou)[:max_det]
    return merged[keep]
