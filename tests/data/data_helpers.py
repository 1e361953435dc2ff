"""Small datasets written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml


def rect_image(width: int, height: int, box: tuple[int, int, int, int], value: int = 255,
               background: int = 0) -> np.ndarray:
    """BGR image with pixels [x1, x2) x [y1, y2) set to `value` (edges = the label box)."""
    image = np.full((height, width, 3), background, dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = value
    return image


def yolo_line(cls: int, box: tuple[float, float, float, float], width: int, height: int) -> str:
    x1, y1, x2, y2 = box
    return (f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} "
            f"{(y2 - y1) / height:.6f}\n")


def write_yolo(root: Path, splits: dict[str, list[tuple[str, np.ndarray | bytes | None, str | None]]],
               names: list[str] | dict | None = None, extra: dict | None = None) -> Path:
    """Write images/<split>/<name> (array -> encoded by suffix, bytes -> written as is) and
    labels/<split>/<stem>.txt (None -> no label file); returns data.yaml."""
    for split, items in splits.items():
        for name, image, labels in items:
            path = root / "images" / split / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(image, bytes):
                path.write_bytes(image)
            elif image is not None:
                assert cv2.imwrite(str(path), image)
            if labels is not None:
                label = root / "labels" / split / (Path(name).stem + ".txt")
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text(labels)
    data = {"path": ".", **{s: f"images/{s}" for s in splits}, "names": names or ["a", "b", "c"]}
    data.update(extra or {})
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root / "data.yaml"


def boxes_dataset(root: Path, count: int = 8, size: tuple[int, int] = (96, 72), seed: int = 0,
                  split_names: tuple[str, ...] = ("train",), suffix: str = ".png") -> Path:
    """Images with 1-3 white rectangles on black, labelled exactly; returns data.yaml."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split in split_names:
        items = []
        for i in range(count):
            w, h = size
            image = np.zeros((h, w, 3), np.uint8)
            lines = ""
            for _ in range(int(rng.integers(1, 4))):
                bw, bh = int(rng.integers(8, w // 3)), int(rng.integers(8, h // 3))
                x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                image[y1:y1 + bh, x1:x1 + bw] = 255
                lines += yolo_line(int(rng.integers(3)), (x1, y1, x1 + bw, y1 + bh), w, h)
            items.append((f"{split}{i:03d}{suffix}", image, lines))
        splits[split] = items
    return write_yolo(root, splits)
