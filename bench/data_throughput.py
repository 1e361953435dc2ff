"""Training-loader throughput, detforge vs Ultralytics, on BCCD in one run.

Both loaders read the same private copy of the dataset (so neither writes caches into the
shared folder), use the same recipe (mosaic 1.0, mixup 0, HSV 0.015/0.7/0.4, translate 0.1,
scale 0.5, fliplr 0.5), batch size and worker count, and deliver uint8 [B, 3, S, S] batches.
Each measurement skips warm-up batches (worker start, mosaic buffers filling), then times a
fixed number of batches; the two loaders alternate for `--repeats` rounds and the table shows the
medians. Prints a markdown table; `--json PATH` writes the figures for bench/report.py.

    python bench/data_throughput.py [--data ../shared/datasets/bccd] [--batches 30] [--repeats 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

from report import add_row, new_section, publish

ROOT = Path(__file__).resolve().parents[1]
NOTES = """Where the time goes (detforge, 640, one process): HSV jitter ~1.5 ms/image (two color conversions and
three table lookups, as in Ultralytics), mosaic ~1 ms, JPEG decode ~0.6 ms for the one new image a mosaic
needs. What makes it faster: the mosaic tiles go straight to the output with one `cv2.resize` each (no 2x
canvas filled and then warped; `warpAffine` into each tile's region only when rotation/shear/perspective are
on), JPEGs that will be shrunk are decoded at 1/2-1/8 scale by libjpeg, flips and the BGR->RGB swap cost no
extra pass, and labels are a few flat numpy arrays rather than per-image Python objects."""
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "bccd"


def endless(loader: Iterable) -> Iterator:
    while True:
        yield from loader


def images_per_second(make: Callable[[], Iterable], warmup: int, batches: int) -> float:
    loader = make()
    it = endless(loader)
    for _ in range(warmup):
        next(it)
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        count += next(it)["img"].shape[0]
    rate = count / (time.perf_counter() - start)
    del it, loader
    return rate


def detforge_loader(data: Path, imgsz: int, workers: int, batch: int) -> Iterable:
    from detforge.data import AugmentConfig, build_dataloader

    return build_dataloader(data, "train", imgsz=imgsz, batch_size=batch, augment=True,
                            hyp=AugmentConfig(mosaic=1.0, mixup=0.0), workers=workers, shuffle=True,
                            seed=0, progress=False)


def ultralytics_loader(data: Path, imgsz: int, workers: int, batch: int) -> Iterable:
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_dataloader, build_yolo_dataset

    cfg = get_cfg(overrides={"imgsz": imgsz, "mosaic": 1.0, "mixup": 0.0, "cache": False})
    info = {"names": {0: "RBC", 1: "WBC", 2: "Platelets"}, "nc": 3, "channels": 3}
    dataset = build_yolo_dataset(cfg, str(data / "images" / "train"), batch, info, mode="train")
    return build_dataloader(dataset, batch, workers, shuffle=True, rank=-1)


def quiet_reference(data: Path) -> bool:
    """False (with a message) when the dataset is missing; otherwise keep Ultralytics offline and quiet."""
    if not (data / "data.yaml").exists():
        print(f"dataset not found: {data}", file=sys.stderr)
        return False
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    logging.disable(logging.WARNING)
    return True


def private_copy(source: Path, tmp: Path) -> Path:
    """A writable copy of the dataset, so neither loader writes caches into the shared folder. Its
    data.yaml gets an absolute `path:` (Ultralytics reads a relative one from the working directory)."""
    data = tmp / source.name
    shutil.copytree(source, data)
    for folder in [data, *data.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)
    spec = (data / "data.yaml").read_text()
    (data / "data.yaml").write_text("".join(f"path: {data}\n" if line.startswith("path:") else line
                                            for line in spec.splitlines(keepends=True)))
    os.environ["DETFORGE_CACHE_DIR"] = str(tmp / "cache")
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=8, help="untimed batches first")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path, help="write the figures here for bench/report.py")
    args = parser.parse_args()
    if not quiet_reference(args.data):
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        data = private_copy(args.data, Path(tmp))
        import ultralytics.utils  # noqa: F401 - imported first so its global OpenCV settings apply to both

        section = new_section(
            "loader", "Data loader throughput", "python bench/data_throughput.py",
            f"training-loader images/s, detforge `build_dataloader` vs Ultralytics `build_yolo_dataset` + "
            f"`build_dataloader` on the same private copy of BCCD train, batch {args.batch}, mosaic 1.0, mixup 0, "
            f"default HSV/translate/scale/fliplr, uint8 [B, 3, S, S] batches; {args.warmup} warm-up batches, then "
            f"{args.batches} timed.", ["imgsz", "workers"], {"img/s": True}, NOTES)
        for imgsz in args.sizes:
            for workers in args.workers:
                ours, theirs = [], []
                for _ in range(args.repeats):
                    ours.append(images_per_second(
                        partial(detforge_loader, data, imgsz, workers, args.batch), args.warmup, args.batches))
                    theirs.append(images_per_second(
                        partial(ultralytics_loader, data, imgsz, workers, args.batch), args.warmup, args.batches))
                add_row(section, {"imgsz": imgsz, "workers": workers},
                        {"img/s": {"detforge": ours, "reference": theirs}})
                print(f"imgsz {imgsz} workers {workers}: detforge {max(ours):.0f} img/s, "
                      f"ultralytics {max(theirs):.0f} img/s (best)", file=sys.stderr, flush=True)
    publish(section, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
