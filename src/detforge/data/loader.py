"""`build_dataloader`: batches of uint8 images and flat box lists, the form the engine consumes.

    batch["img"]         uint8 [B, 3, H, W] RGB
    batch["boxes"]       float32 [M, 4] xyxy pixels of batch["img"]
    batch["cls"]         int64 [M]
    batch["batch_idx"]   int64 [M], which image of the batch each box belongs to
    batch["paths"]       list[str]
    batch["ori_shapes"]  list[(h, w)] of the files
    batch["ratio_pad"]   list[(ratio, (pad_w, pad_h))]: original = (box - pad) / ratio

Workers persist across epochs (their mosaic buffers stay warm); the epoch and the mosaic switch
reach them inside each sample key, so `set_epoch` and `close_mosaic` take effect at once.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Sampler, get_worker_info

from detforge.data.augment import FILL, AugmentConfig
from detforge.data.dataset import DetectionDataset, Sample, SampleKey
from detforge.data.preprocess import Preprocess
from detforge.data.scan import SplitLabels, load_split
from detforge.data.spec import DatasetSpec, load_dataset_spec
from detforge.errors import UnsafePathError

LOGGER = logging.getLogger(__name__)
SHOWN_PROBLEMS = 10


class KeySampler(Sampler[SampleKey]):
    """Indices for one epoch (shuffled by `seed + epoch`), each wrapped with the epoch and the
    dataset's current mosaic state. Iterating starts the next epoch unless `set_epoch` is used.

    Distributed: shuffled epochs use `DistributedSampler`; unshuffled ones give each rank one
    contiguous run, so rectangular validation batches keep images of similar shape together.
    """

    def __init__(self, dataset: DetectionDataset, shuffle: bool, seed: int, distributed: bool) -> None:
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.runs = 0
        self.inner = DistributedSampler(dataset, shuffle=True, seed=seed) if distributed and shuffle else None
        self.distributed = distributed

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self, epoch: int) -> list[int]:
        n = len(self.dataset)
        if self.inner is not None:
            self.inner.set_epoch(epoch)
            return list(self.inner)
        if self.distributed:
            rank, world = dist.get_rank(), dist.get_world_size()
            per = math.ceil(n / world)
            return list(range(rank * per, min(n, (rank + 1) * per)))
        if self.shuffle:
            return torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
        return list(range(n))

    def __iter__(self) -> Iterator[SampleKey]:
        epoch = self.epoch
        self.epoch += 1
        self.runs += 1
        mosaic = self.dataset.mosaic_on
        return iter([SampleKey(i, epoch, mosaic, self.runs) for i in self._indices(epoch)])

    def __len__(self) -> int:
        if self.inner is not None:
            return len(self.inner)
        if self.distributed:
            n, rank, world = len(self.dataset), dist.get_rank(), dist.get_world_size()
            per = math.ceil(n / world)
            return max(0, min(n, (rank + 1) * per) - rank * per)
        return len(self.dataset)


class DetectionLoader(DataLoader):
    """A DataLoader whose epochs are numbered: `set_epoch(e)` before iterating to resume at `e`."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        if self.num_workers == 0:
            return super().__iter__()
        with opencv_pool_stopped():  # worker processes are forked (if at all) inside
            return super().__iter__()


@contextmanager
def opencv_pool_stopped() -> Iterator[None]:
    """Fork worker processes with no OpenCV worker threads alive in this process, then give
    OpenCV its thread count back.

    OpenCV's thread pool does not survive fork(): a child inherits the pool's bookkeeping but
    not its threads, and can hang in its first parallel OpenCV call (e.g. after the parent
    synthesized or cached images). Setting 1 thread joins the pool's threads (0 would only stop
    using them); the children then run OpenCV sequentially (`seed_worker`), the loader's worker
    processes being the parallelism. Nothing changes for the caller's own OpenCV calls afterwards.
    """
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def collate(samples: list[Sample]) -> dict:
    """Stack samples into the batch dict (images of different sizes are padded bottom/right)."""
    height = max(s.image.shape[0] for s in samples)
    width = max(s.image.shape[1] for s in samples)
    images = _empty_batch((len(samples), 3, height, width))
    planes = images.numpy()
    for i, s in enumerate(samples):
        h, w = s.image.shape[:2]
        if (h, w) != (height, width):
            planes[i] = FILL
        cv2.split(s.image, [planes[i, 2, :h, :w], planes[i, 1, :h, :w], planes[i, 0, :h, :w]])  # BGR -> RGB
    counts = [len(s.classes) for s in samples]
    return {
        "img": images,
        "boxes": torch.from_numpy(np.concatenate([s.boxes for s in samples]).astype(np.float32, copy=False)),
        "cls": torch.from_numpy(np.concatenate([s.classes for s in samples]).astype(np.int64, copy=False)),
        "batch_idx": torch.from_numpy(np.repeat(np.arange(len(samples), dtype=np.int64), counts)),
        "paths": [s.path for s in samples],
        "ori_shapes": [s.ori_shape for s in samples],
        "ratio_pad": [s.ratio_pad for s in samples],
    }


