"""A regenerable stand-in for a held-out set of large photos at extreme aspect ratios.

The set the converted-model disagreement was first seen on (photos up to 2000 px, 3:1 and 1:3
crops) is not shipped; this builds one with the same traits from BCCD, nothing downloaded: every
image is cropped to 3:1 (wide), 1:3 (tall) or kept 4:3, in turn, upscaled (bicubic) so its long
side is 1500-2000 px, given photo-like grain (Gaussian, sigma `--grain`; an upscaled image alone has
no fine detail, so decode and interpolation choices would hardly change its pixels), and written as
a quality-90 JPEG. Boxes are cropped with the image; a box keeping under 60% of its area is dropped
(and an image left without boxes).

    python bench/large_photos.py --out /tmp/large [--src ../shared/datasets/bccd] [--train 32] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = ROOT.parent / "shared" / "datasets" / "bccd"
VARIANTS = ("wide", "tall", "plain")  # 3:1, 1:3, as is


def crop_window(width: int, height: int, variant: str) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the centred 3:1 / 1:3 crop (the whole image for "plain")."""
    if variant == "wide" and height > width / 3:
        h = round(width / 3)
        return 0, (height - h) // 2, width, (height - h) // 2 + h
    if variant == "tall" and width > height / 3:
        w = round(height / 3)
        return (width - w) // 2, 0, (width - w) // 2 + w, height
    return 0, 0, width, height


def crop_boxes(boxes: np.ndarray, window: tuple[int, int, int, int], keep: float = 0.6) -> np.ndarray:
    """`[M, 5]` (class, x1, y1, x2, y2) pixels → the boxes inside `window`, in its pixels."""
    x0, y0, x1, y1 = window
    clipped = boxes.copy()
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(x0, x1) - x0
    clipped[:, [2, 4]] = clipped[:, [2, 4]].clip(y0, y1) - y0

    def area(b: np.ndarray) -> np.ndarray:
        return (b[:, 3] - b[:, 1]).clip(0) * (b[:, 4] - b[:, 2]).clip(0)

    return clipped[area(clipped) >= keep * area(boxes) + 1e-9]


def make_image(path: Path, label: Path, variant: str, rng: np.random.Generator, grain: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """The large photo (uint8 BGR) and its labels `[M, 5]` (class, normalized cx, cy, w, h)."""
    image = cv2.imread(str(path))
    height, width = image.shape[:2]
    labels = np.loadtxt(label, ndmin=2).reshape(-1, 5) if label.exists() else np.zeros((0, 5))
    xyxy = labels.copy()
    xyxy[:, 1:] = np.c_[labels[:, 1:3] - labels[:, 3:] / 2, labels[:, 1:3] + labels[:, 3:] / 2] * ([width, height] * 2)
    window = crop_window(width, height, variant)
    x0, y0, x1, y1 = window
    boxes = crop_boxes(xyxy, window)
    image = image[y0:y1, x0:x1]
    scale = int(rng.integers(1500, 2001)) / max(image.shape[:2])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC).astype(np.float32)
    image += rng.normal(0.0, grain, image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    w, h = x1 - x0, y1 - y0
    out = np.c_[boxes[:, 0], (boxes[:, 1] + boxes[:, 3]) / 2 / w, (boxes[:, 2] + boxes[:, 4]) / 2 / h,
                (boxes[:, 3] - boxes[:, 1]) / w, (boxes[:, 4] - boxes[:, 2]) / h]
    return image, out


def make_large_photos(out: Path, src: Path = DEFAULT_SRC, train: int = 32, seed: int = 0, grain: float = 6.0) -> Path:
    """Write the stand-in (images/, labels/, data.yaml with `src`'s class names) under `out`; returns data.yaml.
    `train`: how many train images (the val split is converted whole)."""
    names = yaml.safe_load((src / "data.yaml").read_text())["names"]
    rng = np.random.default_rng(seed)
    for split, limit in (("train", train), ("val", None)):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(sorted((src / "images" / split).glob("*.jpg"))[:limit]):
            label = src / "labels" / split / f"{path.stem}.txt"
            image, labels = make_image(path, label, VARIANTS[i % len(VARIANTS)], rng, grain)
            if not len(labels):  # a crop without objects: left out, as the agreement scripts expect labels
                continue
            cv2.imwrite(str(out / "images" / split / path.name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            (out / "labels" / split / label.name).write_text(
                "".join(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels))
    data = out / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(out), "train": "images/train", "val": "images/val", "names": names}))
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    parser.add_argument("--train", type=int, default=32, help="train images to convert (val is converted whole)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grain", type=float, default=6.0)
    args = parser.parse_args()
    if not (args.src / "data.yaml").exists():
        print(f"dataset not found: {args.src}", file=sys.stderr)
        return 2
    print(make_large_photos(args.out, args.src, args.train, args.seed, args.grain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
