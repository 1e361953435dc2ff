"""COCO detection json: `images`, `annotations` (bbox = x, y, w, h in pixels), `categories`.

One json is one split, named after the file (`instances_val.json` -> `val`); the other
`instances_*.json` beside it become the other splits. Category ids map to class indices in
ascending id order. Images are looked up in the usual places (`images/<split>/`, `<split>/`,
the json's folder). Crowd annotations are not objects to detect and are left out (reported).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from detforge.data.formats import UniqueNames, copy_image
from detforge.data.problems import (
    CROWD,
    DROPPED,
    MALFORMED,
    MISSING_IMAGE,
    SKIPPED,
    UNKNOWN_CLASS,
    ProblemReport,
)
from detforge.data.records import LabeledImage, RawLabels
from detforge.data.spec import DatasetSpec
from detforge.errors import DataError
from detforge.fsutil import read_limited
from detforge.limits import MAX_NAME_CHARS, check_classes, short


def split_name(json_path: Path) -> str:
    stem = json_path.stem
    return stem.removeprefix("instances_")


def _load(path: Path) -> dict:
    try:
        data = json.loads(read_limited(path, None).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: [[[[... nested too deep
        raise DataError(f"{path}: cannot be read as JSON ({short(err, 120)}); fix or re-export the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a COCO detection file (no 'images' list)")
    if not isinstance(data.get("annotations", []), list):
        raise DataError(f"{path}: 'annotations' is not a list; fix or re-export the file")
    return data


def _categories(path: Path, data: dict) -> list[dict]:
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise DataError(f"{path}: no 'categories'; a COCO detection file must list its classes")
    check_classes(len(cats), str(path), "the number of categories", DataError)
    try:
        cats = sorted(({"id": int(c["id"]), "name": str(c["name"])} for c in cats), key=lambda c: c["id"])
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise DataError(f"{path}: every category needs an integer 'id' and a 'name'") from err
    if max(len(c["name"]) for c in cats) > MAX_NAME_CHARS:
        raise DataError(f"{path}: a category name is over {MAX_NAME_CHARS:,} characters; shorten it")
    return cats


def read_spec(path: Path) -> DatasetSpec:
    path = path.resolve()
    names = [c["name"] for c in _categories(path, _load(path))]
    siblings = sorted(path.parent.glob("instances_*.json")) if path.stem.startswith("instances_") else []
    jsons = [path] + [p for p in siblings if p.resolve() != path]
    order = {"train": 0, "val": 1, "test": 2}
    jsons.sort(key=lambda p: (order.get(split_name(p), 3), split_name(p)))
    splits = {split_name(p): [p.resolve()] for p in jsons}
    root = path.parent.parent if path.parent.name == "annotations" else path.parent
    return DatasetSpec("coco", path, root, names, splits, ProblemReport(root=root))


def image_dir(json_path: Path, data: dict) -> Path:
    """The folder that holds this json's images (first candidate containing its first image)."""
    split = split_name(json_path)
    base = json_path.parent
    candidates = [
        base.parent / "images" / split, base.parent / split, base / "images" / split,
        base.parent / "images", base / "images", base / split, base, base.parent,
    ]
    first = next((str(im["file_name"]) for im in data["images"] if isinstance(im, dict) and im.get("file_name")),
                 None)
    if first is not None:
        for folder in candidates:
            if (folder / first).is_file():
                return folder
    return candidates[0]


def split_inputs(spec: DatasetSpec, split: str) -> list[Path]:
    (json_path,) = spec.require_split(split)
    data = _load(json_path)
    folder = image_dir(json_path, data)
    return [json_path] + sorted(folder / str(im.get("file_name", "")) for im in data["images"] if isinstance(im, dict))


def read_split(spec: DatasetSpec, split: str, report: ProblemReport) -> list[RawLabels]:
    (json_path,) = spec.require_split(split)
    data = _load(json_path)
    folder = image_dir(json_path, data)
    categories = _categories(json_path, data)
    if [c["name"] for c in categories] != spec.names:
        raise DataError(f"{json_path}: categories differ from {spec.path.name}'s; every split needs the same list")
    index = {c["id"]: i for i, c in enumerate(categories)}
    per_image: dict[int, list[tuple[list[float], int, str]]] = {}
    images = {}
    for im in data["images"]:
        try:
            images[int(im["id"])] = (str(im["file_name"]), (int(im["width"]), int(im["height"])))
        except (KeyError, TypeError, ValueError, OverflowError):
            report.add(json_path, MALFORMED, SKIPPED, f"image entry without id/file_name/width/height: {short(im, 80)}")
    for n, ann in enumerate(data.get("annotations") or []):
        where = f"{json_path}:annotations[{n}]"
        try:
            image_id, bbox, category = int(ann["image_id"]), [float(v) for v in ann["bbox"]], int(ann["category_id"])
            if len(bbox) != 4:
                raise ValueError
        except (KeyError, TypeError, ValueError, OverflowError):
            report.add(where, MALFORMED, DROPPED, "annotation needs image_id, category_id and a 4-number bbox")
            continue
        if image_id not in images:
            report.add(where, MALFORMED, DROPPED, f"image_id {image_id} is not in 'images'")
            continue
        if ann.get("iscrowd"):
            report.add(where, CROWD, DROPPED, "crowd region is not an object to detect")
            continue
        if category not in index:
            report.add(where, UNKNOWN_CLASS, DROPPED, f"category_id {category} is not in 'categories'")
            continue
        x, y, w, h = bbox
        per_image.setdefault(image_id, []).append(([x, y, x + w, y + h], index[category], where))
    raws = []
    for image_id, (file_name, size) in sorted(images.items(), key=lambda kv: kv[1][0]):
        path = folder / file_name
        if not path.is_file():
            report.add(path, MISSING_IMAGE, SKIPPED, f"listed in {json_path.name} but not found in {folder}")
            continue
        anns = per_image.get(image_id, [])
        raws.append(RawLabels(
            image=str(path),
            boxes=np.array([a[0] for a in anns], dtype=np.float64).reshape(-1, 4),
            classes=np.array([a[1] for a in anns], dtype=np.int64),
            origins=[a[2] for a in anns],
            declared_size=size,
        ))
    return raws


def write(out: Path, names: list[str], splits: dict[str, list[LabeledImage]]) -> Path:
    """Write `images/<split>/` and `annotations/instances_<split>.json` (category id = index + 1)."""
    first = None
    for split, records in splits.items():
        unique = UniqueNames()
        images, annotations = [], []
        for image_id, rec in enumerate(records, 1):
            name = unique(rec.path)
            copy_image(rec.path, out / "images" / split / name)
            images.append({"id": image_id, "file_name": name, "width": rec.width, "height": rec.height})
            for box, cls in zip(rec.boxes.tolist(), rec.classes.tolist()):
                w, h = box[2] - box[0], box[3] - box[1]
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                    "bbox": [round(box[0], 3), round(box[1], 3), round(w, 3), round(h, 3)],
                    "area": round(w * h, 3), "iscrowd": 0,
                })
        categories = [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(names)]
        path = out / "annotations" / f"instances_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
        first = first or path
    if first is None:
        raise DataError(f"{out}: nothing to write (no splits)")
    return first
