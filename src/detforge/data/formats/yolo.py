"""YOLO layout: `data.yaml` + `images/<split>/*.jpg` + `labels/<split>/*.txt`.

A label line is `class cx cy w h`, normalised to 0..1 of the image size; a longer line
`class x1 y1 x2 y2 ...` (a polygon) is read as its bounding box. An image without a label
file is kept as an image without objects (and reported).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import yaml

from detforge.data.formats import UniqueNames, copy_image
from detforge.data.images import is_image
from detforge.data.problems import (
    DROPPED,
    FIXED,
    MALFORMED,
    MISSING_LABELS,
    NAMES_MISMATCH,
    UNKNOWN_CLASS,
    ProblemReport,
)
from detforge.data.records import LabeledImage, RawLabels
from detforge.data.spec import DatasetSpec
from detforge.errors import DataError
from detforge.fsutil import read_limited
from detforge.limits import (
    MAX_CLASSES,
    MAX_LABEL_FILE_BYTES,
    MAX_LABELS_PER_IMAGE,
    MAX_NAME_CHARS,
    check_classes,
    read_yaml,
    short,
)

SPLIT_KEYS = ("train", "val", "test")


def read_spec(path: Path) -> DatasetSpec:
    """Parse a data.yaml: `path` (root, relative to the yaml), `train/val/test`, `names`, `nc`."""
    path = path.resolve()
    data = read_yaml(path, DataError)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with train/val/names keys; see docs/data.md")
    root = Path(str(data.get("path") or "."))
    root = (root if root.is_absolute() else path.parent / root).resolve()
    report = ProblemReport(root=root)
    names = _names(path, data, report)
    splits = {}
    for key in SPLIT_KEYS:
        value = data.get(key)
        if value:
            entries = value if isinstance(value, list) else [value]
            splits[key] = [p if p.is_absolute() else root / p for p in (Path(str(e)) for e in entries)]
    if not splits:
        raise DataError(f"{path}: no train/val/test entries; add e.g. 'train: images/train'")
    return DatasetSpec("yolo", path, root, names, splits, report)


def _names(path: Path, data: dict, report: ProblemReport) -> list[str]:
    names = data.get("names")
    nc = data.get("nc")
    if nc is not None:
        check_classes(nc, str(path), "nc", DataError)
    if isinstance(names, (dict, list)) and len(names) > MAX_CLASSES:
        raise DataError(f"{path}: {len(names):,} names, over the {MAX_CLASSES:,}-class limit; check the file")
    if isinstance(names, dict):
        try:
            by_index = {_index(k): v for k, v in names.items()}
        except (TypeError, ValueError, OverflowError) as err:
            raise DataError(f"{path}: names keys must be integers 0..n-1") from err
        keys = sorted(by_index)
        if keys != list(range(len(names))):
            raise DataError(f"{path}: names keys must be 0..{len(names) - 1} without gaps, got {short(keys, 80)}")
        names = [by_index[k] for k in keys]
    elif names is None and nc is not None:
        names = [f"class{i}" for i in range(nc)]
        report.add(path, NAMES_MISMATCH, FIXED, f"no names; using class0..class{nc - 1}")
    elif not isinstance(names, list):
        raise DataError(f"{path}: 'names' is missing or not a list/mapping; add 'names: [cat, dog]'")
    names = [str(n) for n in names]
    if not names:
        raise DataError(f"{path}: 'names' is empty; list at least one class")
    if max(map(len, names)) > MAX_NAME_CHARS:
        raise DataError(f"{path}: a class name is over {MAX_NAME_CHARS:,} characters; shorten it")
    if nc is not None and nc != len(names):
        report.add(path, NAMES_MISMATCH, FIXED, f"nc={nc} but {len(names)} names; using the {len(names)} names")
    return names


def _index(key: object) -> int:
    """A names key: 3 or "3" (not 3.5, not True)."""
    if isinstance(key, bool) or (isinstance(key, float) and not key.is_integer()):
        raise ValueError(key)
    return int(key)


def split_images(spec: DatasetSpec, split: str) -> list[Path]:
    """Every image of a split: folders are searched recursively, .txt files list one image per line."""
    images: list[Path] = []
    for source in spec.require_split(split):
        try:
            kind = source.is_dir()
        except OSError as err:  # e.g. a name too long to look at
            raise DataError(f"{spec.path}: {split}: {short(str(source), 80)} cannot be used ({err.strerror}); "
                            f"fix the path in {spec.path.name}") from None
        if kind:
            images += [p for p in source.rglob("*") if is_image(p) and p.is_file()]
        elif source.is_file() and source.suffix.lower() == ".txt":
            for line in source.read_text(encoding="utf-8-sig").splitlines():
                line = line.strip()
                if line:
                    p = Path(line)
                    images.append(p if p.is_absolute() else (source.parent if line.startswith("./") else spec.root) / p)
        elif source.is_file() and is_image(source):
            images.append(source)
        elif source.exists():
            raise DataError(f"{spec.path}: {split}: {source} exists but is not an image folder, a .txt list of "
                            f"images or an image; fix the path in {spec.path.name} (see docs/data.md)")
        else:
            raise DataError(f"{spec.path}: {split}: {source} does not exist; fix the path in {spec.path.name}")
    return sorted(set(images))


def label_path(image: Path) -> Path:
    """`.../images/<split>/a.jpg` -> `.../labels/<split>/a.txt` (same folder if there is no `images`)."""
    text = str(image)
    marker = f"{os.sep}images{os.sep}"
    if marker in text:
        head, _, tail = text.rpartition(marker)
        return Path(head + f"{os.sep}labels{os.sep}" + tail).with_suffix(".txt")
    return image.with_suffix(".txt")


def split_inputs(spec: DatasetSpec, split: str) -> list[Path]:
    images = split_images(spec, split)
    return images + [label_path(p) for p in images]


def read_split(spec: DatasetSpec, split: str, report: ProblemReport) -> list[RawLabels]:
    return [_read_label_file(image, label_path(image), report) for image in split_images(spec, split)]


def _read_label_file(image: Path, labels: Path, report: ProblemReport) -> RawLabels:
    boxes: list[list[float]] = []
    classes: list[int] = []
    origins: list[str] = []
    try:
        text = read_limited(labels, MAX_LABEL_FILE_BYTES).decode("utf-8-sig")
    except FileNotFoundError:
        report.add(labels, MISSING_LABELS, FIXED, f"no label file for {image.name}; used as an image without objects")
        text = ""
    except (OSError, UnicodeDecodeError) as err:
        report.add(labels, MALFORMED, DROPPED, f"unreadable label file ({_reason(err)}); no boxes used")
        text = ""
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(classes) >= MAX_LABELS_PER_IMAGE:
            report.add(f"{labels}:{number}", MALFORMED, DROPPED,
                       f"over {MAX_LABELS_PER_IMAGE:,} labels in one file; this line and the rest left out")
            break
        where = f"{labels}:{number}"
        parsed = _parse_line(fields)
        if isinstance(parsed, str):
            report.add(where, MALFORMED, DROPPED, f"{parsed}: {line.strip()[:60]!r}")
            continue
        if not 0 <= parsed[0] < MAX_CLASSES:  # reported here: numpy cannot even hold ids of 2**63 and more
            report.add(where, UNKNOWN_CLASS, DROPPED, f"class {short(parsed[0], 24)} not in names")
            continue
        classes.append(parsed[0])
        boxes.append(parsed[1])
        origins.append(where)
    return RawLabels(
        image=str(image),
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        classes=np.array(classes, dtype=np.int64),
        normalized=True,
        origins=origins,
    )


def _reason(err: Exception) -> str:
    return err.strerror if isinstance(err, OSError) and err.strerror else err.__class__.__name__


def _parse_line(fields: list[str]) -> tuple[int, list[float]] | str:
    """(class, normalised xyxy) from one line, or the reason it is malformed."""
    try:
        values = [float(v) for v in fields]
    except ValueError:
        return "not numbers"
    if not all(math.isfinite(v) for v in values):
        return "non-finite value"
    cls = values[0]
    if cls != int(cls):
        return "class id is not an integer"
    coords = values[1:]
    if len(coords) == 4:
        cx, cy, w, h = coords
        if w < 0 or h < 0:
            return "negative width or height"
        return int(cls), [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    if len(coords) >= 6 and len(coords) % 2 == 0:
        xs, ys = coords[0::2], coords[1::2]
        return int(cls), [min(xs), min(ys), max(xs), max(ys)]
    return f"expected 5 values (class cx cy w h), got {len(values)}"


def write(out: Path, names: list[str], splits: dict[str, list[LabeledImage]]) -> Path:
    """Write images, normalised label files and a data.yaml under `out`; returns the yaml path."""
    for split, records in splits.items():
        unique = UniqueNames()
        for rec in records:
            name = unique(rec.path)
            copy_image(rec.path, out / "images" / split / name)
            label = out / "labels" / split / Path(name).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(_format_line(rec, i) for i in range(len(rec.classes))), encoding="utf-8")
    data = {"path": ".", **{s: f"images/{s}" for s in splits}, "nc": len(names), "names": dict(enumerate(names))}
    yaml_path = out / "data.yaml"
    yaml_path.parent.mkdir(parents=True, exist_ok=True)
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return yaml_path


def _format_line(rec: LabeledImage, i: int) -> str:
    x1, y1, x2, y2 = (float(v) for v in rec.boxes[i])
    w, h = rec.width, rec.height
    cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
    return f"{int(rec.classes[i])} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n"
