"""What a dataset is: its format, class names and where each split's files are.

`load_dataset_spec` accepts what users have: a YOLO `data.yaml` (or a folder holding one), a
COCO `instances_*.json` (or a folder with `annotations/instances_*.json`), or a Pascal VOC
folder (`Annotations/`, `JPEGImages/`, `ImageSets/Main/*.txt`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from detforge.data.problems import ProblemReport
from detforge.errors import DataError
from detforge.fsutil import printable
from detforge.limits import read_yaml


@dataclass
class DatasetSpec:
    """A dataset's layout.

    `splits` maps a split name to its sources, whose meaning depends on `format`: image
    folders or list files (yolo), one annotation json (coco), one image-id list (voc).
    `problems` holds dataset-level findings such as a `nc` that disagrees with `names`.
    """

    format: str
    path: Path
    root: Path
    names: list[str]
    splits: dict[str, list[Path]]
    problems: ProblemReport = field(default_factory=ProblemReport)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for name in self.names:  # per-class counts, tables and COCO categories are keyed by name
            if name in seen:
                raise DataError(f"{self.path}: class name {printable(name)!r} appears twice; names must be unique")
            seen.add(name)

    @property
    def nc(self) -> int:
        return len(self.names)

    def resolve_split(self, split: str) -> str:
        """The dataset's own name for `split`: itself, or the one split that differs from it only by a year
        or a common spelling (`train` → `train2017`, `val` → `val2017` / `valid` / `validation`)."""
        if split in self.splits:
            return split
        matches = [name for name in self.splits if _same_split(split, name)]
        if len(matches) == 1:
            return matches[0]
        have = ", ".join(self.splits) or "none"
        if matches:
            raise DataError(
                f"{self.path}: no '{split}' split and several that could be it ({', '.join(matches)}); pick one "
                f"with a data.yaml, e.g. '{split}: annotations/instances_{matches[-1]}.json' (see docs/data.md)"
            )
        raise DataError(f"{self.path}: no '{split}' split (have: {have}); add it to the dataset")

    def require_split(self, split: str) -> list[Path]:
        return self.splits[self.resolve_split(split)]


SPLIT_SPELLINGS = {"train": ("training",), "val": ("valid", "validation", "minival"), "test": ("testing", "test-dev")}
YEAR = re.compile(r"[-_]?(19|20)\d\d$")


def _same_split(wanted: str, name: str) -> bool:
    """`train2017`, `train_2014`, `valid`, `val2017`... name the same split as `train` / `val`."""
    base = YEAR.sub("", name.lower())
    return base == wanted or base in SPLIT_SPELLINGS.get(wanted, ())


def load_dataset_spec(path: str | Path) -> DatasetSpec:
    """Read a dataset description; raises `DataError` with a one-line fix when it is unusable."""
    from detforge.data.formats import coco, voc, yolo

    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: not found; pass a data.yaml, a COCO json or a VOC folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".yaml", ".yml"):
            return _coco_yaml(path) or yolo.read_spec(path)
        if suffix == ".json":
            return coco.read_spec(path)
        raise DataError(f"{path}: unknown dataset file type; pass a data.yaml, a COCO json or a VOC folder")
    for name in ("data.yaml", "data.yml"):
        if (path / name).is_file():
            return _coco_yaml(path / name) or yolo.read_spec(path / name)
    if (path / "Annotations").is_dir():
        return voc.read_spec(path)
    jsons = sorted((path / "annotations").glob("instances_*.json"))
    if jsons:
        return coco.read_spec(jsons[0])
    raise DataError(
        f"{path}: no data.yaml, Annotations/ (VOC) or annotations/instances_*.json (COCO) found; "
        "pass the dataset's description file"
    )


def _coco_yaml(path: Path) -> DatasetSpec | None:
    """A data.yaml whose splits are COCO jsons (`train: annotations/instances_train2017.json`) → a COCO dataset
    with exactly those splits; None when it is a YOLO data.yaml (left to the YOLO reader and its errors)."""
    from detforge.data.formats import coco

    try:
        data = read_yaml(path, DataError)
    except DataError:
        return None  # the YOLO reader reads it again and says what is wrong
    if not isinstance(data, dict):
        return None
    entries = {k: data[k] for k in ("train", "val", "test") if isinstance(data.get(k), (str, list)) and data[k]}
    is_json = {k: all(str(e).lower().endswith(".json") for e in (v if isinstance(v, list) else [v]))
               for k, v in entries.items()}
    if not any(is_json.values()):
        return None
    if not all(is_json.values()):
        raise DataError(
            f"{path}: {', '.join(k for k, j in is_json.items() if j)} name COCO jsons but "
            f"{', '.join(k for k, j in is_json.items() if not j)} do not; list a COCO json for every split, "
            "or image folders for every split"
        )
    root = Path(str(data.get("path") or "."))
    root = (root if root.is_absolute() else path.parent / root).resolve()
    splits = {}
    for key, value in entries.items():
        if isinstance(value, list) and len(value) != 1:
            raise DataError(f"{path}: {key}: one COCO json per split (got {len(value)}); merge them first")
        json_path = Path(str(value[0] if isinstance(value, list) else value))
        json_path = (json_path if json_path.is_absolute() else root / json_path).resolve()
        if not json_path.is_file():
            raise DataError(f"{path}: {key}: {json_path} does not exist; fix the path in {path.name}")
        splits[key] = [json_path]
    first = coco.read_spec(next(iter(splits.values()))[0])
    names = data.get("names")
    if isinstance(names, (list, dict)) and len(names) != len(first.names):
        raise DataError(f"{path}: names lists {len(names)} classes but the COCO json has {len(first.names)} "
                        "categories; drop 'names' (the json's categories are used)")
    return DatasetSpec("coco", path, root, first.names, splits, ProblemReport(root=root))
