"""Boxes follow the pixels: a box painted as a filled rectangle stays aligned with its label
through every geometric transform (property tests), plus the config and the color transforms."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import rect_image
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from detforge.data import AugmentConfig, letterbox
from detforge.data import augment as aug

TOL = 1.0  # pixels: bilinear edges and half-covered pixels
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def bright_hull(image: np.ndarray) -> np.ndarray | None:
    """xyxy edges of the pixels at least half lit (the painted rectangle), or None if none are."""
    ys, xs = np.nonzero(image[..., 0] >= 128)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


@st.composite
def painted(draw, min_side: int = 24, max_side: int = 120):
    """A black image with one white rectangle of integer edges, and its label."""
    w, h = draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side))
    bw, bh = draw(st.integers(6, max(6, w // 2))), draw(st.integers(6, max(6, h // 2)))
    x1, y1 = draw(st.integers(0, w - bw)), draw(st.integers(0, h - bh))
    box = (x1, y1, x1 + bw, y1 + bh)
    return rect_image(w, h, box), np.array([box], dtype=np.float32)


def assert_aligned(image: np.ndarray, moved: np.ndarray, before: np.ndarray, zoom2: float = 1.0) -> None:
    """The label matches the painted pixels; a dropped label's pixels are (nearly) gone."""
    hull = bright_hull(image)
    if len(moved) == 0:
        if hull is not None:
            w, h = hull[2] - hull[0], hull[3] - hull[1]
            full = (before[0, 2] - before[0, 0]) * (before[0, 3] - before[0, 1]) * zoom2
            assert min(w, h) <= 2 + TOL or w * h <= 0.1 * full + TOL * (w + h), (hull, full)
        return
    assert hull is not None, f"label {moved[0]} but nothing painted"
    np.testing.assert_allclose(moved[0], hull, atol=TOL)


def _hyp(**kw) -> AugmentConfig:
    base = {"degrees": 0.0, "translate": 0.0, "scale": 0.0, "shear": 0.0, "perspective": 0.0}
    base.update(kw)
    return AugmentConfig(**base)


@SETTINGS
@given(painted(), st.floats(0.0, 0.45), st.floats(0.0, 0.4), st.integers(0, 2**31))
def test_scale_and_translate_keep_boxes_on_their_pixels(sample, scale, translate, seed) -> None:
    image, boxes = sample
    rng = np.random.default_rng(seed)
    out_size = 96
    tile = aug.Tile(image, boxes, np.zeros(1, np.int64), aug.translation(3, 5))
    matrix = aug.random_affine(rng, _hyp(scale=scale, translate=translate), (out_size, out_size), (out_size, out_size))
    out, moved, _ = aug.render([tile], matrix, (out_size, out_size))
    assert_aligned(out, moved, boxes, zoom2=abs(np.linalg.det(matrix[:2, :2])))


@SETTINGS
@given(painted(min_side=40), st.floats(1.0, 45.0), st.floats(0.0, 10.0), st.floats(0.0, 0.001), st.integers(0, 2**31))
def test_rotation_shear_perspective_keep_boxes_on_their_pixels(sample, degrees, shear, perspective, seed) -> None:
    image, boxes = sample
    rng = np.random.default_rng(seed)
    size = 128
    tile = aug.Tile(image, boxes, np.zeros(1, np.int64), aug.translation(0, 0))
    hyp = _hyp(degrees=degrees, shear=shear, perspective=perspective, scale=0.2)
    matrix = aug.random_affine(rng, hyp, image.shape[:2], (size, size))
    # a rotated box cut by the border is wider than what stays visible, so test whole ones
    full = aug.transform_boxes(boxes, matrix)[0]
    assume(full.min() >= 0 and full[2] <= size and full[3] <= size)
    out, moved, _ = aug.render([tile], matrix, (size, size))
    np.testing.assert_allclose(moved[0], bright_hull(out), atol=TOL)


