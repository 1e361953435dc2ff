"""Readers and writers of the three formats, on small files written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import rect_image, write_yolo, yolo_line

from detforge.data import load_dataset_spec, load_split
from detforge.data.formats import format_module
from detforge.errors import DataError


def _records(spec, split):
    return {Path(r.path).stem: r for r in load_split(spec, split).store}


def test_yolo_reads_boxes_as_pixels_with_names_dict_and_txt_split(tmp_path: Path) -> None:
    image = rect_image(100, 50, (10, 5, 30, 25))
    lines = yolo_line(1, (10, 5, 30, 25), 100, 50) + "0 0.5 0.5 0.2 0.4 \n\n"
    write_yolo(tmp_path, {"train": [("a.jpg", image, lines)], "val": [("b.png", image, "")]},
               names={0: "cat", 1: "dog"})
    (tmp_path / "val.txt").write_text("./images/val/b.png\n")
    data = (tmp_path / "data.yaml").read_text().replace("val: images/val", "val: val.txt")
    (tmp_path / "data.yaml").write_text(data)
    spec = load_dataset_spec(tmp_path)  # the folder holding data.yaml is enough
    assert spec.format == "yolo" and spec.names == ["cat", "dog"] and list(spec.splits) == ["train", "val"]
    rec = _records(spec, "train")["a"]
    assert (rec.width, rec.height) == (100, 50)
    assert rec.boxes.dtype == np.float32 and rec.classes.dtype == np.int64
    np.testing.assert_allclose(rec.boxes, [[10, 5, 30, 25], [40, 15, 60, 35]], atol=1e-3)
    assert rec.classes.tolist() == [1, 0]
    val = _records(spec, "val")["b"]
    assert val.boxes.shape == (0, 4)


def test_yolo_polygon_line_becomes_its_bounding_box(tmp_path: Path) -> None:
    write_yolo(tmp_path, {"train": [("a.png", rect_image(100, 100, (0, 0, 1, 1)), "0 0.1 0.2 0.5 0.3 0.3 0.6\n")]})
    (rec,) = load_split(load_dataset_spec(tmp_path / "data.yaml"), "train").store
    np.testing.assert_allclose(rec.boxes, [[10, 20, 50, 60]], atol=1e-3)


def test_yolo_spec_errors_are_one_line_data_errors(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: [a\n")
    with pytest.raises(DataError, match="YAML") as err:
        load_dataset_spec(tmp_path / "data.yaml")
    assert "\n" not in str(err.value)
    (tmp_path / "data.yaml").write_text("train: images/missing\nnames: [a]\n")
    spec = load_dataset_spec(tmp_path / "data.yaml")
    with pytest.raises(DataError, match="does not exist"):
        load_split(spec, "train")
    with pytest.raises(DataError, match="no 'val' split"):
        load_split(spec, "val")
    (tmp_path / "data.yaml").write_text("train: images/train\n")
    with pytest.raises(DataError, match="names"):
        load_dataset_spec(tmp_path / "data.yaml")
    with pytest.raises(DataError, match="not found"):
        load_dataset_spec(tmp_path / "nothing")


def _coco(tmp_path: Path) -> Path:
    folder = tmp_path / "images" / "val"
    folder.mkdir(parents=True)
    for name in ("x.jpg", "y.jpg"):
        (folder / name).write_bytes(_jpeg(rect_image(64, 48, (8, 8, 24, 20))))
    data = {
        "images": [{"id": 7, "file_name": "x.jpg", "width": 64, "height": 48},
                   {"id": 9, "file_name": "y.jpg", "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 5, "bbox": [8, 8, 16, 12], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [30, 10, 10, 10], "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 3, "bbox": [0, 0, 64, 48], "iscrowd": 1},
        ],
        "categories": [{"id": 5, "name": "late"}, {"id": 3, "name": "early"}],
    }
    ann = tmp_path / "annotations" / "instances_val.json"
    ann.parent.mkdir()
    ann.write_text(json.dumps(data))
    return ann


def _jpeg(image: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".jpg", image)[1].tobytes()


def test_coco_maps_category_ids_in_id_order_and_finds_image_folder(tmp_path: Path) -> None:
    spec = load_dataset_spec(_coco(tmp_path))
    assert spec.format == "coco" and spec.names == ["early", "late"] and list(spec.splits) == ["val"]
    labels = load_split(spec, "val")
    recs = {Path(r.path).name: r for r in labels.store}
    np.testing.assert_allclose(recs["x.jpg"].boxes, [[8, 8, 24, 20], [30, 10, 40, 20]])
    assert recs["x.jpg"].classes.tolist() == [1, 0]
    assert len(recs["y.jpg"].classes) == 0
    crowd = [p for p in labels.problems if p.kind == "crowd annotation"]
    assert len(crowd) == 1 and "annotations[2]" in crowd[0].file
    assert load_dataset_spec(tmp_path).format == "coco"  # a folder with annotations/instances_*.json


def test_coco_sibling_jsons_become_splits_and_bad_json_is_a_data_error(tmp_path: Path) -> None:
    ann = _coco(tmp_path)
    (ann.parent / "instances_train.json").write_text(ann.read_text())
    assert list(load_dataset_spec(ann).splits) == ["train", "val"]
    (ann.parent / "broken.json").write_text("{")
    with pytest.raises(DataError, match="JSON"):
        load_dataset_spec(ann.parent / "broken.json")


def _voc(tmp_path: Path, xml_extra: str = "") -> Path:
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "JPEGImages" / "p.jpg").write_bytes(_jpeg(rect_image(80, 60, (10, 10, 40, 30))))
    (root / "Annotations" / "p.xml").write_text(f"""<annotation><filename>p.jpg</filename>
