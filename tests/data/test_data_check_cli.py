"""`detforge data check` and `convert` end to end, on BCCD and on files written here."""

from __future__ import annotations

import json
from pathlib import Path

from data_helpers import boxes_dataset

from detforge.cli import main

BCCD_COUNTS = {  # ../shared/datasets/bccd/README.md
    "train": (205, {"RBC": 2381, "WBC": 214, "Platelets": 209}),
    "val": (87, {"RBC": 967, "WBC": 87, "Platelets": 83}),
    "test": (72, {"RBC": 805, "WBC": 71, "Platelets": 69}),
}


def test_check_bccd_reports_the_readme_counts(bccd: Path, capsys) -> None:
    assert main(["data", "check", str(bccd), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "yolo" and report["names"] == ["RBC", "WBC", "Platelets"]
    for split, (images, per_class) in BCCD_COUNTS.items():
        stats = report["splits"][split]
        assert stats["images"] == images and stats["per_class"] == per_class
        assert stats["boxes"] == sum(per_class.values()) and stats["without_boxes"] == 0
    assert report["problems"] == []
    assert main(["data", "check", str(bccd / "annotations" / "instances_train.json")]) == 0  # the COCO copy
    out = capsys.readouterr().out
    assert "train" in out and " 205 " in out and "2381" in out and "no problems found" in out


def test_convert_then_check_gives_the_same_counts(tmp_path: Path, capsys) -> None:
    src = boxes_dataset(tmp_path / "src", count=5, split_names=("train", "val"))
    assert main(["data", "convert", str(src), str(tmp_path / "coco"), "--to", "coco"]) == 0
    assert main(["data", "convert", str(tmp_path / "coco"), str(tmp_path / "voc"), "--to", "voc"]) == 0
    capsys.readouterr()
    counts = []
    for path in (src, tmp_path / "coco", tmp_path / "voc"):
        assert main(["data", "check", str(path), "--json"]) == 0
        splits = json.loads(capsys.readouterr().out)["splits"]
        counts.append({s: (v["images"], v["boxes"], v["per_class"]) for s, v in splits.items()})
    assert counts[0] == counts[1] == counts[2]
    assert main(["data", "convert", str(src), str(tmp_path / "voc"), "--to", "yolo"]) == 2  # not empty
