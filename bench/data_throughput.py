"""Training-loader throughput, detforge vs Ultralytics, on BCCD in one run.

Both loaders read the same private copy of the dataset (so neither writes caches into the
shared folder), use the same recipe (mosaic 1.0, mixup 0, HSV 0.015/0.7/0.4, translate 0.1,
scale 0.5, fliplr 0.5), batch size and worker count, and deliver uint8 [B, 3, S, S] batches.
Each measurement skips warm-up batches (worker start, mosaic buffers filling), then times a
fixed number of batches; each pair is repeated and the best run of each loader is kept, to damp
noise from other processes. Prints a markdown table.

    python bench/data_throughput.py [--data ../shared/datasets/bccd] [--batches 30] [--repeats 2]
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

ROOT = Path(__file__).resolve().parents[1]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=8, help="untimed batches first")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    if not (args.data / "data.yaml").exists():
        print(f"dataset not found: {args.data}", file=sys.stderr)
        return 2
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bccd"
        shutil.copytree(args.data, data)
        for folder in [data, *data.rglob("*")]:
            if folder.is_dir():
                folder.chmod(0o755)
        os.environ["DETFORGE_CACHE_DIR"] = str(Path(tmp) / "cache")
        import ultralytics.utils  # noqa: F401 - imported first so its global OpenCV settings apply to both

        rows = []
        for imgsz in args.sizes:
            for workers in args.workers:
                ours, theirs = 0.0, 0.0
                for _ in range(args.repeats):
                    ours = max(ours, images_per_second(
                        partial(detforge_loader, data, imgsz, workers, args.batch), args.warmup, args.batches))
                    theirs = max(theirs, images_per_second(
                        partial(ultralytics_loader, data, imgsz, workers, args.batch), args.warmup, args.batches))
                rows.append((imgsz, workers, ours, theirs))
                print(f"imgsz {imgsz} workers {workers}: detforge {ours:.0f} img/s, "
                      f"ultralytics {theirs:.0f} img/s", file=sys.stderr, flush=True)
    print("| imgsz | workers | detforge img/s | Ultralytics img/s | ratio |\n|---|---|---|---|---|")
    for imgsz, workers, ours, theirs in rows:
        print(f"| {imgsz} | {workers} | {ours:.0f} | {theirs:.0f} | {ours / theirs:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