<size><width>80</width><height>60</height><depth>3</depth></size>
<object><name>dog</name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>40</xmax><ymax>30</ymax></bndbox></object>
<object><name>cat</name><bndbox><xmin>70.5</xmin><ymin>50</ymin><xmax>60</xmax><ymax>40</ymax></bndbox></object>
{xml_extra}</annotation>""")
    return root


def test_voc_reads_edges_as_given_sorted_names_and_fixes_swapped_corners(tmp_path: Path) -> None:
    spec = load_dataset_spec(_voc(tmp_path))
    assert spec.format == "voc" and spec.names == ["cat", "dog"] and list(spec.splits) == ["train"]
    labels = load_split(spec, "train")
    (rec,) = labels.store
    np.testing.assert_allclose(rec.boxes, [[10, 10, 40, 30], [60, 40, 70.5, 50]])
    assert rec.classes.tolist() == [1, 0]
    assert [p.kind for p in labels.problems] == ["swapped corners"]


def test_voc_broken_xml_skips_that_image(tmp_path: Path) -> None:
    root = _voc(tmp_path)
    (root / "Annotations" / "q.xml").write_text("<annotation><object>")
    labels = load_split(load_dataset_spec(root), "train")
    assert len(labels.store) == 1
    assert [(p.kind, p.action) for p in labels.problems if p.file.endswith("q.xml")] == [("malformed label", "skipped")]


@pytest.mark.parametrize("fmt", ["yolo", "coco", "voc"])
def test_every_writer_round_trips_through_its_reader(tmp_path: Path, fmt: str) -> None:
    src = write_yolo(tmp_path / "src", {
        "train": [("a.jpg", rect_image(90, 60, (0, 0, 9, 9)),
                   yolo_line(2, (10, 5, 40, 35), 90, 60) + yolo_line(0, (50.5, 20, 89, 59.5), 90, 60)),
                  ("b.jpg", rect_image(50, 70, (0, 0, 9, 9)), "")],
        "val": [("a.jpg", rect_image(64, 64, (0, 0, 9, 9)), yolo_line(1, (1, 2, 63, 64), 64, 64))],
    }, names=["x", "y", "z"])
    spec = load_dataset_spec(src)
    before = {s: list(load_split(spec, s).store) for s in spec.splits}
    written = format_module(fmt).write(tmp_path / fmt, spec.names, before)
    back = load_dataset_spec(written)
    assert back.format == fmt and back.names == ["x", "y", "z"] and set(back.splits) == {"train", "val"}
    for split, records in before.items():
        after = sorted(load_split(back, split).store, key=lambda r: (r.width, r.height))
        records = sorted(records, key=lambda r: (r.width, r.height))
        assert len(after) == len(records)
        for old, new in zip(records, after):
            assert (old.width, old.height) == (new.width, new.height)
            np.testing.assert_allclose(new.boxes, old.boxes, atol=0.01)
            assert new.classes.tolist() == old.classes.tolist()
