"""One record per image, and the array store a split's records live in.

A split keeps its labels as a handful of flat numpy arrays (not a list of Python objects) so
forked loader workers never touch per-object reference counts: their memory stays shared
with the parent and does not grow epoch over epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class LabeledImage:
    """One usable image and its boxes.

    `boxes` is float32 `[M, 4]` xyxy in pixels of the upright (EXIF-applied) image, with
    pixel edges as coordinates (a box covering the whole image is `[0, 0, width, height]`);
    `classes` is int64 `[M]`, indices into the dataset's names.
    """

    path: str
    width: int
    height: int
    boxes: np.ndarray
    classes: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)


class LabelStore:
    """The records of one split packed into flat arrays.

    Arrays: `paths` `[N]` str, `sizes` `[N, 2]` int64 (width, height), `offsets` `[N+1]` int64,
    `boxes` `[T, 4]` float32 and `classes` `[T]` int64, where image `i` owns rows
    `offsets[i]:offsets[i+1]` of `boxes`/`classes`.
    """

    ARRAYS = ("paths", "sizes", "offsets", "boxes", "classes")

    def __init__(self, paths: np.ndarray, sizes: np.ndarray, offsets: np.ndarray,
                 boxes: np.ndarray, classes: np.ndarray) -> None:
        self.paths = np.asarray(paths, dtype=np.str_)
        self.sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.classes = np.asarray(classes, dtype=np.int64)

    @classmethod
    def from_records(cls, records: Sequence[LabeledImage]) -> LabelStore:
        counts = [len(r.classes) for r in records]
        offsets = np.zeros(len(records) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(counts)
        boxes = np.concatenate([r.boxes for r in records]) if records else np.zeros((0, 4), np.float32)
        classes = np.concatenate([r.classes for r in records]) if records else np.zeros(0, np.int64)
        return cls(
            paths=np.array([r.path for r in records], dtype=np.str_),
            sizes=np.array([(r.width, r.height) for r in records], dtype=np.int64).reshape(-1, 2),
            offsets=offsets,
            boxes=boxes,
            classes=classes,
        )

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, i: int) -> str:
        return str(self.paths[i])

    def labels(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes `[M, 4]` (float32 xyxy pixels, a copy) and classes `[M]` of image `i`."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.boxes[a:b].copy(), self.classes[a:b].copy()

    def record(self, i: int) -> LabeledImage:
        boxes, classes = self.labels(i)
        w, h = self.sizes[i]
        return LabeledImage(self.path(i), int(w), int(h), boxes, classes)

    def __iter__(self) -> Iterator[LabeledImage]:
        return (self.record(i) for i in range(len(self)))

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.ARRAYS}


@dataclass
class RawLabels:
    """One image's annotation as a reader found it, before the image and boxes are checked.

    `boxes` is `[M, 4]` xyxy, in 0..1 of the image size when `normalized` (YOLO) and in
    pixels otherwise; `origins` names where each box came from (`labels/a.txt:3`) for the
    report; `declared_size` is the (width, height) the annotation states, if any.
    """

    image: str
    boxes: np.ndarray
    classes: np.ndarray
    normalized: bool = False
    origins: list[str] | None = None
    declared_size: tuple[int, int] | None = None


def __getattr__(name: str):
    """`ImageRecord` was this class' old name (it clashed with `detforge.eval.records.EvalImage`); kept for a while."""
    if name == "ImageRecord":
        import warnings

        warnings.warn("detforge.data.records.ImageRecord is now LabeledImage", DeprecationWarning, stacklevel=2)
        return LabeledImage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
