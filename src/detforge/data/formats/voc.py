"""Pascal VOC folder: `Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/<split>.txt`.

Box corners are read as pixel edges as they stand (no 1-based shift), so a VOC -> YOLO -> VOC
round trip gives the numbers back. Class names come from `classes.txt` when the folder has
one (the writer leaves one, to keep the order), otherwise from the xml files, sorted. Without
`ImageSets/Main`, every xml is one `train` split.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from detforge.data.formats import UniqueNames, copy_image
from detforge.data.images import IMAGE_SUFFIXES
from detforge.data.problems import DROPPED, MALFORMED, MISSING_IMAGE, SKIPPED, ProblemReport
from detforge.data.records import LabeledImage, RawLabels
from detforge.data.spec import DatasetSpec
from detforge.errors import DataError
from detforge.fsutil import read_limited
from detforge.limits import (
    MAX_CLASSES,
    MAX_LABEL_FILE_BYTES,
    MAX_NAME_CHARS,
    MAX_YAML_BYTES,
    check_classes,
    short,
)

STANDARD_SPLITS = ("train", "val", "test")
ALL = "*"  # split source meaning "every xml in Annotations/"


def read_spec(root: Path) -> DatasetSpec:
    root = root.resolve()
    lists = root / "ImageSets" / "Main"
    splits = {s: [lists / f"{s}.txt"] for s in STANDARD_SPLITS if (lists / f"{s}.txt").is_file()}
    if not splits and (lists / "trainval.txt").is_file():
        splits = {"trainval": [lists / "trainval.txt"]}
    if not splits:
        splits = {"train": [root / "Annotations" / ALL]}
    names = _names(root)
    if not names:
        raise DataError(f"{root}: no object names in Annotations/*.xml and no classes.txt; add classes.txt")
    return DatasetSpec("voc", root, root, names, splits, ProblemReport(root=root))


def _names(root: Path) -> list[str]:
    for listing in ("classes.txt", "labels.txt"):
        if (root / listing).is_file():
            names = [n.strip() for n in _read_text(root / listing).splitlines() if n.strip()]
            break
    else:
        found: set[str] = set()
        for xml in (root / "Annotations").glob("*.xml"):
            try:
                found.update((o.findtext("name") or "").strip() for o in _parse(xml).iter("object"))
            except (OSError, ET.ParseError):
                continue  # reported when the split is read
            if len(found) > MAX_CLASSES:
                break
        names = sorted(n for n in found if n)
        listing = "Annotations/*.xml"
    if names:
        check_classes(len(names), str(root / listing), "the number of classes", DataError)
        if max(map(len, names)) > MAX_NAME_CHARS:
            raise DataError(f"{root / listing}: a class name is over {MAX_NAME_CHARS:,} characters; shorten it")
    return names


def _read_text(path: Path) -> str:
    """A list file of the dataset (classes.txt, ImageSets/Main/*.txt) as text, or a one-line DataError."""
    try:
        return read_limited(path, MAX_YAML_BYTES * 16).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot be read as text ({short(err, 120)}); fix the file") from None


def _parse(xml: Path) -> ET.Element:
    """The root element of one annotation file (a regular file of bounded size; expat refuses entity bombs)."""
    return ET.fromstring(read_limited(xml, MAX_LABEL_FILE_BYTES))


def _ids(spec: DatasetSpec, split: str) -> list[str]:
    (source,) = spec.require_split(split)
    if source.name == ALL:
        return sorted(p.stem for p in (spec.root / "Annotations").glob("*.xml"))
    return [line.split()[0] for line in _read_text(source).splitlines() if line.strip()]


def _image_for(root: Path, stem: str, filename: str | None) -> Path:
    folder = root / "JPEGImages"
    if filename and (folder / filename).is_file():
        return folder / filename
    for suffix in (".jpg", *sorted(IMAGE_SUFFIXES)):
        if (folder / (stem + suffix)).is_file():
            return folder / (stem + suffix)
    return folder / (filename or stem + ".jpg")


def split_inputs(spec: DatasetSpec, split: str) -> list[Path]:
    ids = _ids(spec, split)
    xmls = [spec.root / "Annotations" / f"{i}.xml" for i in ids]
    images = [_image_for(spec.root, i, None) for i in ids]
    return [s for s in spec.splits[split] if s.name != ALL] + xmls + images


def read_split(spec: DatasetSpec, split: str, report: ProblemReport) -> list[RawLabels]:
    index = {n: i for i, n in enumerate(spec.names)}
    raws = []
    for stem in _ids(spec, split):
        xml = spec.root / "Annotations" / f"{stem}.xml"
        try:
            tree = _parse(xml)
        except FileNotFoundError:
            report.add(xml, MISSING_IMAGE, SKIPPED, "listed in the split but its xml does not exist")
            continue
        except (OSError, ET.ParseError) as err:
            report.add(xml, MALFORMED, SKIPPED, f"not valid XML ({short(err, 120)})")
            continue
        image = _image_for(spec.root, stem, (tree.findtext("filename") or "").strip() or None)
        if not image.is_file():
            report.add(xml, MISSING_IMAGE, SKIPPED, f"its image {image.name} is not in JPEGImages/")
            continue
        boxes, classes, origins = [], [], []
        for n, obj in enumerate(tree.iter("object")):
            where = f"{xml}:object[{n}]"
            name = (obj.findtext("name") or "").strip()
            try:
                box = [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            except (TypeError, ValueError):
                report.add(where, MALFORMED, DROPPED, f"object {name!r} has no numeric bndbox")
                continue
            boxes.append(box)
            classes.append(index.get(name, -1))
            origins.append(f"{where} ({name})")
        raws.append(RawLabels(
            image=str(image),
            boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
            classes=np.array(classes, dtype=np.int64),
            origins=origins,
            declared_size=_declared_size(tree),
        ))
    return raws


def _declared_size(tree: ET.Element) -> tuple[int, int] | None:
    try:
        size = int(float(tree.findtext("size/width"))), int(float(tree.findtext("size/height")))
    except (TypeError, ValueError, OverflowError):
        return None
    return size if size[0] > 0 and size[1] > 0 else None


def write(out: Path, names: list[str], splits: dict[str, list[LabeledImage]]) -> Path:
    """Write JPEGImages/, Annotations/, ImageSets/Main/<split>.txt and classes.txt; returns `out`."""
    unique = UniqueNames()  # one folder for all splits, so names must be unique across them
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    (out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for split, records in splits.items():
        ids = []
        for rec in records:
            name = unique(rec.path)
            copy_image(rec.path, out / "JPEGImages" / name)
            stem = Path(name).stem
            ids.append(stem)
            _xml(rec, name, names).write(out / "Annotations" / f"{stem}.xml", encoding="utf-8")
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(i + "\n" for i in ids), encoding="utf-8")
    (out / "classes.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
    return out


def _xml(rec: LabeledImage, filename: str, names: list[str]) -> ET.ElementTree:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for key, value in (("width", rec.width), ("height", rec.height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for box, cls in zip(rec.boxes.tolist(), rec.classes.tolist()):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = names[cls]
        ET.SubElement(obj, "difficult").text = "0"
        bnd = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bnd, key).text = f"{value:.2f}".rstrip("0").rstrip(".")
    ET.indent(root)
    return ET.ElementTree(root)