@SETTINGS
@given(painted(min_side=32, max_side=64), st.integers(0, 3), st.integers(0, 2**31))
def test_mosaic_then_affine_keeps_boxes_on_their_pixels(sample, slot, seed) -> None:
    image, boxes = sample
    rng = np.random.default_rng(seed)
    size = 64
    blank = (np.zeros_like(image), np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    images = [blank] * 4
    images[slot] = (image, boxes, np.zeros(1, np.int64))
    center = tuple(int(v) for v in rng.uniform(size / 2, 3 * size / 2, 2))
    tiles = aug.mosaic_tiles(images, size, center)
    matrix = aug.random_affine(rng, _hyp(scale=0.5, translate=0.1), (2 * size, 2 * size), (size, size))
    out, moved, _ = aug.render(tiles, matrix, (size, size))
    assume(len(moved) == 1)
    np.testing.assert_allclose(moved[0], bright_hull(out), atol=TOL)


@SETTINGS
@given(painted(), st.booleans())
def test_flips_keep_boxes_on_their_pixels(sample, horizontal) -> None:
    image, boxes = sample
    image, boxes = image.copy(), boxes.copy()
    aug.flip(image, boxes, horizontal)
    assert_aligned(image, boxes, boxes)


@SETTINGS
@given(painted(), st.integers(32, 160), st.integers(32, 160), st.booleans(), st.booleans())
def test_letterbox_maps_boxes_there_and_back(sample, height, width, scaleup, auto) -> None:
    image, boxes = sample
    out, ratio, (left, top) = letterbox(image, (height, width), scaleup=scaleup, auto=auto)
    assert out.dtype == np.uint8 and out.shape[2] == 3
    if auto:
        assert out.shape[0] % 32 == 0 and out.shape[1] % 32 == 0
    else:
        assert out.shape[:2] == (height, width)
    placed = boxes * ratio + [left, top, left, top]
    hull = bright_hull(out)
    assume(min(boxes[0, 2] - boxes[0, 0], boxes[0, 3] - boxes[0, 1]) * ratio >= 3)
    np.testing.assert_allclose(placed[0], hull, atol=TOL)
    np.testing.assert_allclose((placed - [left, top, left, top]) / ratio, boxes, rtol=1e-5, atol=1e-3)


def test_augment_config_defaults_are_the_yolov8_recipe_and_unknown_keys_fail() -> None:
    hyp = AugmentConfig()
    assert (hyp.mosaic, hyp.mixup, hyp.hsv_h, hyp.hsv_s, hyp.hsv_v) == (1.0, 0.0, 0.015, 0.7, 0.4)
    assert (hyp.degrees, hyp.translate, hyp.scale, hyp.shear, hyp.perspective) == (0.0, 0.1, 0.5, 0.0, 0.0)
    assert (hyp.fliplr, hyp.flipud, hyp.close_mosaic) == (0.5, 0.0, 10)
    with pytest.raises(ValidationError, match="mosiac"):
        AugmentConfig(mosiac=0.5)
    with pytest.raises(ValidationError, match="fliplr"):
        AugmentConfig(fliplr=1.5)


def test_hsv_jitter_changes_colour_but_leaves_gray_and_shape_alone() -> None:
    rng = np.random.default_rng(0)
    gray = np.full((8, 8, 3), 128, np.uint8)
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[:] = (40, 90, 200)
    jittered_gray, jittered = gray.copy(), colour.copy()
    aug.augment_hsv(jittered_gray, np.random.default_rng(1), 0.5, 0.9, 0.0)
    aug.augment_hsv(jittered, rng, 0.5, 0.9, 0.4)
    np.testing.assert_array_equal(jittered_gray, gray)  # no saturation: hue and saturation gains do nothing
    assert jittered.shape == colour.shape and np.abs(jittered.astype(int) - colour).max() > 10
    untouched = colour.copy()
    aug.augment_hsv(untouched, rng, 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(untouched, colour)


def test_mixup_blends_two_images_near_half() -> None:
    a, b = np.full((4, 4, 3), 200, np.uint8), np.full((4, 4, 3), 0, np.uint8)
    mixed = aug.mixup(a, b, np.random.default_rng(0))
    assert 70 < mixed.mean() < 130