def _empty_batch(shape: tuple[int, ...]) -> torch.Tensor:
    """In a worker, allocate straight in shared memory so sending the batch costs no copy."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    storage = torch.UntypedStorage._new_shared(math.prod(shape))
    return torch.tensor([], dtype=torch.uint8).set_(storage).view(shape)


def seed_worker(worker_id: int) -> None:
    """Seed the global generators of a worker (augmentation itself uses per-sample generators)
    and turn OpenCV's threading off there: the workers are the parallelism. (0, not 1: resizing
    a thread pool inherited through fork can deadlock; 0 only stops using it.)"""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    cv2.setNumThreads(0)


def build_dataloader(spec: DatasetSpec | str | Path, split: str = "train", imgsz: int = 640, batch_size: int = 16,
                     augment: bool = True, hyp: AugmentConfig | dict | None = None, workers: int = 2,
                     shuffle: bool = True, rect: bool = False, seed: int = 0, distributed: bool = False,
                     stride: int = 32, use_cache: bool = True, progress: bool = True,
                     preprocess: str | Preprocess | None = None) -> DetectionLoader:
    """A loader over `split` of `spec` (a DatasetSpec or a path `load_dataset_spec` accepts).

    Checks the split first (cached), logs its problem summary and writes the full list beside
    the cache; raises `DataError` if it has no usable images or labels with unknown class ids.
    `preprocess`: how letterboxed (validation) samples are decoded and sized (data/preprocess.py).
    `rect=True` (validation) orders images by aspect ratio and pads each batch minimally; it
    turns mosaic off. `distributed=True` shards batches across the initialised process group.
    """
    if not isinstance(spec, DatasetSpec):
        spec = load_dataset_spec(spec)
    hyp = AugmentConfig(**hyp) if isinstance(hyp, dict) else hyp or AugmentConfig()
    for line in spec.problems.head(SHOWN_PROBLEMS):
        LOGGER.warning("%s", line)
    labels = load_split(spec, split, use_cache=use_cache, progress=progress)
    _log_problems(labels)
    labels.require_trainable(spec)
    if rect and shuffle:
        LOGGER.warning("rect=True keeps images ordered by aspect ratio; shuffle is turned off")
        shuffle = False
    dataset = DetectionDataset(labels.store, imgsz=imgsz, augment=augment, hyp=hyp, rect=rect,
                               batch_size=batch_size, stride=stride, seed=seed, preprocess=preprocess)
    workers = max(0, min(workers, math.ceil(len(dataset) / batch_size)))
    return DetectionLoader(
        dataset,
        batch_size=batch_size,
        sampler=KeySampler(dataset, shuffle, seed, distributed),
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=workers > 0,
        prefetch_factor=(4 if augment else 2) if workers > 0 else None,
    )


def _log_problems(labels: SplitLabels) -> None:
    if not len(labels.problems):
        return
    LOGGER.warning("%s: %s", labels.split, labels.problems.summary())
    for line in labels.problems.head(SHOWN_PROBLEMS):
        LOGGER.warning("  %s", line)
    try:
        path = labels.problems.write(labels.problems_file())
        LOGGER.warning("  full list: %s", path)
    except (OSError, UnsafePathError) as err:
        LOGGER.warning("  could not write the full problem list (%s)", err)
