"""Sliced inference: tile geometry, and small objects that only the tiles can see."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_predict import RED, ColorBlobDetector, picture
from torchvision.ops import box_iou

from detforge.infer.predictor import Predictor
from detforge.infer.sliced import SliceSettings, tile_windows


@pytest.mark.parametrize(("height", "width", "size", "overlap"),
                         [(1280, 1280, 320, 0.2), (500, 1700, 256, 0.25), (300, 200, 640, 0.2), (641, 640, 640, 0.1)])
def test_tiles_cover_the_image_with_the_requested_overlap(height, width, size, overlap):
    windows = tile_windows(height, width, size, overlap)
    covered = np.zeros((height, width), dtype=np.int32)
    for x1, y1, x2, y2 in windows:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert x2 - x1 == min(size, width) and y2 - y1 == min(size, height)
        covered[y1:y2, x1:x2] += 1
    assert covered.min() >= 1
    xs = sorted({w[0] for w in windows})
    for left, right in itertools.pairwise(xs):
        assert left + size - right >= overlap * size - 1  # neighbours share at least `overlap` of a tile


def scene():
    """1280x1280 gray image with nine 12x12 red squares away from every tile seam's worst case."""
    spots = [(100 + 430 * i, 90 + 440 * j) for i in range(3) for j in range(3)]
    image = picture(1280, 1280, [(x, y, x + 12, y + 12, RED) for x, y in spots])
    return image, [(x, y, x + 12, y + 12) for x, y in spots]


def found(result, objects) -> list[bool]:
    """Per object: does some box's centre fall on it?"""
    xyxy = result.boxes.xyxy
    cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
    return [bool(((cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)).any()) for x1, y1, x2, y2 in objects]


def test_slicing_finds_small_objects_that_full_frame_misses():
    image, objects = scene()
    (full,) = Predictor(ColorBlobDetector(), imgsz=320, conf=0.3).predict(image)
    assert len(full) == 0  # scaled by 1/4 the 12-pixel squares become 3 pixels: nothing to see

    settings = SliceSettings(size=320, overlap=0.2)
    (sliced,) = Predictor(ColorBlobDetector(), imgsz=320, conf=0.3, batch=4, slice=settings).predict(image)
    assert all(found(sliced, objects))
    assert len(sliced) > 0 and (sliced.boxes.cls == 0).all()


def test_merged_boxes_do_not_repeat_across_overlapping_tiles():
    """A square in the overlap of two tiles is seen by both; after merging no two boxes overlap above the IoU."""
    image = picture(400, 600, [(300, 150, 340, 190, RED)])  # x 300..340 is inside both tiles of width 320
    settings = SliceSettings(size=320, overlap=0.5, full_frame=False)
    windows = tile_windows(400, 600, 320, 0.5)
    assert sum(x1 <= 300 and x2 >= 340 for x1, _, x2, _ in windows) >= 2
    (result,) = Predictor(ColorBlobDetector(), imgsz=320, conf=0.3, slice=settings).predict(image)
    assert found(result, [(300, 150, 340, 190)]) == [True]
    iou = box_iou(result.boxes.xyxy, result.boxes.xyxy).fill_diagonal_(0)
    assert iou.max() <= 0.7


def test_full_frame_pass_is_merged_in():
    """Tiles at native size give 8-pixel cells; the full frame, scaled by 1/2, gives 16-pixel cells.
    Both kinds are present only when `full_frame` is on."""
    image = picture(320, 320, [(0, 0, 320, 320, RED)])

    def widths(full_frame: bool) -> list[float]:
        settings = SliceSettings(size=160, overlap=0.0, full_frame=full_frame)
        (result,) = Predictor(ColorBlobDetector(), imgsz=160, conf=0.9, max_det=5000, slice=settings).predict(image)
        return (result.boxes.xyxy[:, 2] - result.boxes.xyxy[:, 0]).unique().tolist()

    assert widths(False) == [8.0]
    assert widths(True) == [8.0, 16.0]
