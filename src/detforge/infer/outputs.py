"""`ResultWriter`: where predictions are saved — annotated images and videos, YOLO txt labels, JSON.

One writer serves `Predictor.predict(..., save_dir=...)`, `detforge.predict(..., save_dir=...)`
and the `detforge predict` command, so the Python and command-line paths write the same files:

    save_dir/<stem><suffix>        annotated image (`save_images=True`)
    save_dir/<stem>.mp4            annotated video, one per video source
    save_dir/labels/<stem>.txt     `class xc yc w h [conf]` normalized (`save_txt=True`)
    save_dir/json/<stem>.json      `Results.to_dict()` (`save_json=True`)
    save_dir/summary.json          frames, boxes, seconds, frames per second, save_dir (on `close()`)

Video frames get `_<frame>` appended to the stem; two sources with the same file name (from
different folders) get distinct stems (`a`, `a_2`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import cv2

from detforge.infer.annotate import save_rgb
from detforge.infer.results import Results

logger = logging.getLogger(__name__)


class ResultWriter:
    """Saves each `Results` passed to `write()`; `close()` (or leaving a `with` block) finishes the
    videos and writes `summary.json`.

    save_dir: output folder (created on the first write). save_images: annotated images / videos.
    save_txt: YOLO label files; save_conf appends the confidence to each line. save_json: one
    JSON file per image or frame. line_width: box outline width in pixels (None: from the image size).
    """

    def __init__(self, save_dir: str | Path, save_images: bool = True, save_txt: bool = False,
                 save_conf: bool = False, save_json: bool = False, line_width: int | None = None):
        self.save_dir = Path(save_dir)
        self.save_images, self.save_txt, self.save_conf, self.save_json = save_images, save_txt, save_conf, save_json
        self.line_width = line_width
        self.frames = 0
        self.boxes = 0
        self.summary: dict | None = None
        self._start = time.perf_counter()
        self._stems: dict[str, str] = {}
        self._used: set[str] = set()
        self._repeats: dict[str, int] = {}  # still images seen more than once: each occurrence is saved
        self._writers: dict[str, cv2.VideoWriter] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def stem(self, path: str, frame: int | None = None) -> str:
        """A unique file stem per source file, with `_<frame>` for a video frame."""
        if path not in self._stems:
            self._stems[path] = self._unique(Path(path).stem)
        stem = self._stems[path]
        return stem if frame is None else f"{stem}_{frame}"

    def _unique(self, base: str) -> str:
        stem, n = base, 2
        while stem in self._used:
            stem, n = f"{base}_{n}", n + 1
        self._used.add(stem)
        return stem

    def _image_stem(self, path: str) -> str:
        """The stem for a still image; an image listed again gets a new one (`a`, `a_2`), so every result is saved."""
        if path not in self._stems:
            return self.stem(path)
        self._repeats[path] = self._repeats.get(path, 0) + 1
        if self._repeats[path] == 1:
            logger.warning("%s is in the source more than once; each occurrence is saved under its own name", path)
        return self._unique(self._stems[path])

    def write(self, result: Results) -> None:
        """Save one image's or frame's results as configured."""
        self.save_dir.mkdir(parents=True, exist_ok=True)
        stem = self.stem(result.path, result.frame) if result.frame is not None else self._image_stem(result.path)
        if self.save_images:
            image = result.plot(line_width=self.line_width)
            if result.frame is None:
                save_rgb(image, self.save_dir / f"{stem}{Path(result.path).suffix.lower() or '.jpg'}")
            else:
                self._video_frame(result.path, image)
        if self.save_txt:
            result.save_txt(self.save_dir / "labels" / f"{stem}.txt", save_conf=self.save_conf)
        if self.save_json:
            path = self.save_dir / "json" / f"{stem}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(result.to_json(indent=2))
        self.frames += 1
        self.boxes += len(result)

    def write_all(self, results: Iterable[Results]) -> Iterator[Results]:
        """Save each result as it passes through, yield it on, and close when the stream ends."""
        try:
            for result in results:
                self.write(result)
                yield result
        finally:
            self.close()

    def _video_frame(self, source: str, image) -> None:
        writer = self._writers.get(source)
        if writer is None:
            self._release()  # videos are read one after another
            path = self.save_dir / f"{self.stem(source)}.mp4"
            height, width = image.shape[:2]
            capture = cv2.VideoCapture(source)
            fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
            capture.release()
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            self._writers[source] = writer
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

    def _release(self) -> None:
        for writer in self._writers.values():
            writer.release()
        self._writers.clear()

    def close(self) -> dict:
        """Finish open videos and write `summary.json`; returns the summary. Safe to call twice."""
        self._release()
        if self.summary is None:
            elapsed = time.perf_counter() - self._start
            rate = self.frames / elapsed if elapsed > 0 else 0.0
            self.summary = {"frames": self.frames, "boxes": self.boxes, "seconds": round(elapsed, 2),
                            "frames_per_second": round(rate, 2), "save_dir": str(self.save_dir)}
            self.save_dir.mkdir(parents=True, exist_ok=True)
            (self.save_dir / "summary.json").write_text(json.dumps(self.summary, indent=2))
        return self.summary
