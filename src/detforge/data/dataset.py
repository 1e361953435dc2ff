"""The detection dataset: one split's records turned into augmented or letterboxed samples.

Randomness is drawn from a generator seeded by (seed, epoch, index). Mosaic partners come
from a small per-process buffer of recently decoded images (as in Ultralytics), so a sample
decodes about one image instead of four; the buffer is emptied when a new pass over the data
starts, so an epoch's samples depend only on the seed, the epoch and the worker count (a
resumed run repeats them exactly). Until the buffer holds two batches' worth of images, partners
come from the whole split, and the three partners of a mosaic are always distinct images other than
its own, so the first batches of a pass are as varied as the rest (a cold buffer of 3-4 images
would otherwise put the same photo in several tiles of one mosaic).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import NamedTuple

import cv2
import numpy as np
import torch

from detforge.data import augment as aug
from detforge.data.augment import AugmentConfig
from detforge.data.images import read_image
from detforge.data.preprocess import Preprocess, get_preprocess
from detforge.data.records import LabelStore

LOGGER = logging.getLogger(__name__)


class SampleKey(NamedTuple):
    """What the sampler hands the dataset: the index plus the epoch, the mosaic state and the
    pass it was drawn under (these travel with the index, so persistent workers see them)."""

    index: int
    epoch: int = 0
    mosaic: bool = True
    run: int = 0


class Sample(NamedTuple):
    """One image ready for collation: `image` uint8 BGR `[H, W, 3]`, `boxes` float32 `[M, 4]`
    xyxy pixels of `image`, `classes` int64 `[M]`, `ori_shape` (h, w) of the file and
    `ratio_pad` = (ratio, (pad_w, pad_h)) mapping boxes back: `(box - pad) / ratio`."""

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    path: str
    ori_shape: tuple[int, int]
    ratio_pad: tuple[float, tuple[float, float]]


class DetectionDataset(torch.utils.data.Dataset):
    """Samples of one split.

    Training (`augment=True`, `rect=False`): mosaic (prob. `hyp.mosaic`) or a letterboxed
    image, random affine, optional mixup, HSV jitter and flips, output `imgsz x imgsz`.
    Validation (`augment=False`): letterbox only; with `rect=True` images are ordered by aspect
    ratio and each batch gets the smallest stride-multiple shape that fits it. `preprocess` (a
    `Preprocess` or a preset name, data/preprocess.py) decides the decode, resized size and batch
    padding of these letterboxed samples; "reference" reproduces Ultralytics' validation input.
    """

    def __init__(self, store: LabelStore, imgsz: int = 640, augment: bool = False, hyp: AugmentConfig | None = None,
                 rect: bool = False, batch_size: int = 16, stride: int = 32, seed: int = 0,
                 preprocess: str | Preprocess | None = None) -> None:
        if imgsz % stride:
            rounded = math.ceil(imgsz / stride) * stride
            LOGGER.warning("imgsz %d is not a multiple of stride %d; using %d", imgsz, stride, rounded)
            imgsz = rounded
        self.store = store
        self.imgsz = imgsz
        self.augment = augment
        self.hyp = hyp or AugmentConfig()
        self.rect = rect
        self.batch_size = batch_size
        self.stride = stride
        self.seed = seed
        self.preprocess = get_preprocess(preprocess)
        self.mosaic_on = augment and not rect and self.hyp.mosaic > 0
        self.order = np.arange(len(store))
        self.batch_shapes = np.zeros((0, 2), dtype=np.int64)
        if rect:
            self._set_rect_shapes()
        self._buffer: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._buffer_size = min(len(store), max(batch_size * 8, 32), 1000) if augment else 0
        self._buffer_run = 0
        self._warm_size = min(self._buffer_size, 2 * batch_size)  # buffered images before partners come from it
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.store)

    def close_mosaic(self) -> None:
        """Switch mosaic and mixup off (the last `hyp.close_mosaic` epochs train on plain images)."""
        self.mosaic_on = False

    def _set_rect_shapes(self) -> None:
        """Sort by aspect ratio (h / w) and give each batch the smallest (h, w) multiple of stride
        that holds all of its images at `imgsz` on their long side."""
        sizes = self.store.sizes
        aspect = sizes[:, 1] / sizes[:, 0]
        self.order = np.argsort(aspect, kind="stable")
        aspect = aspect[self.order]
        shapes = []
        for start in range(0, len(aspect), self.batch_size):
            lo, hi = aspect[start:start + self.batch_size].min(), aspect[start:start + self.batch_size].max()
            rel = (hi, 1.0) if hi < 1 else (1.0, 1.0 / lo) if lo > 1 else (1.0, 1.0)
            shapes.append([self.preprocess.rect_side(r, self.imgsz, self.stride) for r in rel])
        self.batch_shapes = np.array(shapes, dtype=np.int64).reshape(-1, 2)

    def __getitem__(self, key: int | SampleKey) -> Sample:
        if not isinstance(key, SampleKey):
            key = SampleKey(int(key), 0, self.mosaic_on)
        position = key.index
        index = int(self.order[position])
        if not self.augment:
            return self._letterboxed(index, self._target_shape(position))
        if key.run != self._buffer_run:
            self._buffer.clear()
            self._buffer_run = key.run
        rng = np.random.default_rng((self.seed, key.epoch, index))
        hyp = self.hyp
        if self.rect:
            sample = self._letterboxed(index, self._target_shape(position))
            image, boxes = sample.image, sample.boxes
            classes, ratio_pad = sample.classes, sample.ratio_pad
        else:
            mosaic = key.mosaic and hyp.mosaic > 0
            image, boxes, classes = self._geometric(index, rng, mosaic)
            if mosaic and hyp.mixup > 0 and rng.random() < hyp.mixup:
                other, other_boxes, other_classes = self._geometric(int(rng.integers(len(self))), rng, mosaic)
                image = aug.mixup(image, other, rng)
                boxes, classes = np.concatenate([boxes, other_boxes]), np.concatenate([classes, other_classes])
            ratio_pad = (1.0, (0.0, 0.0))  # no way back through a random affine
        aug.augment_hsv(image, rng, hyp.hsv_h, hyp.hsv_s, hyp.hsv_v)
        if rng.random() < hyp.flipud:
            aug.flip(image, boxes, horizontal=False)
        if rng.random() < hyp.fliplr:
            aug.flip(image, boxes, horizontal=True)
        w0, h0 = self.store.sizes[index]
        return Sample(image, boxes, classes, self.store.path(index), (int(h0), int(w0)), ratio_pad)

    def _target_shape(self, position: int) -> tuple[int, int]:
        if self.rect:
            h, w = self.batch_shapes[position // self.batch_size]
            return int(h), int(w)
        return self.imgsz, self.imgsz

    def _geometric(self, index: int, rng: np.random.Generator, mosaic: bool
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mosaic (or one letterboxed image) through a random affine, `imgsz x imgsz`."""
        size = self.imgsz
        use_mosaic = mosaic and rng.random() < self.hyp.mosaic
        if use_mosaic:
            partners = self._mosaic_partners(index, rng)
            center = tuple(int(v) for v in rng.uniform(size / 2, 3 * size / 2, 2))
            tiles = aug.mosaic_tiles([self._load(i) for i in [index, *partners]], size, center)
            canvas = (2 * size, 2 * size)
        else:
            image, boxes, classes = self._load(index)
            h, w = image.shape[:2]
            tiles = [aug.Tile(image, boxes, classes, aug.translation((size - w) // 2, (size - h) // 2))]
            canvas = (size, size)
        matrix = aug.random_affine(rng, self.hyp, canvas, (size, size))
        return aug.render(tiles, matrix, (size, size))

    def _mosaic_partners(self, index: int, rng: np.random.Generator) -> list[int]:
        """Three distinct images other than `index` (fewer distinct only in a split of < 4 images)."""
        others = [i for i in self._buffer if i != index]
        if len(others) < min(self._warm_size, len(self) - 1):  # cold buffer: the whole split (fills the buffer)
            others = [i for i in range(len(self)) if i != index] or [index]
        picks = rng.choice(len(others), size=3, replace=len(others) < 3)
        return [int(others[i]) for i in picks]

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image resized so its long side is `imgsz`, with boxes and classes (copies, free to edit).
        Recently loaded images are kept per process for mosaic partners."""
        hit = self._buffer.get(index)
        if hit is not None:
            self._buffer.move_to_end(index)
            image, boxes, classes = hit
            return image, boxes.copy(), classes
        w0, h0 = (int(v) for v in self.store.sizes[index])
        ratio = self.imgsz / max(w0, h0)
        image, boxes, classes = self._decode(index, ratio, (max(1, round(h0 * ratio)), max(1, round(w0 * ratio))))
        if self._buffer_size:
            self._buffer[index] = (image, boxes, classes)
            if len(self._buffer) > self._buffer_size:
                self._buffer.popitem(last=False)
            return image, boxes.copy(), classes
        return image, boxes, classes

    def _decode(self, index: int, ratio: float, shape: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image of `shape` (h, w) with its boxes scaled to it; a file that fails to decode
        (damaged after the scan) becomes a gray image without boxes, with one warning."""
        path = self.store.path(index)
        w0, h0 = (int(v) for v in self.store.sizes[index])
        boxes, classes = self.store.labels(index)
        image = read_image(path, shrink=ratio if self.preprocess.reduced_decode else 1.0)
        if image is None:
            if path not in self._warned:
                self._warned.add(path)
                LOGGER.warning("%s could not be decoded; a gray image without boxes is used instead", path)
            return np.full((*shape, 3), aug.FILL, dtype=np.uint8), boxes[:0], classes[:0]
        if image.shape[:2] != shape:
            image = cv2.resize(image, shape[::-1], interpolation=cv2.INTER_LINEAR)
        h, w = shape
        boxes *= np.array([w / w0, h / h0, w / w0, h / h0], dtype=np.float32)
        return image, boxes, classes

    def _letterboxed(self, index: int, shape: tuple[int, int]) -> Sample:
        """Long side to `imgsz`, centred in `shape` (h, w) with gray padding."""
        w0, h0 = (int(v) for v in self.store.sizes[index])
        ratio = min(self.imgsz / max(w0, h0), shape[0] / h0, shape[1] / w0)
        image, boxes, classes = self._decode(index, ratio, self.preprocess.resized_shape(h0, w0, ratio, self.imgsz))
        out, _, (left, top) = aug.letterbox(image, shape, scaleup=False)
        boxes += np.array([left, top, left, top], dtype=np.float32)
        return Sample(out, boxes, classes, self.store.path(index), (h0, w0), (ratio, (float(left), float(top))))
