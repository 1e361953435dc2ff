"""What a dataset is: its format, class names and where each split's files are.

`load_dataset_spec` accepts what users have: a YOLO `data.yaml` (or a folder holding one), a
COCO `instances_*.json` (or a folder with `annotations/instances_*.json`), or a Pascal VOC
folder (`Annotations/`, `JPEGImages/`, `ImageSets/Main/*.txt`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from detforge.data.problems import ProblemReport
from detforge.errors import DataError


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

    @property
    def nc(self) -> int:
        return len(self.names)

    def require_split(self, split: str) -> list[Path]:
        if split not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DataError(f"{self.path}: no '{split}' split (have: {have}); add it to the dataset")
        return self.splits[split]


def load_dataset_spec(path: str | Path) -> DatasetSpec:
    """Read a dataset description; raises `DataError` with a one-line fix when it is unusable."""
    from detforge.data.formats import coco, voc, yolo

    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: not found; pass a data.yaml, a COCO json or a VOC folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".yaml", ".yml"):
            return yolo.read_spec(path)
        if suffix == ".json":
            return coco.read_spec(path)
        raise DataError(f"{path}: unknown dataset file type; pass a data.yaml, a COCO json or a VOC folder")
    for name in ("data.yaml", "data.yml"):
        if (path / name).is_file():
            return yolo.read_spec(path / name)
    if (path / "Annotations").is_dir():
        return voc.read_spec(path)
    jsons = sorted((path / "annotations").glob("instances_*.json"))
    if jsons:
        return coco.read_spec(jsons[0])
    raise DataError(
        f"{path}: no data.yaml, Annotations/ (VOC) or annotations/instances_*.json (COCO) found; "
        "pass the dataset's description file"
    )
