"""Per-image evaluation records: user predictions and ground truths checked and paired up.

`evaluate` accepts loose input (dicts of lists, numpy arrays or CPU tensors, images with no
prediction entry at all); this module turns it into one `EvalImage` per ground-truth image with
float64 / int64 arrays, so every metric below works on one clean, validated shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from detforge.errors import DataError


@dataclass(frozen=True)
class EvalImage:
    """Ground truth and predictions of one image, boxes in pixels xyxy.

    gt_boxes [M, 4], gt_classes [M]; boxes [K, 4], scores [K], classes [K].
    """

    image_id: Any
    width: int
    height: int
    gt_boxes: np.ndarray
    gt_classes: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def _field(entry: Mapping, key: str, where: str) -> Any:
    if key not in entry:
        raise DataError(f"{where} has no '{key}' key; give every entry {key!r} (see detforge.eval.evaluate)")
    return entry[key]


def _boxes(value: Any, where: str) -> np.ndarray:
    boxes = np.asarray(value, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"{where}: boxes have shape {boxes.shape}; expected [N, 4] xyxy pixels")
    return boxes


def _vector(value: Any, n: int, dtype: type, name: str, where: str) -> np.ndarray:
    vec = np.asarray(value, dtype=dtype).reshape(-1)
    if len(vec) != n:
        raise DataError(f"{where}: {n} boxes but {len(vec)} {name}; give one {name[:-1]} per box")
    return vec


def _classes(value: Any, n: int, num_classes: int, where: str) -> np.ndarray:
    classes = _vector(value, n, np.int64, "classes", where)
    bad = classes[(classes < 0) | (classes >= num_classes)]
    if len(bad):
        raise DataError(f"{where}: class id {int(bad[0])} is outside 0..{num_classes - 1}; check `names`")
    return classes


def build_records(
    predictions: Iterable[Mapping], ground_truths: Iterable[Mapping], num_classes: int
) -> list[EvalImage]:
    """Pair predictions with ground truths by `image_id`, in ground-truth order.

    An image without a prediction entry counts as "nothing detected"; a prediction for an image
    missing from the ground truth is an error, since COCO would silently drop it.
    """
    preds: dict[Any, Mapping] = {}
    for entry in predictions:
        image_id = _field(entry, "image_id", "a prediction entry")
        if image_id in preds:
            raise DataError(f"two prediction entries for image_id {image_id!r}; merge them into one")
        preds[image_id] = entry

    records: list[EvalImage] = []
    seen: set = set()
    for gt in ground_truths:
        image_id = _field(gt, "image_id", "a ground-truth entry")
        where = f"ground truth of image_id {image_id!r}"
        if image_id in seen:
            raise DataError(f"{where} appears twice; give each image once")
        seen.add(image_id)
        gt_boxes = _boxes(_field(gt, "boxes", where), where)
        gt_classes = _classes(_field(gt, "classes", where), len(gt_boxes), num_classes, where)
        width, height = int(_field(gt, "width", where)), int(_field(gt, "height", where))

        pred = preds.pop(image_id, None)
        pwhere = f"prediction for image_id {image_id!r}"
        if pred is None:
            boxes, scores, classes = np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
        else:
            boxes = _boxes(_field(pred, "boxes", pwhere), pwhere)
            scores = _vector(_field(pred, "scores", pwhere), len(boxes), np.float64, "scores", pwhere)
            classes = _classes(_field(pred, "classes", pwhere), len(boxes), num_classes, pwhere)
        records.append(EvalImage(image_id, width, height, gt_boxes, gt_classes, boxes, scores, classes))

    if preds:
        orphan = next(iter(preds))
        raise DataError(f"prediction for image_id {orphan!r} has no ground truth; evaluate on the same image set")
    return records


def __getattr__(name: str):
    """`ImageRecord` was this class' old name (it clashed with `detforge.data.records.LabeledImage`);
    kept for a while."""
    if name == "ImageRecord":
        import warnings

        warnings.warn("detforge.eval.records.ImageRecord is now EvalImage", DeprecationWarning, stacklevel=2)
        return EvalImage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
