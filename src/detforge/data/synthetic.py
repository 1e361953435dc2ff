"""A synthetic detection dataset that needs no download: shapes on textured backgrounds.

Made for the demo and for tests: a small detector should reach a high mAP on it within a few
minutes on a CPU, yet it is not trivial. Each class is a shape with its own hue family (both
cues are learnable); objects vary in scale (12-35% of the image side) and aspect ratio, may
overlap a little (one may partly hide another) and low-contrast gray clutter partly covers some.
Backgrounds are smooth random color fields with noise and faint lines. Written in YOLO layout
with a data.yaml and train/val splits (and a held-out test split on request); the same seed gives
the same files.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import yaml

from detforge.errors import DataError
from detforge.progress import progress_bar

SHAPES = ("circle", "triangle", "square", "cross", "star", "ring", "hexagon", "diamond")
MAX_OBJECTS = 6
SIZE_RANGE = (0.12, 0.35)  # object side as a fraction of the image side
MAX_IOU = 0.3  # objects overlap at most this much, so every one stays recognisable


def _unit_outline(shape: str) -> np.ndarray | None:
    """Polygon of `shape` inside the unit square (its bounding box is exactly [0, 1]^2)."""
    if shape == "triangle":
        pts = [(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)]
    elif shape == "diamond":
        pts = [(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)]
    elif shape == "hexagon":
        pts = [(0.5 + 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a)) for a in np.arange(6) * math.pi / 3]
    elif shape == "star":
        pts = [(0.5 + (0.5 if k % 2 == 0 else 0.2) * math.sin(k * math.pi / 5),
                0.5 - (0.5 if k % 2 == 0 else 0.2) * math.cos(k * math.pi / 5)) for k in range(10)]
    elif shape == "cross":
        a, b = 1 / 3, 2 / 3
        pts = [(a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b), (0, a), (a, a)]
    else:
        return None
    p = np.array(pts, dtype=np.float64)
    p -= p.min(0)
    return p / p.max(0)


def _draw_shape(image: np.ndarray, shape: str, box: np.ndarray, color: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    shift = 4  # sub-pixel precision for OpenCV drawing
    scale = 1 << shift
    # OpenCV draws in pixel-centre coordinates: covering edges x1..x2 means centres x1..x2-1
    cx, cy, ax, ay = x1 + w / 2 - 0.5, y1 + h / 2 - 0.5, w / 2 - 0.5, h / 2 - 0.5
    if shape == "square":
        pts = np.array([[x1, y1], [x2 - 1, y1], [x2 - 1, y2 - 1], [x1, y2 - 1]])
        cv2.fillPoly(image, [np.round(pts * scale).astype(np.int32)], color, cv2.LINE_AA, shift)
    elif shape in ("circle", "ring"):
        center = (round(cx * scale), round(cy * scale))
        if shape == "circle":
            cv2.ellipse(image, center, (round(ax * scale), round(ay * scale)), 0, 0, 360, color, -1, cv2.LINE_AA, shift)
        else:
            thick = max(2, round(min(w, h) / 5))
            axes = (round((ax - thick / 2 - 0.5) * scale), round((ay - thick / 2 - 0.5) * scale))
            cv2.ellipse(image, center, axes, 0, 0, 360, color, thick, cv2.LINE_AA, shift)
    else:
        unit = _unit_outline(shape)
        pts = unit * [w - 1, h - 1] + [x1, y1]
        cv2.fillPoly(image, [np.round(pts * scale).astype(np.int32)], color, cv2.LINE_AA, shift)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random color field + faint lines + pixel noise, low saturation (objects stand out)."""
    cells = int(rng.integers(3, 9))
    base = rng.uniform(60, 200)
    field = rng.normal(base, 35, (cells, cells, 3)) * [1.0, rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15)]
    image = cv2.resize(np.clip(field, 0, 255).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    gray = image.mean(2, keepdims=True)
    image = gray + (image - gray) * 0.5  # desaturate
    for _ in range(int(rng.integers(0, 6))):
        p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        shade = float(rng.uniform(-40, 40))
        layer = np.zeros((size, size), np.float32)
        cv2.line(layer, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), 1.0, int(rng.integers(1, 4)), cv2.LINE_AA)
        image += layer[..., None] * shade
    image += rng.normal(0, rng.uniform(2, 10), image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    return inter / (_area(box) + _area(boxes) - inter)


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _class_color(rng: np.random.Generator, cls: int, classes: int) -> tuple[int, int, int]:
    hue = (cls * 180 / classes + rng.uniform(-8, 8)) % 180
    hsv = np.array([[[hue, rng.uniform(150, 255), rng.uniform(140, 255)]]], dtype=np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_scene(rng: np.random.Generator, size: int, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: BGR uint8 `[size, size, 3]`, boxes float32 `[M, 4]` xyxy pixels, classes int64 `[M]`."""
    image = _background(rng, size)
    boxes: list[np.ndarray] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        for _attempt in range(20):
            side = rng.uniform(*SIZE_RANGE) * size
            aspect = math.exp(rng.uniform(-0.4, 0.4))
            w, h = min(side * math.sqrt(aspect), size - 2.0), min(side / math.sqrt(aspect), size - 2.0)
            x1, y1 = rng.uniform(0, size - w), rng.uniform(0, size - h)
            box = np.array([x1, y1, x1 + w, y1 + h])
            if not boxes or _iou(box, np.array(boxes)).max() <= MAX_IOU:
                break
        else:
            continue
        cls = int(rng.integers(classes))
        _draw_shape(image, SHAPES[cls], box, _class_color(rng, cls, classes))
        boxes.append(box)
        labels.append(cls)
    for _ in range(int(rng.integers(0, 3))):  # gray clutter, some of it over objects
        center = rng.uniform(0, size, 2)
        radius = rng.uniform(0.03, 0.08) * size
        angles = np.sort(rng.uniform(0, 2 * math.pi, 7))
        pts = center + radius * rng.uniform(0.5, 1.0, (7, 1)) * np.stack([np.cos(angles), np.sin(angles)], 1)
        shade = int(rng.uniform(70, 190))
        cv2.fillPoly(image, [np.round(pts).astype(np.int32)], (shade, shade, shade), cv2.LINE_AA)
    boxes_arr = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    return image, boxes_arr, np.array(labels, dtype=np.int64)


def synthesize(out: str | Path, images: int = 200, classes: int = 3, imgsz: int = 256, seed: int = 0,
               val_fraction: float = 0.2, test_fraction: float = 0.0, progress: bool = False) -> Path:
    """Write `images` scenes of `classes` shape classes under `out` (YOLO layout); returns data.yaml.
    The last images form the val split, then the test split (none unless `test_fraction` > 0)."""
    if not 1 <= classes <= len(SHAPES):
        raise DataError(f"--classes {classes}: choose 1..{len(SHAPES)} ({', '.join(SHAPES)})")
    if images < 2:
        raise DataError(f"--images {images}: need at least 2 (one for train, one for val)")
    if imgsz < 32:
        raise DataError(f"--imgsz {imgsz}: use at least 32 pixels")
    n_val = min(images - 1, max(1, round(images * val_fraction)))
    n_test = max(1, round(images * test_fraction)) if test_fraction > 0 else 0
    if n_val + n_test > images - 1:
        raise DataError(f"--images {images} with --val-fraction {val_fraction} and --test-fraction {test_fraction} "
                        "leaves no training image; lower a fraction or add images")
    out = Path(out)
    rng = np.random.default_rng(seed)
    for i in progress_bar(range(images), desc="synthesizing", disable=not progress, leave=False):
        split = "train" if i < images - n_val - n_test else "val" if i < images - n_test else "test"
        image, boxes, labels = draw_scene(rng, imgsz, classes)
        name = f"{split}_{i:05d}"
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / "images" / split / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        lines = [
            f"{c} {(b[0] + b[2]) / 2 / imgsz:.6f} {(b[1] + b[3]) / 2 / imgsz:.6f} "
            f"{(b[2] - b[0]) / imgsz:.6f} {(b[3] - b[1]) / imgsz:.6f}\n"
            for b, c in zip(boxes.tolist(), labels.tolist())
        ]
        (out / "labels" / split / f"{name}.txt").write_text("".join(lines), encoding="utf-8")
    data = {"path": ".", "train": "images/train", "val": "images/val", **({"test": "images/test"} if n_test else {}),
            "nc": classes, "names": dict(enumerate(SHAPES[:classes]))}
    yaml_path = out / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return yaml_path
