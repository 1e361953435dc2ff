"""`Predictor`: images, folders, globs and videos in, one `Results` per frame out.

The pipeline per batch: decode (on a prefetch thread) → letterbox every frame into one
shared rectangle (the smallest multiple of the stride that holds each frame scaled to `imgsz`)
→ model → NMS → boxes mapped back to the original pixels. The model is a private copy made for
speed by its `deploy()` (see `detforge.models.deploy`: BatchNorm folded, training-only parts
dropped, channels-last memory, in-place activations, oneDNN-packed convs on CPU) and run under
`torch.inference_mode`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detforge.data.augment import letterbox
from detforge.device import half_dtype, select_device
from detforge.infer.outputs import ResultWriter
from detforge.infer.postprocess import non_max_suppression, scale_boxes_to_original
from detforge.infer.results import Results
from detforge.infer.sliced import SliceSettings, predict_sliced
from detforge.infer.sources import Frame, SourceLike, open_source, prefetch
from detforge.io.convert import load_detector
from detforge.models.deploy import deploy_model
from detforge.models.detector import Detector, max_stride
from detforge.models.provenance import default_imgsz
from detforge.runs import next_run_dir

logger = logging.getLogger(__name__)


class Predictor:
    """Run a detector over any source.

    model: a `Detector` (it is copied before fusing, so the caller's model is untouched) or a
        weights path. imgsz: longest side the frames are scaled to (rounded up to the stride); by
        default the size the model was trained at (from its weights' metadata), else 640.
    conf / iou / max_det / classes / agnostic: NMS filters (see `non_max_suppression`).
    batch: frames per forward pass. slice: tile large frames (see `detforge.infer.sliced`).
    half: half precision (see `detforge.device.half_dtype`): float16 on CUDA, bfloat16 on a CPU that
        computes it natively; boxes move by about a pixel at 640 px and scores by about 0.01 (docs/predict.md).
    """

    def __init__(self, model: Detector | str | Path, imgsz: int | None = None, conf: float = 0.25, iou: float = 0.7,
                 max_det: int = 300, classes: Sequence[int] | None = None, agnostic: bool = False,
                 batch: int = 1, device: str | torch.device = "cpu", half: bool = False, fuse: bool = True,
                 slice: SliceSettings | None = None, workers: int = 1):
        model = model if isinstance(model, nn.Module) else load_detector(model)
        self.device = select_device(device)
        self.names = list(model.names)
        self.stride = max_stride(model)
        imgsz = default_imgsz(model, imgsz)
        self.imgsz = math.ceil(imgsz / self.stride) * self.stride
        if self.imgsz != imgsz:
            logger.warning("imgsz %d is not a multiple of the stride %d; using %d", imgsz, self.stride, self.imgsz)
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.classes = list(classes) if classes is not None else None
        self.agnostic = agnostic
        self.batch = max(1, int(batch))
        self.slice = slice
        self.workers = workers
        self.dtype = half_dtype(self.device) if half else torch.float32
        self.model = copy.deepcopy(model)
        if fuse and callable(getattr(self.model, "deploy", None)):
            self.model.deploy(device=self.device, dtype=self.dtype)
        else:  # a model of its own kind (or fuse=False): the same rewrites, duck-typed
            deploy_model(self.model, device=self.device, dtype=self.dtype, fuse=fuse)

    def __call__(self, source: SourceLike, stream: bool = False) -> list[Results] | Iterator[Results]:
        return self.predict(source, stream)

    def predict(self, source: SourceLike, stream: bool = False, save_dir: str | Path | None = None,
                save_images: bool = True, save_txt: bool = False, save_conf: bool = False, save_json: bool = False,
                line_width: int | None = None, save: bool = False) -> list[Results] | Iterator[Results]:
        """Predict every frame of `source`; `stream=True` returns a generator that holds one batch at a
        time (use it on videos and large folders), otherwise a list of all results.

        With `save_dir`, results are also saved there as they come (see `ResultWriter`): annotated
        images and videos (`save_images`), YOLO labels (`save_txt`, `save_conf` adds the confidence),
        one JSON per image (`save_json`) and `summary.json` — the files `detforge predict` writes.
        `save=True` without `save_dir` saves to a new `runs/predict/exp*` folder, as the command does.
        """
        frames = open_source(source)
        results = self.stream(frames)
        if save and save_dir is None:
            save_dir = next_run_dir("runs/predict", "exp")
            logger.info("saving results to %s", save_dir)
        if save_dir is not None:
            writer = ResultWriter(save_dir, save_images=save_images, save_txt=save_txt, save_conf=save_conf,
                                  save_json=save_json, line_width=line_width)
            results = writer.write_all(results)
        return results if stream else list(results)

    def stream(self, frames) -> Iterator[Results]:
        """Yield a `Results` per frame of an iterable of `Frame`s, `batch` frames per forward pass."""
        iterator = prefetch(frames, depth=2 * self.batch) if self.workers > 0 else iter(frames)
        try:
            while chunk := list(islice(iterator, self.batch)):
                yield from self._predict_frames(chunk)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def _predict_frames(self, frames: list[Frame]) -> list[Results]:
        start = time.perf_counter()
        if self.slice is not None:
            detections = [predict_sliced(self.detect, frame.image, self.slice, self.batch, self.iou,
                                         self.max_det, self.agnostic)
                          for frame in frames]
            speed = {"total": (time.perf_counter() - start) * 1000 / len(frames)}
        else:
            detections, speed = self._detect_timed([frame.image for frame in frames])
        return [Results(frame.image, frame.path, self.names, det, frame.frame, speed)
                for frame, det in zip(frames, detections)]

    def detect(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        """RGB `[H, W, 3]` uint8 images → per image `[K, 6]` (x1, y1, x2, y2, conf, class) in its own pixels, on CPU."""
        return self._detect_timed(images)[0]

    def _detect_timed(self, images: list[np.ndarray]) -> tuple[list[torch.Tensor], dict[str, float]]:
        t0 = time.perf_counter()
        batch, placements = letterbox_batch(images, self.imgsz, self.stride)
        with torch.inference_mode():
            x = batch.to(self.device, non_blocking=True).to(self.dtype).div_(255)
            t1 = time.perf_counter()
            output = self.model(x)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            t2 = time.perf_counter()
            detections = non_max_suppression(output.float(), self.conf, self.iou, self.max_det,
                                              classes=self.classes, agnostic=self.agnostic)
        out = []
        for det, image, (ratio, pad) in zip(detections, images, placements):
            det = det.cpu().clone()  # a normal tensor (inference tensors refuse in-place edits later)
            det[:, :4] = scale_boxes_to_original(det[:, :4], ratio, pad, image.shape[:2])
            out.append(det)
        t3 = time.perf_counter()
        n = len(images)
        speed = {"preprocess": (t1 - t0) * 1000 / n, "inference": (t2 - t1) * 1000 / n,
                 "postprocess": (t3 - t2) * 1000 / n}
        return out, speed


SAVE_SETTINGS = ("save_dir", "save_images", "save_txt", "save_conf", "save_json", "line_width", "save")


def predict(model: Detector | str | Path, source: SourceLike, stream: bool = False, **settings
            ) -> list[Results] | Iterator[Results]:
    """One-call prediction: `Predictor(model, **settings).predict(source, stream, **save)`, where the
    save settings (`save_dir`, `save_images`, `save_txt`, `save_conf`, `save_json`, `line_width`) go to
    `Predictor.predict` and the rest to `Predictor`."""
    save = {key: settings.pop(key) for key in SAVE_SETTINGS if key in settings}
    return Predictor(model, **settings).predict(source, stream, **save)


def batch_shape(shapes: Sequence[tuple[int, int]], imgsz: int, stride: int) -> tuple[int, int]:
    """Smallest `(height, width)`, multiples of `stride`, that holds every `(h, w)` scaled so its long side
    is `imgsz`."""
    height = width = stride
    for h, w in shapes:
        ratio = imgsz / max(h, w)
        height = max(height, math.ceil(max(1, round(h * ratio)) / stride) * stride)
        width = max(width, math.ceil(max(1, round(w * ratio)) / stride) * stride)
    return height, width


def letterbox_batch(images: Sequence[np.ndarray], imgsz: int, stride: int
                    ) -> tuple[torch.Tensor, list[tuple[float, tuple[int, int]]]]:
    """Letterbox RGB `[H, W, 3]` uint8 images into one uint8 batch `[B, 3, h, w]` (channels-last memory).

    Returns the batch and, per image, `(ratio, (pad_left, pad_top))` to map boxes back.
    """
    shape = batch_shape([image.shape[:2] for image in images], imgsz, stride)
    padded, placements = [], []
    for image in images:
        out, ratio, pad = letterbox(image, shape)
        padded.append(out)
        placements.append((ratio, pad))
    stacked = padded[0][None] if len(padded) == 1 else np.stack(padded)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2), placements
