"""Training augmentations and the letterbox resize, on uint8 BGR images and xyxy pixel boxes.

Coordinates are pixel *edges*: a box `[0, 0, w, h]` covers a whole `w x h` image, and a
geometric transform is a 3x3 matrix applied to box corners and to pixels alike, so boxes
follow the pixels exactly. Speed comes from never building what is not needed: a mosaic is not
pasted onto a 2x canvas and then warped; each of its tiles goes straight to the output in one
`cv2.resize` (scale + translation, the default recipe) or one `cv2.warpAffine` /
`cv2.warpPerspective` into just the region it covers (rotation, shear, perspective).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

FILL = 114  # gray for padding and for pixels no tile covers


class AugmentConfig(BaseModel):
    """Augmentation hyper-parameters; defaults are the YOLOv8 recipe.

    Probabilities: `mosaic`, `mixup`, `fliplr`, `flipud`. Gains: `hsv_*` (fraction of the
    hue circle, of saturation, of value). Affine: `degrees` (+-), `translate` (+- fraction of
    the output), `scale` (zoom in 1 +- scale), `shear` (+- degrees), `perspective`.
    `close_mosaic`: mosaic and mixup are switched off for this many final epochs.
    """

    model_config = ConfigDict(extra="forbid")

    mosaic: float = Field(1.0, ge=0, le=1)
    mixup: float = Field(0.0, ge=0, le=1)
    hsv_h: float = Field(0.015, ge=0, le=0.5)
    hsv_s: float = Field(0.7, ge=0, le=1)
    hsv_v: float = Field(0.4, ge=0, le=1)
    degrees: float = Field(0.0, ge=0, le=180)
    translate: float = Field(0.1, ge=0, le=0.9)
    scale: float = Field(0.5, ge=0, lt=1)
    shear: float = Field(0.0, ge=0, lt=90)
    perspective: float = Field(0.0, ge=0, le=0.001)
    fliplr: float = Field(0.5, ge=0, le=1)
    flipud: float = Field(0.0, ge=0, le=1)
    close_mosaic: int = Field(10, ge=0)


@dataclass
class Tile:
    """An image (or a crop of one) with its boxes `[M, 4]`, classes `[M]`, and the 3x3 matrix
    that places it on the canvas the affine transform starts from."""

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    to_canvas: np.ndarray


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def letterbox(image: np.ndarray, new_shape: int | tuple[int, int], color: int = FILL, scaleup: bool = True,
              auto: bool = False, stride: int = 32, center: bool = True
              ) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping the aspect ratio, then pad to `new_shape` (h, w).

    Returns `(image, ratio, (pad_w, pad_h))` where `pad_*` are the left/top pad in pixels, so a
    box maps back to the input with `(box - pad) / ratio`. `auto` pads only up to the next
    multiple of `stride` (minimal rectangle) instead of to `new_shape`; `scaleup=False` never
    enlarges (better mAP on small images during validation).
    """
    height, width = (new_shape, new_shape) if isinstance(new_shape, int) else new_shape
    h0, w0 = image.shape[:2]
    ratio = min(height / h0, width / w0)
    if not scaleup:
        ratio = min(ratio, 1.0)
    nw, nh = max(1, round(w0 * ratio)), max(1, round(h0 * ratio))
    if auto:
        width, height = math.ceil(nw / stride) * stride, math.ceil(nh / stride) * stride
    left, top = ((width - nw) // 2, (height - nh) // 2) if center else (0, 0)
    out = np.full((height, width, 3), color, dtype=np.uint8)
    region = out[top:top + nh, left:left + nw]
    if (nh, nw) == (h0, w0):
        region[:] = image
    else:
        cv2.resize(image, (nw, nh), dst=region, interpolation=cv2.INTER_LINEAR)
    return out, ratio, (left, top)


def random_affine(rng: np.random.Generator, hyp: AugmentConfig, canvas_hw: tuple[int, int],
                  out_hw: tuple[int, int]) -> np.ndarray:
    """3x3 matrix from canvas to output: about the canvas centre, perspective, rotate + zoom,
    shear, then move the centre to the output centre +- `translate`."""
    ch, cw = canvas_hw
    oh, ow = out_hw
    p = np.eye(3)
    p[2, 0], p[2, 1] = rng.uniform(-hyp.perspective, hyp.perspective, 2)
    angle = math.radians(rng.uniform(-hyp.degrees, hyp.degrees))
    zoom = rng.uniform(1 - hyp.scale, 1 + hyp.scale)
    r = np.eye(3)
    r[:2, :2] = zoom * np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    s = np.eye(3)
    s[0, 1], s[1, 0] = (math.tan(math.radians(v)) for v in rng.uniform(-hyp.shear, hyp.shear, 2))
    tx, ty = rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate, 2)
    return translation(tx * ow, ty * oh) @ s @ r @ p @ translation(-cw / 2, -ch / 2)


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Boxes `[M, 4]` xyxy -> the xyxy hull of their 4 transformed corners, `[M, 4]` float32."""
    if len(boxes) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if _axis_aligned(matrix):  # scale + shift: corners stay corners
        scale = np.array([matrix[0, 0], matrix[1, 1]] * 2)
        shift = np.array([matrix[0, 2], matrix[1, 2]] * 2)
        return (boxes * scale + shift).astype(np.float32)
    x1, y1, x2, y2 = boxes.T.astype(np.float64)
    corners = np.stack([np.stack([x1, x1, x2, x2], 1), np.stack([y1, y2, y1, y2], 1), np.ones((len(boxes), 4))])
    moved = np.einsum("ij,jmk->imk", matrix, corners)  # [3, M, 4]
    xs, ys = moved[0] / moved[2], moved[1] / moved[2]
    return np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], 1).astype(np.float32)


def box_candidates(before: np.ndarray, after: np.ndarray, area_gain: float | np.ndarray, min_side: float = 2.0,
                   min_area_ratio: float = 0.1, max_aspect: float = 100.0) -> np.ndarray:
    """Keep boxes still big enough to learn from: sides > `min_side` px, at least 10% of their
    transformed area still inside, aspect ratio < 100. `area_gain` is the transform's zoom^2."""
    w0, h0 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w, h = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w / (h + 1e-9), h / (w + 1e-9))
    return (w > min_side) & (h > min_side) & (w * h / (w0 * h0 * area_gain + 1e-9) > min_area_ratio) & (
        aspect < max_aspect)


