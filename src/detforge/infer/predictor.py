"""`Predictor`: images, folders, globs and videos in, one `Results` per frame out.

The pipeline per batch: decode (on a prefetch thread) → letterbox every frame into one
shared rectangle (the smallest multiple of the stride that holds each frame scaled to `imgsz`)
→ model → NMS → boxes mapped back to the original pixels. The model is a private copy made for
speed: BatchNorm folded (`fuse`), channels-last memory (oneDNN's native layout, no reorders
between convs), in-place activations after each conv, and on CPU each conv block run as one
oneDNN call with its weight pre-packed (see `pack_convs`), under `torch.inference_mode`.
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
from detforge.device import select_device
from detforge.infer.postprocess import non_max_suppression, scale_boxes_to_original
from detforge.infer.results import Results
from detforge.infer.sliced import SliceSettings, predict_sliced
from detforge.infer.sources import Frame, SourceLike, open_source, prefetch
from detforge.io.convert import load_detector
from detforge.models.detector import Detector
from detforge.models.layers import ConvBNAct

logger = logging.getLogger(__name__)


class Predictor:
    """Run a detector over any source.

    model: a `Detector` (it is copied before fusing, so the caller's model is untouched) or a
        weights path. imgsz: longest side the frames are scaled to (rounded up to the stride).
    conf / iou / max_det / classes / agnostic: NMS filters (see `non_max_suppression`).
    batch: frames per forward pass. slice: tile large frames (see `detforge.infer.sliced`).
    """

    def __init__(self, model: Detector | str | Path, imgsz: int = 640, conf: float = 0.25, iou: float = 0.7,
                 max_det: int = 300, classes: Sequence[int] | None = None, agnostic: bool = False,
                 batch: int = 1, device: str | torch.device = "cpu", half: bool = False, fuse: bool = True,
                 slice: SliceSettings | None = None, workers: int = 1):
        model = model if isinstance(model, nn.Module) else load_detector(model)
        self.device = select_device(device)
        self.names = list(model.names)
        self.stride = max(int(s) for s in model.strides)
        self.imgsz = math.ceil(imgsz / self.stride) * self.stride
        if self.imgsz != imgsz:
            logger.warning("imgsz %d is not a multiple of the stride %d; using %d", imgsz, self.stride, self.imgsz)
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.classes = list(classes) if classes is not None else None
        self.agnostic = agnostic
        self.batch = max(1, int(batch))
        self.slice = slice
        self.workers = workers
        self.dtype = torch.float16 if half and self.device.type == "cuda" else torch.float32
        self.model = copy.deepcopy(model).eval()
        if fuse:
            self.model.fuse()
        inplace_activations(self.model)
        self.model = self.model.to(self.device, self.dtype).to(memory_format=torch.channels_last)
        if fuse and self.device.type == "cpu" and self.dtype == torch.float32:
            pack_convs(self.model)

    def __call__(self, source: SourceLike, stream: bool = False) -> list[Results] | Iterator[Results]:
        return self.predict(source, stream)

    def predict(self, source: SourceLike, stream: bool = False) -> list[Results] | Iterator[Results]:
        """Predict every frame of `source`; `stream=True` returns a generator that holds one batch at a
        time (use it on videos and large folders), otherwise a list of all results."""
        frames = open_source(source)
        results = self.stream(frames)
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


def inplace_activations(model: nn.Module) -> None:
    """Let each conv block's activation overwrite the conv output it is given (inference only).

    That output is a fresh tensor nobody else holds, so nothing changes but one less large
    allocation per block; never do this to a model that will be trained.
    """
    for module in model.modules():
        if isinstance(module, ConvBNAct) and hasattr(module.act, "inplace"):
            module.act.inplace = True


class PackedConvAct(nn.Module):
    """A conv (optionally followed by SiLU) as one oneDNN call on CPU.

    The weight is reordered once into oneDNN's blocked layout instead of on every call, and the
    activation runs as the conv's post-op instead of another pass over memory: about 15% less
    time per forward than eager PyTorch. These are the oneDNN ops PyTorch's own CPU compiler
    (inductor) emits; the arithmetic is the eager layers' (`pack_convs` checks the outputs).
    """

    def __init__(self, conv: nn.Conv2d, silu: bool):
        super().__init__()
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.attr = "swish" if silu else "none"
        self.weight = torch.ops.mkldnn._reorder_convolution_weight(
            conv.weight.detach(), self.padding, self.stride, self.dilation, self.groups)
        self.bias = None if conv.bias is None else conv.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, self.padding, self.stride,
                                                       self.dilation, self.groups, self.attr, [], "")


def _packable(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, name, module) of every fused `ConvBNAct` with SiLU or no activation, and of every other
    plain zero-padded `nn.Conv2d` (e.g. a head's prediction convs)."""
    found = []
    for parent in model.modules():
        if isinstance(parent, ConvBNAct):
            continue  # its conv is packed with the block
        for name, child in parent.named_children():
            fused_block = (isinstance(child, ConvBNAct) and isinstance(child.bn, nn.Identity)
                           and isinstance(child.act, (nn.SiLU, nn.Identity)) and child.conv.padding_mode == "zeros")
            plain_conv = type(child) is nn.Conv2d and child.padding_mode == "zeros"
            if fused_block or plain_conv:
                found.append((parent, name, child))
    return found


def pack_convs(model: nn.Module) -> int:
    """Swap the fused conv blocks and plain convs of a CPU float32 model for `PackedConvAct`s, in place.

    Checked on a small input first: if this PyTorch build lacks the oneDNN ops or the outputs
    move by more than float rounding, the model is left as it was. Returns the number swapped.
    """
    targets = _packable(model)
    if not targets or not torch.backends.mkldnn.is_available():
        return 0
    stride = max(int(s) for s in getattr(model, "strides", [32]))
    probe = torch.rand(1, 3, 2 * stride, 3 * stride).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = model(probe)
        try:
            for parent, name, child in targets:
                packed = (PackedConvAct(child.conv, isinstance(child.act, nn.SiLU)) if isinstance(child, ConvBNAct)
                          else PackedConvAct(child, silu=False))
                setattr(parent, name, packed)
            ok = torch.allclose(model(probe), expected, rtol=1e-3, atol=1e-3)
        except (RuntimeError, AttributeError) as err:
            logger.debug("oneDNN conv packing unavailable (%s); running eager convs", err)
            ok = False
    if not ok:
        for parent, name, child in targets:
            setattr(parent, name, child)
        return 0
    return len(targets)


def predict(model: Detector | str | Path, source: SourceLike, stream: bool = False, **settings
            ) -> list[Results] | Iterator[Results]:
    """One-call prediction: `Predictor(model, **settings).predict(source, stream)`."""
    return Predictor(model, **settings).predict(source, stream)


def batch_shape(shapes: Sequence[tuple[int, int]], imgsz: int, stride: int) -> tuple[int, int]:
    """Smallest `(height, width)`, multiples of `stride`, that holds every `(h, w)` scaled so its long side is `imgsz`."""
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
