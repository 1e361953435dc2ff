"""What one predicted image gives back: its boxes, scores and classes, plus ways to draw and save them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from detforge.infer.annotate import draw_boxes, save_rgb


class Boxes:
    """The detections of one image, in pixels of the original image.

    `data` is `[K, 6]` = x1, y1, x2, y2, confidence, class (highest confidence first);
    `orig_shape` is the image's `(height, width)`.
    """

    def __init__(self, data: torch.Tensor, orig_shape: tuple[int, int]):
        self.data = data[None] if data.ndim == 1 else data  # one box (boxes[0]) stays [1, 6]
        self.orig_shape = orig_shape

    def __getitem__(self, index) -> Boxes:
        """`boxes[i]`, `boxes[1:3]`, `boxes[mask]`: the selected boxes, as `Boxes` (one box is `[1, 6]`)."""
        return Boxes(self.data[index], self.orig_shape)

    def __iter__(self):
        """One `Boxes` per detection: `for box in r.boxes: box.xyxy[0], box.conf[0], box.cls[0]`."""
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"Boxes({len(self)} boxes, xyxy conf cls, image {self.orig_shape[1]}x{self.orig_shape[0]})"

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    def cpu(self) -> Boxes:
        return Boxes(self.data.cpu(), self.orig_shape)

    def numpy(self) -> np.ndarray:
        """`data` as a numpy array `[K, 6]`."""
        return self.data.cpu().numpy()

    @property
    def xyxy(self) -> torch.Tensor:
        """`[K, 4]` corners x1, y1, x2, y2 in pixels."""
        return self.data[:, :4]

    @property
    def conf(self) -> torch.Tensor:
        """`[K]` confidence scores."""
        return self.data[:, 4]

    @property
    def cls(self) -> torch.Tensor:
        """`[K]` class indices (float, as in the `data` tensor; `.long()` for indexing)."""
        return self.data[:, 5]

    @property
    def xywh(self) -> torch.Tensor:
        """`[K, 4]` centre x, centre y, width, height in pixels."""
        xyxy = self.xyxy
        return torch.cat(((xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]), dim=1)

    @property
    def xyxyn(self) -> torch.Tensor:
        """`[K, 4]` corners divided by the image size (0..1)."""
        height, width = self.orig_shape
        return self.xyxy / torch.tensor([width, height, width, height], dtype=self.data.dtype)

    @property
    def xywhn(self) -> torch.Tensor:
        """`[K, 4]` centre x, centre y, width, height divided by the image size (YOLO label layout)."""
        height, width = self.orig_shape
        return self.xywh / torch.tensor([width, height, width, height], dtype=self.data.dtype)

    def __len__(self) -> int:
        return len(self.data)


class Results:
    """Predictions for one image or video frame.

    `orig_img` is the RGB `[H, W, 3]` uint8 picture the boxes refer to, `path` where it came
    from (`frame` is the frame number in a video, None for a still image), `names` the class
    names that `boxes.cls` indexes, `speed` milliseconds per image spent in pre-processing,
    inference and post-processing.
    """

    def __init__(self, orig_img: np.ndarray, path: str, names: list[str], detections: torch.Tensor,
                 frame: int | None = None, speed: dict[str, float] | None = None):
        self.orig_img = orig_img
        self.path = path
        self.names = names
        self.frame = frame
        self.orig_shape: tuple[int, int] = tuple(orig_img.shape[:2])
        self.boxes = Boxes(detections.cpu(), self.orig_shape)
        self.speed = dict(speed or {})

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index) -> Results:
        """The same image with only the selected detections (`r[0]`, `r[:3]`, `r[r.boxes.conf > 0.5]`)."""
        return Results(self.orig_img, self.path, self.names, self.boxes[index].data, self.frame, self.speed)

    def __repr__(self) -> str:
        where = self.path if self.frame is None else f"{self.path} frame {self.frame}"
        return f"Results({where}: {len(self)} boxes, {self.orig_shape[1]}x{self.orig_shape[0]})"

    def plot(self, line_width: int | None = None, conf: bool = True) -> np.ndarray:
        """The image with labelled boxes drawn on it: a new RGB `[H, W, 3]` uint8 array (RGB like
        `orig_img`; `cv2.imshow` wants `plot()[..., ::-1]`)."""
        boxes = self.boxes
        return draw_boxes(self.orig_img, boxes.xyxy.numpy(), boxes.cls.long().numpy(), self.names,
                          boxes.conf.numpy() if conf else None, line_width)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the annotated image (`plot()`) to `path` (the suffix picks the format); by default
        `results_<image name>` in the current folder."""
        if path is None:
            source = Path(self.path)
            frame = "" if self.frame is None else f"_{self.frame}"
            path = f"results_{source.stem}{frame}{source.suffix.lower() or '.jpg'}"
        return save_rgb(self.plot(), path)

    def show(self, title: str | None = None) -> None:
        """Open the annotated image in the system's image viewer (PIL's `Image.show`)."""
        from PIL import Image

        Image.fromarray(self.plot()).show(title=title or self.path)

    def summary(self, normalize: bool = False, decimals: int = 5) -> list[dict]:
        """One dict per detection: `name`, `class`, `confidence`, `box` {x1, y1, x2, y2} (pixels, or 0..1 of
        the image size with `normalize=True`)."""
        boxes = self.boxes.xyxyn if normalize else self.boxes.xyxy
        out = []
        for box, score, cls in zip(boxes.tolist(), self.boxes.conf.tolist(), self.boxes.cls.tolist()):
            c = int(cls)
            out.append({
                "name": self.names[c] if c < len(self.names) else str(c),
                "class": c,
                "confidence": round(float(score), decimals),
                "box": {k: round(float(v), decimals) for k, v in zip(("x1", "y1", "x2", "y2"), box)},
            })
        return out

    def to_dict(self) -> dict:
        """JSON-able summary: source, size and one entry per box (class, name, confidence, xyxy box)."""
        detections = [
            {
                "class": int(cls),
                "name": self.names[int(cls)] if int(cls) < len(self.names) else str(int(cls)),
                "confidence": round(float(score), 5),
                "box": [round(float(v), 2) for v in box],
            }
            for box, score, cls in zip(self.boxes.xyxy.tolist(), self.boxes.conf.tolist(), self.boxes.cls.tolist())
        ]
        out: dict = {"path": self.path, "width": self.orig_shape[1], "height": self.orig_shape[0]}
        if self.frame is not None:
            out["frame"] = self.frame
        out["detections"] = detections
        return out

    def to_json(self, indent: int | None = None) -> str:
        """`to_dict()` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def save_txt(self, path: str | Path, save_conf: bool = False) -> Path:
        """Write YOLO label lines `class xc yc w h [conf]` (normalized) to `path`; no boxes → empty file."""
        rows = torch.cat((self.boxes.cls[:, None], self.boxes.xywhn), dim=1)
        if save_conf:
            rows = torch.cat((rows, self.boxes.conf[:, None]), dim=1)
        lines = [" ".join([str(int(row[0]))] + [f"{v:.6g}" for v in row[1:]]) for row in rows.tolist()]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines))
        return path
