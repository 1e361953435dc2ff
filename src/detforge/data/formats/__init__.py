"""Dataset formats. Each module reads a spec, lists a split's input files, reads its raw
labels, and writes records back out:

    read_spec(path) -> DatasetSpec
    split_inputs(spec, split) -> list[Path]          files whose change invalidates the cache
    read_split(spec, split, report) -> list[RawLabels]
    write(out, names, splits) -> Path                path to pass back to load_dataset_spec
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

from detforge.errors import DataError

FORMAT_NAMES = ("yolo", "coco", "voc")


def format_module(name: str) -> ModuleType:
    """The reader/writer module of format `name`."""
    from detforge.data.formats import coco, voc, yolo

    modules = {"yolo": yolo, "coco": coco, "voc": voc}
    if name not in modules:
        raise DataError(f"unknown dataset format '{name}'; use one of {', '.join(FORMAT_NAMES)}")
    return modules[name]


class UniqueNames:
    """Hands out file names that do not collide inside one output folder (a_1.jpg, a_2.jpg...)."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, path: str | Path) -> str:
        path = Path(path)
        name, n = path.name, 0
        while name.lower() in self.used:
            n += 1
            name = f"{path.stem}_{n}{path.suffix}"
        self.used.add(name.lower())
        return name


def copy_image(src: str | Path, dst: Path) -> None:
    """Copy the image bytes unchanged (EXIF included, so labels keep meaning the upright image)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
