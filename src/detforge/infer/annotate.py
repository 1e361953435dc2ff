"""Draw boxes with class names and scores on images (training batches, predictions)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

PALETTE = np.array([
    (255, 56, 56), (56, 56, 255), (46, 160, 67), (255, 157, 151), (255, 178, 29), (72, 249, 10), (146, 204, 23),
    (61, 219, 134), (26, 147, 52), (0, 212, 187), (44, 153, 168), (0, 194, 255), (52, 69, 147), (100, 115, 255),
    (0, 24, 236), (132, 56, 255), (82, 0, 133), (203, 56, 255), (255, 149, 200), (255, 55, 199),
], dtype=np.uint8)


def class_color(index: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in PALETTE[index % len(PALETTE)])


def draw_boxes(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, names: Sequence[str],
               scores: np.ndarray | None = None, line_width: int | None = None) -> np.ndarray:
    """Return a copy of an RGB `image [H, W, 3]` uint8 with `boxes [K, 4]` xyxy drawn and labelled."""
    out = np.ascontiguousarray(image.copy())
    lw = line_width or max(round(sum(out.shape[:2]) / 2 * 0.003), 1)
    font_scale = lw / 3
    for k, (box, cls) in enumerate(zip(np.asarray(boxes), np.asarray(classes))):
        cls = int(cls)
        color = class_color(cls)
        p1, p2 = (int(box[0]), int(box[1])), (int(box[2]), int(box[3]))
        cv2.rectangle(out, p1, p2, color, lw, cv2.LINE_AA)
        label = names[cls] if cls < len(names) else str(cls)
        if scores is not None:
            label = f"{label} {float(scores[k]):.2f}"
        (tw, th), _ = cv2.getTextSize(label, 0, font_scale, max(lw - 1, 1))
        above = p1[1] - th - 3 >= 0
        corner = (p1[0] + tw, p1[1] - th - 3 if above else p1[1] + th + 3)
        cv2.rectangle(out, p1, corner, color, -1, cv2.LINE_AA)
        cv2.putText(out, label, (p1[0], p1[1] - 2 if above else p1[1] + th + 2), 0, font_scale,
                    (255, 255, 255), max(lw - 1, 1), cv2.LINE_AA)
    return out


def save_rgb(image: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _, encoded = cv2.imencode(path.suffix or ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    path.write_bytes(encoded.tobytes())  # not cv2.imwrite: it crashes on a file name that is not UTF-8
    return path


def plot_batch(images: np.ndarray, boxes: np.ndarray, classes: np.ndarray, batch_idx: np.ndarray,
               names: Sequence[str], path: str | Path, max_images: int = 16) -> Path:
    """Tile up to 16 images `[B, 3, H, W]` uint8 with their labelled boxes into one picture."""
    return save_rgb(batch_mosaic(images, boxes, classes, batch_idx, names, max_images), path)


def batch_mosaic(images: np.ndarray, boxes: np.ndarray, classes: np.ndarray, batch_idx: np.ndarray,
                 names: Sequence[str], max_images: int = 16) -> np.ndarray:
    """The picture `plot_batch` saves, as an RGB uint8 `[H, W, 3]` array (for trackers)."""
    count = min(len(images), max_images)
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    h, w = images.shape[2:]
    canvas = np.full((rows * h, cols * w, 3), 114, dtype=np.uint8)
    for i in range(count):
        mask = batch_idx == i
        tile = draw_boxes(images[i].transpose(1, 2, 0), boxes[mask], classes[mask], names, line_width=1)
        r, c = divmod(i, cols)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    return canvas
