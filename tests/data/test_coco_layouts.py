"""Real COCO layouts: year-named splits (train2017/val2017), a data.yaml that names COCO jsons, and
errors that say what is wrong with a path that exists but is of the wrong kind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from data_helpers import rect_image, write_yolo, yolo_line

from detforge.data import build_dataloader, load_dataset_spec
from detforge.data.formats import coco
from detforge.data.scan import load_split
from detforge.errors import DataError


def _coco2017(tmp_path: Path, splits=("train2017", "val2017")) -> Path:
    """`annotations/instances_<split>.json` + `images/<split>/`, as COCO ships it; returns the annotations folder."""
    src = write_yolo(tmp_path / "src", {
        "train": [("a.jpg", rect_image(90, 60, (10, 5, 40, 35)), yolo_line(1, (10, 5, 40, 35), 90, 60))],
        "val": [("b.jpg", rect_image(64, 64, (1, 2, 30, 40)), yolo_line(0, (1, 2, 30, 40), 64, 64))],
    }, names=["x", "y"])
    spec = load_dataset_spec(src)
    records = {s: list(load_split(spec, s).store) for s in spec.splits}
    coco.write(tmp_path / "coco", spec.names, {name: records["val" if "val" in name else "train"] for name in splits})
    return tmp_path / "coco" / "annotations"


def test_year_named_splits_answer_to_train_and_val(tmp_path):
    ann = _coco2017(tmp_path)
    spec = load_dataset_spec(ann / "instances_train2017.json")
    assert list(spec.splits) == ["train2017", "val2017"]
    assert spec.resolve_split("train") == "train2017" and spec.resolve_split("val") == "val2017"
    assert [Path(r.path).name for r in load_split(spec, "train").store] == ["a.jpg"]
    assert [Path(r.path).name for r in load_split(spec, "val").store] == ["b.jpg"]
    assert load_dataset_spec(ann.parent).resolve_split("val") == "val2017"  # the dataset folder works too
    loader = build_dataloader(str(ann / "instances_train2017.json"), "train", imgsz=64, batch_size=1, augment=False,
                              workers=0, progress=False)  # what `train --data .../instances_train2017.json` builds
    assert len(loader.dataset) == 1 and int(next(iter(loader))["cls"][0]) == 1
    with pytest.raises(DataError, match=r"no 'test' split \(have: train2017, val2017\)"):
        spec.require_split("test")


def test_two_candidate_years_ask_for_a_choice(tmp_path):
    ann = _coco2017(tmp_path, ("train2014", "train2017", "val2017"))
    with pytest.raises(DataError, match="several that could be it \\(train2014, train2017\\)"):
        load_dataset_spec(ann / "instances_val2017.json").require_split("train")


def test_data_yaml_naming_coco_jsons_is_a_coco_dataset(tmp_path):
    ann = _coco2017(tmp_path)
    data = tmp_path / "coco" / "data.yaml"
    data.write_text(yaml.safe_dump({"path": ".", "train": "annotations/instances_train2017.json",
                                    "val": "annotations/instances_val2017.json"}))
    spec = load_dataset_spec(data)
    assert spec.format == "coco" and list(spec.splits) == ["train", "val"] and spec.names == ["x", "y"]
    assert spec.splits["train"] == [(ann / "instances_train2017.json").resolve()]
    assert [Path(r.path).name for r in load_split(spec, "train").store] == ["a.jpg"]

    data.write_text(yaml.safe_dump({"train": "annotations/instances_train2017.json", "val": "images/val2017"}))
    with pytest.raises(DataError, match="train name COCO jsons but val do not"):
        load_dataset_spec(data)


def test_existing_path_of_the_wrong_kind_is_named_as_such(tmp_path):
    data = write_yolo(tmp_path, {"train": [("a.jpg", rect_image(32, 32, (0, 0, 9, 9)), "")]},
                      extra={"train": "notes.csv"})
    (tmp_path / "notes.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="notes.csv exists but is not an image folder, a .txt list of images"):
        load_split(load_dataset_spec(data), "train")
