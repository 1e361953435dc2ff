"""Reading images: a cheap header check at scan time, a fast upright BGR decode at load time.

The scan opens each file with Pillow (header, EXIF, structure; no full decode) so a large
dataset is checked in seconds. Loading uses OpenCV, which applies the EXIF orientation and
turns grayscale, RGBA, palette, CMYK and 16-bit files into 8-bit 3-channel BGR by itself, and
which can decode a JPEG at 1/2, 1/4 or 1/8 scale for less work when the image is shrunk anyway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from detforge.data.problems import (
    COLOR_MODE,
    EXIF_ROTATED,
    FIXED,
    SKIPPED,
    TRUNCATED_IMAGE,
    UNREADABLE_IMAGE,
    ProblemReport,
)

LOGGER = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})
EXIF_ORIENTATION = 0x0112
ROTATING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # these swap width and height
REDUCED_FLAGS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


@dataclass(frozen=True)
class ImageInfo:
    """Upright size of a readable image (after its EXIF orientation is applied)."""

    width: int
    height: int


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def inspect_image(path: Path, report: ProblemReport) -> ImageInfo | None:
    """Check that `path` is a readable image and return its upright size, or None to skip it.

    Every finding goes to `report`: unreadable or truncated files are skipped; EXIF rotation and
    non-RGB modes (gray, RGBA, palette, CMYK, 16-bit) are fixed at load time and noted here.
    """
    try:
        with Image.open(path) as im:
            im.verify()  # structure check (chunk CRCs, markers) without a full decode
        with Image.open(path) as im:
            width, height = im.size
            mode = im.mode
            fmt = im.format
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    except FileNotFoundError:
        report.add(path, UNREADABLE_IMAGE, SKIPPED, "file not found")
        return None
    except Exception as err:  # noqa: BLE001  a corrupt file can make a decoder, or a plugin another
        # library patched into Pillow (Ultralytics patches Image.open), raise anything: skip and report it
        if "truncat" in str(err).replace(str(path), "").lower():
            report.add(path, TRUNCATED_IMAGE, SKIPPED, f"file ends early ({err})")
        else:
            report.add(path, UNREADABLE_IMAGE, SKIPPED, f"cannot be decoded ({err.__class__.__name__}: {err})")
        return None
    if width < 1 or height < 1:
        report.add(path, UNREADABLE_IMAGE, SKIPPED, f"empty image {width}x{height}")
        return None
    if fmt == "JPEG" and not _has_jpeg_end(path):
        report.add(path, TRUNCATED_IMAGE, SKIPPED, "JPEG ends before its end-of-image marker")
        return None
    if orientation in ROTATING_ORIENTATIONS:
        width, height = height, width
    if orientation not in (1, None):
        report.add(path, EXIF_ROTATED, FIXED, f"EXIF orientation {orientation}; pixels turned upright on load")
    if mode != "RGB":
        report.add(path, COLOR_MODE, FIXED, f"mode {mode}; converted to 8-bit RGB on load")
    return ImageInfo(int(width), int(height))


def _has_jpeg_end(path: Path) -> bool:
    """A complete JPEG ends with FFD9 (some writers add a few padding bytes after it)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 32))
        tail = f.read()
    return b"\xff\xd9" in tail


def read_image(path: str, shrink: float = 1.0) -> np.ndarray | None:
    """Decode `path` as upright 8-bit BGR `[H, W, 3]`, or None if it cannot be decoded.

    `shrink` is the scale the caller will resize to (<= 1): a JPEG is then decoded at the
    largest 1/2, 1/4 or 1/8 scale that is still at least that big, which is much cheaper.
    """
    flag = cv2.IMREAD_COLOR
    for factor, reduced in REDUCED_FLAGS:
        if shrink * factor <= 1.0:
            flag = reduced
            break
    image = _imread(path, flag)
    if image is None and flag != cv2.IMREAD_COLOR:
        image = _imread(path, cv2.IMREAD_COLOR)
    return image


def opencv_safe(path: str | Path) -> bool:
    """Whether OpenCV may be given this file name: one that is not valid UTF-8 (Python keeps its bytes as
    lone surrogates) crashes the whole process inside cv2.imread / imwrite / VideoCapture."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _imread(path: str, flag: int) -> np.ndarray | None:
    """cv2.imread; a file name OpenCV cannot take is read by Python and decoded from memory."""
    if not opencv_safe(path):
        try:
            return cv2.imdecode(np.fromfile(path, dtype=np.uint8), flag)
        except (OSError, cv2.error):
            return None
    return cv2.imread(path, flag)
