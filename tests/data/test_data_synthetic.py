"""The synthetic shapes dataset: deterministic, YOLO layout, labels that match the drawn shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detforge.cli import main
from detforge.data import load_dataset_spec, load_split
from detforge.data import synthetic as syn
from detforge.errors import DataError


@pytest.mark.parametrize("shape", syn.SHAPES)
def test_every_shape_fills_its_label_box(shape: str) -> None:
    rng = np.random.default_rng(len(shape))
    for _ in range(5):
        w, h = rng.uniform(12, 60, 2)
        x1, y1 = rng.uniform(0, 100 - w), rng.uniform(0, 100 - h)
        box = np.array([x1, y1, x1 + w, y1 + h])
        image = np.zeros((100, 100, 3), np.uint8)
        syn._draw_shape(image, shape, box, (255, 255, 255))
        ys, xs = np.nonzero(image[..., 0] >= 128)
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=1.0)


def test_synth_writes_a_clean_yolo_dataset_the_same_way_twice(tmp_path: Path) -> None:
    a = syn.synthesize(tmp_path / "a", images=10, classes=4, imgsz=96, seed=3)
    b = syn.synthesize(tmp_path / "b", images=10, classes=4, imgsz=96, seed=3)
    spec = load_dataset_spec(a)
    assert spec.names == ["circle", "triangle", "square", "cross"] and list(spec.splits) == ["train", "val"]
    train, val = load_split(spec, "train"), load_split(spec, "val")
    assert (len(train.store), len(val.store)) == (8, 2)
    assert len(train.problems) == 0 and len(val.problems) == 0
    per_image = np.diff(train.store.offsets)
    assert per_image.min() >= 1 and per_image.max() <= syn.MAX_OBJECTS
    sides = (train.store.boxes[:, 2:] - train.store.boxes[:, :2]).max(1) / 96
    assert sides.min() > 0.08 and sides.max() < 0.5
    for rel in ["images/train/train_00000.jpg", "labels/val/val_00009.txt"]:
        assert (a.parent / rel).read_bytes() == (b.parent / rel).read_bytes()


def test_synth_test_split_is_held_out_after_val(tmp_path: Path) -> None:
    spec = load_dataset_spec(syn.synthesize(tmp_path / "s", images=10, classes=2, imgsz=64, val_fraction=0.2,
                                            test_fraction=0.3))
    assert list(spec.splits) == ["train", "val", "test"]
    assert [len(load_split(spec, split).store) for split in spec.splits] == [5, 2, 3]
    assert sorted(p.name for p in (tmp_path / "s" / "images" / "test").iterdir()) == [
        "test_00007.jpg", "test_00008.jpg", "test_00009.jpg"]
    with pytest.raises(DataError, match="leaves no training image"):
        syn.synthesize(tmp_path / "t", images=4, val_fraction=0.5, test_fraction=0.5)


def test_synth_command_and_its_errors(tmp_path: Path, capsys) -> None:
    out = tmp_path / "shapes"
    assert main(["data", "synth", str(out), "--images", "4", "--classes", "2", "--imgsz", "64"]) == 0
    assert "wrote 4 images of 2 classes" in capsys.readouterr().out
    assert len(list((out / "images").rglob("*.jpg"))) == 4
    assert main(["data", "synth", str(out), "--images", "4"]) == 2  # refuses to write into a full folder
    assert main(["data", "synth", str(tmp_path / "x"), "--classes", "9"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--classes 9" in err


def test_synth_refuses_a_folder_with_a_planted_symlink(tmp_path: Path, capsys) -> None:
    """A link left in the output folder (e.g. images -> somewhere else) could redirect the writes: the folder
    counts as not empty and nothing is written, through the link or beside it."""
    outside, out = tmp_path / "outside", tmp_path / "shapes"
    outside.mkdir()
    out.mkdir()
    (out / "images").symlink_to(outside, target_is_directory=True)
    assert main(["data", "synth", str(out), "--images", "4", "--imgsz", "64"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert not any(outside.iterdir()) and [p.name for p in out.iterdir()] == ["images"]
