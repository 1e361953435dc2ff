"""Turn raw annotations into clean records: check each image, then fix or drop each box.

What happens to bad input (each case is reported with its file):
- unreadable / truncated image: image skipped; EXIF rotation, gray/RGBA/16-bit/CMYK: fixed on load
- annotated size differs from the real one: the real size is used
- corners given the wrong way round: swapped back; box partly outside the image: clipped
- box with (near) zero area after clipping, class id not in the names, NaN/infinite corner: box dropped
- the same box twice: one copy kept
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from detforge.data.images import inspect_image
from detforge.data.problems import (
    DROPPED,
    DUPLICATE,
    FIXED,
    MALFORMED,
    OUTSIDE,
    SIZE_MISMATCH,
    SWAPPED,
    UNKNOWN_CLASS,
    ZERO_AREA,
    ProblemReport,
)
from detforge.data.records import LabeledImage, RawLabels
from detforge.progress import progress_bar

MIN_SIDE = 1e-3  # pixels; a box thinner than this after clipping counts as zero-area
OUTSIDE_TOLERANCE = 1e-2  # pixels; rounding noise in normalised labels is clipped without a report


def check_labels(raws: list[RawLabels], num_classes: int, report: ProblemReport, progress: bool = False,
                 desc: str = "checking images") -> list[LabeledImage]:
    """Check every image (in threads: decoding headers waits on disk) and fix its boxes."""
    image_reports = [ProblemReport(root=report.root) for _ in raws]
    with ThreadPoolExecutor(max_workers=8) as pool:
        infos = pool.map(lambda a: inspect_image(Path(a[0].image), a[1]), zip(raws, image_reports))
        infos = list(progress_bar(infos, total=len(raws), desc=desc, disable=not progress, leave=False))
    records = []
    for raw, info, image_report in zip(raws, infos, image_reports):
        report.extend(image_report)
        if info is None:
            continue
        if raw.declared_size is not None and tuple(raw.declared_size) != (info.width, info.height):
            report.add(raw.image, SIZE_MISMATCH, FIXED,
                       f"annotation says {raw.declared_size[0]}x{raw.declared_size[1]}, image is "
                       f"{info.width}x{info.height}; using the image's size")
        boxes, classes = fix_boxes(raw, info.width, info.height, num_classes, report)
        records.append(LabeledImage(raw.image, info.width, info.height, boxes, classes))
    return records


def fix_boxes(raw: RawLabels, width: int, height: int, num_classes: int,
              report: ProblemReport) -> tuple[np.ndarray, np.ndarray]:
    """Boxes `[M, 4]` float32 xyxy pixels and classes `[M]` int64 that are safe to train on."""
    boxes = np.array(raw.boxes, dtype=np.float64).reshape(-1, 4)
    classes = np.array(raw.classes, dtype=np.int64).reshape(-1)
    origins = raw.origins or [f"{raw.image}:box[{i}]" for i in range(len(boxes))]
    if raw.normalized:
        boxes = boxes * [width, height, width, height]
    keep = np.ones(len(boxes), dtype=bool)
    limits = np.array([width, height, width, height], dtype=np.float64)
    for i, box in enumerate(boxes):
        cls = int(classes[i])
        if not 0 <= cls < num_classes:
            report.add(origins[i], UNKNOWN_CLASS, DROPPED, f"class {cls} not in names (0..{num_classes - 1})")
            keep[i] = False
            continue
        if not np.isfinite(box).all():  # NaN compares false everywhere: it would pass every check below
            report.add(origins[i], MALFORMED, DROPPED, f"box {_fmt(box, raw.normalized, limits)} is not finite")
            keep[i] = False
            continue
        if box[0] > box[2] or box[1] > box[3]:
            report.add(origins[i], SWAPPED, FIXED, "min and max corners swapped; reordered")
            box[:] = [min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])]
        clipped = np.clip(box, 0, limits)
        visible = (clipped[2] - clipped[0]) >= MIN_SIDE and (clipped[3] - clipped[1]) >= MIN_SIDE
        if visible and np.abs(clipped - box).max() > OUTSIDE_TOLERANCE:
            report.add(origins[i], OUTSIDE, FIXED, f"box {_fmt(box, raw.normalized, limits)} "
                       f"reaches outside the {width}x{height} image; clipped")
        box[:] = clipped
        if box[2] - box[0] < MIN_SIDE or box[3] - box[1] < MIN_SIDE:
            report.add(origins[i], ZERO_AREA, DROPPED, f"box {_fmt(box, False, limits)} has no area inside the image")
            keep[i] = False
    boxes, classes, origins = boxes[keep], classes[keep], [o for o, k in zip(origins, keep) if k]
    if len(boxes) > 1:
        key = np.concatenate([classes[:, None].astype(np.float64), np.round(boxes, 2)], axis=1)
        _, first = np.unique(key, axis=0, return_index=True)
        if len(first) < len(boxes):
            unique = np.zeros(len(boxes), dtype=bool)
            unique[first] = True
            for i in np.flatnonzero(~unique):
                report.add(origins[i], DUPLICATE, DROPPED, "same class and box as another label of this image")
            boxes, classes = boxes[unique], classes[unique]
    return boxes.astype(np.float32), classes


def _fmt(box: np.ndarray, normalized: bool, limits: np.ndarray) -> str:
    values = box / limits if normalized else box
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]" + (" (normalised)" if normalized else "")


def __getattr__(name: str):
    """`validate` was this function's old name (it clashed with `detforge.engine.validate.run_validation`);
    kept for a while."""
    if name == "validate":
        import warnings

        warnings.warn("detforge.data.validate.validate is now check_labels", DeprecationWarning, stacklevel=2)
        return check_labels
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