def render(tiles: list[Tile], matrix: np.ndarray, out_hw: tuple[int, int]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw every tile through `matrix` onto a gray `out_hw` image; returns image, boxes, classes."""
    out = np.full((*out_hw, 3), FILL, dtype=np.uint8)
    before, after, gains, classes = [], [], [], []
    for tile in tiles:
        a = matrix @ tile.to_canvas
        if _axis_aligned(a):
            a = _paste_resized(out, tile.image, a)
        else:
            _warp_into(out, tile.image, a)
        if a is None or len(tile.boxes) == 0:
            continue
        before.append(tile.boxes)
        after.append(transform_boxes(tile.boxes, a))
        gains.append(np.full(len(tile.boxes), abs(a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0])))
        classes.append(tile.classes)
    if not after:
        return out, np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    moved = np.concatenate(after)
    np.clip(moved, 0, [out_hw[1], out_hw[0], out_hw[1], out_hw[0]], out=moved)
    keep = box_candidates(np.concatenate(before), moved, area_gain=np.concatenate(gains))
    return out, moved[keep], np.concatenate(classes)[keep]


def _axis_aligned(a: np.ndarray) -> bool:
    return a[0, 1] == 0 and a[1, 0] == 0 and a[2, 0] == 0 and a[2, 1] == 0 and a[0, 0] > 0 and a[1, 1] > 0


def _span(t: float, s: float, size: int, limit: int) -> tuple[int, int, int, int] | None:
    """Source pixels [i0, i1) of a `size`-long axis mapped by x -> s*x + t that reach [0, limit),
    and their integer destination [c0, c1) (which may stick out of [0, limit) by a pixel)."""
    u0, u1 = max(t, 0.0), min(t + s * size, float(limit))
    if u1 - u0 < 0.5:
        return None
    i0 = max(0, math.floor((u0 - t) / s))
    i1 = min(size, math.ceil((u1 - t) / s))
    c0, c1 = round(t + s * i0), round(t + s * i1)
    if c1 <= c0 or i1 <= i0:
        return None
    return i0, i1, c0, c1


def _paste_resized(out: np.ndarray, image: np.ndarray, a: np.ndarray) -> np.ndarray | None:
    """Resize the visible part of `image` into `out`; returns the exact matrix used (integer
    destination edges shift the nominal one by under a pixel), or None if nothing is visible."""
    oh, ow = out.shape[:2]
    h, w = image.shape[:2]
    xs = _span(a[0, 2], a[0, 0], w, ow)
    ys = _span(a[1, 2], a[1, 1], h, oh)
    if xs is None or ys is None:
        return None
    (i0, i1, c0, c1), (j0, j1, r0, r1) = xs, ys
    src = image[j0:j1, i0:i1]
    dx0, dx1, dy0, dy1 = max(c0, 0), min(c1, ow), max(r0, 0), min(r1, oh)
    if (c0, c1, r0, r1) == (dx0, dx1, dy0, dy1):
        if (c1 - c0, r1 - r0) == (i1 - i0, j1 - j0):
            out[r0:r1, c0:c1] = src
        else:
            cv2.resize(src, (c1 - c0, r1 - r0), dst=out[r0:r1, c0:c1], interpolation=cv2.INTER_LINEAR)
    else:
        resized = cv2.resize(src, (c1 - c0, r1 - r0), interpolation=cv2.INTER_LINEAR)
        out[dy0:dy1, dx0:dx1] = resized[dy0 - r0:dy1 - r0, dx0 - c0:dx1 - c0]
    sx, sy = (c1 - c0) / (i1 - i0), (r1 - r0) / (j1 - j0)
    return np.array([[sx, 0.0, c0 - sx * i0], [0.0, sy, r0 - sy * j0], [0.0, 0.0, 1.0]])


def _warp_into(out: np.ndarray, image: np.ndarray, a: np.ndarray) -> None:
    """Warp `image` by `a` into the part of `out` its corners cover (pixels outside it untouched)."""
    h, w = image.shape[:2]
    hull = transform_boxes(np.array([[0, 0, w, h]], dtype=np.float32), a)[0]
    x0, y0 = max(0, math.floor(hull[0])), max(0, math.floor(hull[1]))
    x1, y1 = min(out.shape[1], math.ceil(hull[2])), min(out.shape[0], math.ceil(hull[3]))
    if x1 <= x0 or y1 <= y0:
        return
    # edge coordinates -> OpenCV's pixel-centre coordinates, relative to the region
    m = translation(-x0 - 0.5, -y0 - 0.5) @ a @ translation(0.5, 0.5)
    region = out[y0:y1, x0:x1]
    if a[2, 0] == 0 and a[2, 1] == 0:
        cv2.warpAffine(image, m[:2], (x1 - x0, y1 - y0), dst=region, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_TRANSPARENT)
    else:
        cv2.warpPerspective(image, m, (x1 - x0, y1 - y0), dst=region, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_TRANSPARENT)


def mosaic_tiles(images: list[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int, center: tuple[int, int]
                 ) -> list[Tile]:
    """Place 4 images (each `(image, boxes, classes)`) around `center` of a `2*size` square
    canvas: top-left, top-right, bottom-left, bottom-right; parts beyond the canvas are cut."""
    xc, yc = center
    side = 2 * size
    tiles = []
    for k, (image, boxes, classes) in enumerate(images):
        h, w = image.shape[:2]
        x1 = max(xc - w, 0) if k in (0, 2) else xc
        x2 = xc if k in (0, 2) else min(xc + w, side)
        y1 = max(yc - h, 0) if k in (0, 1) else yc
        y2 = yc if k in (0, 1) else min(yc + h, side)
        cx = w - (x2 - x1) if k in (0, 2) else 0  # crop origin inside the image
        cy = h - (y2 - y1) if k in (0, 1) else 0
        crop = image[cy:cy + (y2 - y1), cx:cx + (x2 - x1)]
        if crop.size == 0:
            continue
        moved = np.clip(boxes - [cx, cy, cx, cy], 0, [x2 - x1, y2 - y1, x2 - x1, y2 - y1]).astype(np.float32)
        keep = (moved[:, 2] > moved[:, 0]) & (moved[:, 3] > moved[:, 1])
        tiles.append(Tile(crop, moved[keep], classes[keep], translation(x1, y1)))
    return tiles


def augment_hsv(image: np.ndarray, rng: np.random.Generator, hgain: float, sgain: float, vgain: float) -> None:
    """Random hue shift and saturation/value gains, in place on a BGR uint8 image."""
    gains = rng.uniform(-1, 1, 3) * [hgain, sgain, vgain]
    if not gains.any():
        return
    x = np.arange(256, dtype=np.float64)
    luts = (
        ((x + gains[0] * 180) % 180).astype(np.uint8),  # OpenCV's 8-bit hue runs 0..179
        np.clip(x * (1 + gains[1]), 0, 255).astype(np.uint8),
        np.clip(x * (1 + gains[2]), 0, 255).astype(np.uint8),
    )
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    # one LUT per plane beats a 3-channel LUT; planes from np.empty, as cv2.split's own are slow to allocate
    planes = cv2.split(hsv, [np.empty(image.shape[:2], np.uint8) for _ in range(3)])
    for plane, lut in zip(planes, luts):
        cv2.LUT(plane, lut, dst=plane)
    cv2.cvtColor(cv2.merge(planes, dst=hsv), cv2.COLOR_HSV2BGR, dst=image)


def flip(image: np.ndarray, boxes: np.ndarray, horizontal: bool) -> None:
    """Mirror image and boxes in place (left-right if `horizontal`, else up-down)."""
    h, w = image.shape[:2]
    cv2.flip(image, 1 if horizontal else 0, dst=image)
    if len(boxes):
        i, size = (0, w) if horizontal else (1, h)
        lo = boxes[:, i].copy()
        boxes[:, i] = size - boxes[:, i + 2]
        boxes[:, i + 2] = size - lo


def mixup(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blend two same-size images with a weight drawn from Beta(32, 32) (close to 0.5)."""
    r = rng.beta(32.0, 32.0)
    return cv2.addWeighted(a, r, b, 1.0 - r, 0.0)
