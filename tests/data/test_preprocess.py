"""`preprocess="reference"` reproduces Ultralytics' validation input tensor exactly; detforge's differs.

The fixture: large textured JPEGs at extreme aspect ratios (3:1, 1:3, 4:3), validated at 160 px in one
rectangular batch each, where every difference shows: detforge decodes these at 1/8 scale, rounds
the resized size, and pads the batch to the next stride multiple; the reference decodes in full,
rounds the size up and adds half a stride (data/preprocess.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import write_yolo, yolo_line

from detforge.data import build_dataloader, load_dataset_spec
from detforge.data.preprocess import PREPROCESS, Preprocess, get_preprocess
from detforge.errors import ConfigError

SIZES = [(1213, 401), (397, 1190), (1021, 767)]  # (w, h)
IMGSZ = 160


def _photo(w: int, h: int, seed: int) -> np.ndarray:
    """Fine texture plus a few shapes, so decode and interpolation choices change pixels."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    xx = np.arange(w)[None, :].repeat(h, 0)
    image[..., 0] = (image[..., 0] // 2 + 64 * (1 + np.sin(xx / 7.0))).astype(np.uint8)
    return image


@pytest.fixture
def data(tmp_path: Path) -> Path:
    items = [(f"im{i}.jpg", _photo(w, h, i), yolo_line(0, (w * 0.2, h * 0.3, w * 0.6, h * 0.8), w, h))
             for i, (w, h) in enumerate(SIZES)]
    return write_yolo(tmp_path, {"val": items}, names=["thing"])


def _ours(data: Path, preprocess: str) -> list[torch.Tensor]:
    loader = build_dataloader(load_dataset_spec(data), "val", imgsz=IMGSZ, batch_size=1, augment=False, rect=True,
                              shuffle=False, workers=0, progress=False, preprocess=preprocess)
    return [batch["img"][0] for batch in loader]


def _reference(data: Path) -> list[torch.Tensor]:
    pytest.importorskip("ultralytics")
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset

    cfg = get_cfg(overrides={"imgsz": IMGSZ, "rect": True, "task": "detect"})
    dataset = build_yolo_dataset(cfg, str(data.parent / "images" / "val"), 1,
                                 {"names": {0: "thing"}, "nc": 1, "channels": 3}, mode="val", rect=True, stride=32)
    return [dataset[i]["img"] for i in range(len(dataset))]


def test_reference_preset_reproduces_ultralytics_validation_input_exactly(data: Path) -> None:
    ours, theirs = _ours(data, "reference"), _reference(data)
    assert [tuple(t.shape) for t in ours] == [tuple(t.shape) for t in theirs]
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_detforge_preset_differs_in_size_and_pixels(data: Path) -> None:
    ours, theirs = _ours(data, "detforge"), _reference(data)
    shapes = [tuple(t.shape) for t in ours]
    assert shapes != [tuple(t.shape) for t in theirs]  # half a stride less padding on the short side
    assert (3, 64, 160) in shapes  # a 3:1 image at 160: 53 px high, next multiple of 32


def test_presets_and_rules() -> None:
    assert get_preprocess(None) is PREPROCESS["detforge"]
    custom = Preprocess("mine", reduced_decode=False)
    assert get_preprocess(custom) is custom
    with pytest.raises(ConfigError, match="reference"):
        get_preprocess("ultralytics")
    ref, ours = PREPROCESS["reference"], PREPROCESS["detforge"]
    assert ref.resized_shape(401, 1213, IMGSZ / 1213, IMGSZ) == (53, 160)  # ceil(52.9)
    assert ours.resized_shape(401, 1213, IMGSZ / 1213, IMGSZ) == (53, 160)
    assert ref.resized_shape(667, 2000, 0.16, 320) == (107, 320)
    assert ours.resized_shape(667, 2000, 0.16, 320) == (107, 320)
    assert ref.resized_shape(101, 1000, 0.16, 160) == (17, 160)
    assert ours.resized_shape(101, 1000, 0.16, 160) == (16, 160)
    assert ref.rect_side(1 / 3, 640, 32) == 256 and ours.rect_side(1 / 3, 640, 32) == 224
