"""Where prediction frames come from: an image, a folder, a glob, a video, a `.txt` list of paths, or arrays.

`open_source` resolves what the user gave into an ordered list of image and video files up
front, so that a missing path fails before any work starts and the progress bar knows how many
frames to expect. Iterating a `Source` decodes one frame at a time (memory stays flat on long
videos); an image that cannot be decoded is skipped with a warning and the rest proceed.
`prefetch` moves the decoding onto a thread so that reading the next images overlaps with the
model running on the current ones (OpenCV releases the GIL while it decodes).
"""

from __future__ import annotations

import glob
import logging
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch

from detforge.data.images import IMAGE_SUFFIXES, opencv_safe, read_image
from detforge.errors import SourceError
from detforge.fsutil import printable

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".avi", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".webm", ".wmv"})
GLOB_CHARS = ("*", "?", "[")
HINT = "pass an image, a folder, a glob, a video or a .txt list of paths"

SourceLike = str | Path | np.ndarray | torch.Tensor | Sequence[str | Path | np.ndarray | torch.Tensor]
T = TypeVar("T")


@dataclass
class Frame:
    """One decoded picture: `image` is RGB `[H, W, 3]` uint8.

    `frame` is the 0-based frame number within a video (None for a still image).
    """

    image: np.ndarray
    path: str
    frame: int | None = None


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _is_media(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES


class Source:
    """An ordered list of image files, video files and in-memory RGB arrays; iterate it for `Frame`s."""

    def __init__(self, items: list[str | np.ndarray]):
        self.items = items

    @property
    def has_video(self) -> bool:
        return any(isinstance(item, str) and is_video(item) for item in self.items)

    def __len__(self) -> int:
        """Number of frames to expect (a video counts its frames as its container reports them)."""
        return sum(_video_length(item) if isinstance(item, str) and is_video(item) else 1 for item in self.items)

    def __iter__(self) -> Iterator[Frame]:
        for i, item in enumerate(self.items):
            if isinstance(item, np.ndarray):
                yield Frame(item, f"image{i}.jpg")
            elif is_video(item):
                yield from _read_video(item)
            else:
                image = read_image(item)
                if image is None:
                    logger.warning("%s: cannot be decoded as an image; skipped", item)
                    continue
                yield Frame(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), item)


def _video_length(path: str) -> int:
    if not opencv_safe(path):
        return 0
    capture = cv2.VideoCapture(path)
    try:
        return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        capture.release()


def _read_video(path: str) -> Iterator[Frame]:
    if not opencv_safe(path):
        logger.warning("%s: video file name is not valid UTF-8 (OpenCV cannot open it); rename it", printable(path))
        return
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            logger.warning("%s: cannot be opened as a video; skipped", path)
            return
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            yield Frame(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), path, index)
            index += 1
        if index == 0:
            logger.warning("%s: no frame could be decoded; skipped", path)
    finally:
        capture.release()


def open_source(source: SourceLike) -> Source:
    """Resolve `source` into a `Source`; raises `SourceError` (one line) when nothing usable is there.

    source: an image or video file, a folder (its images and videos, sorted, not recursive), a
    glob pattern (`data/**/*.jpg`), a `.txt` file with one path per line (relative to the
    file's folder), an RGB `[H, W, 3]` uint8 array, a PIL image, a torch tensor `[B, 3, H, W]`
    or `[3, H, W]` (RGB, float 0..1 or uint8), or a list mixing any of these (or an opened `Source`).
    """
    if isinstance(source, Source):
        return source
    images = _in_memory(source)
    if images is not None:
        return Source(images)
    if isinstance(source, (str, Path)):
        return Source(_expand(str(source)))
    items: list[str | np.ndarray] = []
    for entry in source:
        images = _in_memory(entry)
        items += images if images is not None else _expand(str(entry))
    if not items:
        raise SourceError(f"empty source list; {HINT}")
    return Source(items)


def _in_memory(entry) -> list[np.ndarray] | None:
    """RGB `[H, W, 3]` uint8 arrays for an in-memory picture (array, PIL image, tensor); None for a path."""
    if isinstance(entry, np.ndarray):
        return [_check_array(entry)]
    if isinstance(entry, torch.Tensor):
        return _tensor_images(entry)
    if type(entry).__module__.startswith("PIL.") and hasattr(entry, "convert"):
        return [np.ascontiguousarray(np.asarray(entry.convert("RGB")))]
    return None


def _tensor_images(tensor: torch.Tensor) -> list[np.ndarray]:
    """`[B, 3, H, W]` or `[3, H, W]` RGB (float 0..1, as models take them, or uint8) → one array per image."""
    t = tensor.detach().cpu()
    t = t[None] if t.ndim == 3 else t
    if t.ndim != 4 or t.shape[1] != 3:
        raise SourceError(f"tensor of shape {list(tensor.shape)}; pass images as [B, 3, H, W] or [3, H, W] RGB tensors")
    if t.is_floating_point():
        if t.numel() and (float(t.min()) < -1e-3 or float(t.max()) > 1 + 1e-3):
            raise SourceError(
                f"float tensor with values in [{float(t.min()):.3g}, {float(t.max()):.3g}]; float images must "
                "be in 0..1 (divide 0..255 values by 255, or pass a uint8 tensor)"
            )
        t = t.clamp(0, 1).mul(255).round().to(torch.uint8)
    elif t.dtype != torch.uint8:
        raise SourceError(f"tensor of dtype {t.dtype}; pass float (0..1) or uint8 images")
    return [np.ascontiguousarray(image.permute(1, 2, 0).numpy()) for image in t]


def _check_array(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise SourceError(
            f"array of shape {image.shape} and dtype {image.dtype}; pass RGB images as [H, W, 3] uint8 arrays"
        )
    return image


def _expand(text: str) -> list[str]:
    if any(ch in text for ch in GLOB_CHARS) and not Path(text).exists():
        found = sorted(p for p in glob.glob(text, recursive=True) if _is_media(Path(p)))
        if not found:
            raise SourceError(f"{text}: the pattern matches no image or video; check the pattern")
        return found
    path = Path(text).expanduser()
    if path.is_dir():
        found = sorted(str(p) for p in path.iterdir() if p.is_file() and _is_media(p))
        if not found:
            raise SourceError(f"{path}: the folder holds no image or video; {HINT}")
        return found
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder; {HINT}")
    if path.suffix.lower() == ".txt":
        return _read_list(path)
    if not _is_media(path):
        raise SourceError(
            f"{path}: {path.suffix or 'no suffix'} is not an image or video suffix "
            f"({', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))}); {HINT}"
        )
    return [str(path)]


def _read_list(list_file: Path) -> list[str]:
    """Paths listed one per line (blank lines and `#` comments ignored); missing ones are skipped with a warning."""
    found: list[str] = []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        path = path if path.is_absolute() else list_file.parent / path
        if not path.is_file():
            logger.warning("%s:%d: %s does not exist; skipped", list_file, number, path)
            continue
        found.append(str(path))
    if not found:
        raise SourceError(f"{list_file}: lists no existing image or video; write one path per line")
    return found


def prefetch(items: Iterable[T], depth: int = 8) -> Iterator[T]:
    """Yield from `items`, which a background thread runs at most `depth` items ahead.

    Stopping early (break, `close()`) stops the thread; an exception in `items` is re-raised here.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                buffer.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put((item, None)):
                    return
            put((done, None))
        except Exception as err:  # noqa: BLE001  (handed to the consumer, which re-raises it)
            put((done, err))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="detforge-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()
