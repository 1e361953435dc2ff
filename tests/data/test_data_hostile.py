"""Hostile datasets: bounded declarations, odd numbers and names end as reported problems or one-line errors
(issue 8, items 5 and 6)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from data_helpers import write_yolo

from detforge.cli import main
from detforge.data.images import read_image
from detforge.data.scan import load_split
from detforge.data.spec import load_dataset_spec
from detforge.errors import DataError
from detforge.infer.annotate import save_rgb
from detforge.limits import MAX_CLASSES, MAX_LABELS_PER_IMAGE

IMAGE = np.zeros((16, 16, 3), np.uint8)


def check(data: Path, capsys) -> tuple[int, str, str]:
    code = main(["data", "check", str(data), "--no-cache"])
    out, err = capsys.readouterr()
    return code, out, err


def test_class_ids_beyond_int64_are_reported_not_overflowing(tmp_path, capsys):
    lines = "9223372036854775808 .5 .5 .5 .5\n1e300 .5 .5 .2 .2\n-9223372036854775809 .5 .5 .1 .1\ninf .5 .5 .5 .5\n"
    data = write_yolo(tmp_path, {"train": [("a.png", IMAGE, lines + "0 .5 .5 .5 .5\n")]})
    code, out, _ = check(data, capsys)
    assert code == 1 and "class 9223372036854775808 not in names" in out and "non-finite" in out


def test_non_utf8_image_names_are_loaded_and_written(tmp_path, capsys):
    name = os.fsdecode(b"\xff\xfe.png")
    png = cv2.imencode(".png", IMAGE + 255)[1].tobytes()  # cv2.imwrite itself would crash on this name
    data = write_yolo(tmp_path, {"train": [(name, png, "0 .5 .5 .5 .5\n"), ("b.png", IMAGE, "0 .5 .5 .5 .5\n")]})
    code, out, _ = check(data, capsys)
    assert code == 0 and " 2 " in out
    labels = load_split(load_dataset_spec(data), "train", use_cache=True)
    assert name in [Path(p).name for p in labels.store.paths]
    assert load_split(load_dataset_spec(data), "train").from_cache
    assert read_image(str(data.parent / "images" / "train" / name)).mean() == 255  # OpenCV would crash the process
    assert save_rgb(IMAGE, tmp_path / "out" / name).stat().st_size > 0


def test_label_files_are_bounded(tmp_path, capsys):
    data = write_yolo(tmp_path, {"train": [("a.png", IMAGE, "0 .5 .5 .5 .5\n" * (MAX_LABELS_PER_IMAGE + 5)),
                                           ("b.png", IMAGE, None)]})
    with open(data.parent / "labels" / "train" / "b.txt", "wb") as fh:
        fh.truncate(9 * 2**20)  # 9 MiB of zeros, over the 8 MiB limit
    _, out, _ = check(data, capsys)
    assert f"over {MAX_LABELS_PER_IMAGE:,} labels in one file" in out
    assert "b.txt: malformed label: unreadable label file (larger than the 8,388,608-byte limit)" in out


def test_a_fifo_as_label_file_does_not_hang(tmp_path, capsys):
    data = write_yolo(tmp_path, {"train": [("a.png", IMAGE, None)]})
    (data.parent / "labels" / "train").mkdir(parents=True)
    os.mkfifo(data.parent / "labels" / "train" / "a.txt")
    start = time.monotonic()
    _, out, _ = check(data, capsys)
    assert time.monotonic() - start < 10 and "not a regular file" in out


@pytest.mark.parametrize(("extra", "message"), [
    ({"nc": 10**12, "names": None},
     f"nc = 1000000000000; expected a whole number of classes from 1 to {MAX_CLASSES:,}"),
    ({"nc": -3}, "nc = -3"),
    ({"names": [str(i) for i in range(MAX_CLASSES + 1)]}, "over the 10,000-class limit"),
    ({"names": ["x" * 5000]}, "a class name is over 1,000 characters"),
    ({"names": {0: "a", 0.5: "b"}}, "names keys must be integers"),
    ({"names": {0: "a", 1e300: "b"}}, "names keys must be 0..1 without gaps"),
])
def test_class_declarations_are_bounded(tmp_path, capsys, extra, message):
    data = write_yolo(tmp_path, {"train": [("a.png", IMAGE, "0 .5 .5 .5 .5\n")]}, extra=extra)
    code, _, err = check(data, capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_yaml_alias_bomb_in_names_is_refused_quickly(tmp_path, capsys):
    write_yolo(tmp_path, {"train": [("a.png", IMAGE, "0 .5 .5 .5 .5\n")]})
    lines = ["train: images/train", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    (tmp_path / "data.yaml").write_text("\n".join(lines + ["names: *a9"]) + "\n")
    start = time.monotonic()
    code, _, err = check(tmp_path / "data.yaml", capsys)
    assert time.monotonic() - start < 5 and code == 2 and "alias bomb" in err and err.count("\n") == 1


def test_yaml_nested_too_deeply_or_recursive_is_one_line(tmp_path, capsys):
    for text, message in (("names: " + "[" * 5000 + "]" * 5000, "nested too deeply"),
                          ("names: &a [*a]\ntrain: x", "recursive")):
        (tmp_path / "data.yaml").write_text(text)
        with pytest.raises(DataError, match=message):
            load_dataset_spec(tmp_path / "data.yaml")


def coco_file(tmp_path: Path, images: list, annotations: list, categories: list | None = None) -> Path:
    import json

    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    cv2.imwrite(str(folder / "a.png"), IMAGE)
    path = tmp_path / "instances_train.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories or [{"id": 1, "name": "a"}]}).replace('"INF"', "Infinity"))
    return path


def test_coco_infinite_huge_or_odd_numbers_are_reported(tmp_path, capsys):
    image = {"id": 1, "file_name": "a.png", "width": 16, "height": 16}
    anns = [{"image_id": 1, "category_id": "INF", "bbox": [1, 1, 4, 4]},
            {"image_id": 1, "category_id": 2**64, "bbox": [1, 1, 4, 4]},
            {"image_id": 1, "category_id": 1, "bbox": [1, "INF", 4, 4]},
            {"image_id": 1, "category_id": 1, "bbox": [1, 1, float("nan"), 4]},
            7, {"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}]
    path = coco_file(tmp_path, [image, {"id": "INF", "file_name": 3, "width": 1, "height": 1}, "x"], anns)
    code, out, err = check(path, capsys)
    assert code == 1 and "Traceback" not in err
    assert "category_id 18446744073709551616 is not in 'categories'" in out and "is not finite" in out
    assert "1 problem" not in out and " 1 " in out  # the one good box is kept


@pytest.mark.parametrize(("text", "message"), [
    ("[" * 100_000, "cannot be read as JSON"),
    ('{"images": [], "annotations": 5, "categories": [{"id": 1, "name": "a"}]}', "'annotations' is not a list"),
    ('{"images": [], "categories": [{"id": Infinity, "name": "a"}]}', "integer 'id'"),
])
def test_coco_file_level_problems_are_one_line(tmp_path, capsys, text, message):
    (tmp_path / "instances_train.json").write_text(text)
    code, _, err = check(tmp_path / "instances_train.json", capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_voc_bombs_fifos_and_odd_sizes_are_reported(tmp_path, capsys):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    cv2.imwrite(str(tmp_path / "JPEGImages" / "a.png"), IMAGE)
    cv2.imwrite(str(tmp_path / "JPEGImages" / "b.png"), IMAGE)
    (tmp_path / "classes.txt").write_text("a\n")
    entities = '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefgh", "bcdefghi")) + "]>"
    (tmp_path / "Annotations" / "a.xml").write_text(entities + "<annotation><filename>&i;</filename></annotation>")
    (tmp_path / "Annotations" / "b.xml").write_text(
        "<annotation><filename>b.png</filename><size><width>1e999</width><height>16</height></size><object><name>a"
        "</name><bndbox><xmin>1</xmin><ymin>nan</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></object></annotation>")
    os.mkfifo(tmp_path / "Annotations" / "c.xml")
    start = time.monotonic()
    _, out, err = check(tmp_path, capsys)
    assert time.monotonic() - start < 10 and "Traceback" not in err
    assert "a.xml: malformed label: not valid XML" in out and "c.xml: malformed label: not valid XML" in out
    assert "is not finite" in out


def test_duplicate_class_names_are_one_line(tmp_path, capsys):
    data = write_yolo(tmp_path, {"train": [("a.png", IMAGE, "0 .5 .5 .5 .5\n")]}, names=["{}", "x", "{}"])
    code, _, err = check(data, capsys)
    assert code == 2 and "class name '{}' appears twice" in err and err.count("\n") == 1


def test_a_root_path_too_long_to_look_at_uses_the_user_cache(tmp_path, capsys):
    data = write_yolo(tmp_path, {"train": [("a.png", IMAGE, "0 .5 .5 .5 .5\n")]}, extra={"path": "x" * 300})
    code, _, err = check(data, capsys)
    assert "Traceback" not in err and err.count("\n") <= 1 and code == 2
