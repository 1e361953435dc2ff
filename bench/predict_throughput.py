"""End-to-end prediction throughput, detforge vs Ultralytics, on the same 100 BCCD images in one run.

Each side gets the same folder (symlinks to the images) and streams per-image results: decode →
letterbox → model → NMS → results with boxes in original pixels. A folder, not a Python list:
Ultralytics decodes a whole list into memory and runs it as one batch (about 6 images/s here),
while a folder goes through its streaming loader, its fastest path. Both run a randomly
initialised YOLOv8n with 80 classes
(Ultralytics' `YOLO("yolov8n.yaml")`, detforge's `create_model("yolov8n")`) at imgsz 640, conf
0.25, NMS IoU 0.7, max-det 300, PyTorch on the CPU with the same number of torch threads. Each
side is warmed up first, then the timed passes alternate between the two so that load from
other processes hits both alike; the table shows the median pass of each, against Ultralytics at
the same thread count and batch size. Prints a markdown table; `--json PATH` writes the figures for
bench/report.py.

    python bench/predict_throughput.py [--data ../shared/datasets/bccd] [--images 100] [--repeats 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from report import add_row, new_section, publish

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "bccd"
SETTINGS = {"imgsz": 640, "conf": 0.25, "iou": 0.7, "max_det": 300}


def image_folder(data: Path, count: int, folder: Path) -> Path:
    """`folder` with symlinks to the first `count` BCCD images (all splits, sorted)."""
    paths = sorted((data / "images").rglob("*.jpg"))
    if len(paths) < count:
        raise SystemExit(f"{data}: found {len(paths)} images, need {count}")
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths[:count]:
        (folder / path.name).symlink_to(path)
    return folder


def timed(run, source: Path, count: int) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second of the whole process) of one pass.

    `run(source)` must yield one result per image. CPU time counts every thread of the process
    (decode-ahead threads included) and is far less disturbed than wall time when other
    processes compete for the cores.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    produced = sum(1 for _ in run(str(source)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert produced == count, f"{produced} results for {count} images"
    return count / wall, count / cpu


def detforge_runner(batch: int):
    import detforge

    model = detforge.create_model("yolov8n")
    predictor = detforge.Predictor(model, batch=batch, **SETTINGS)
    return lambda source: predictor.predict(source, stream=True)


def ultralytics_runner(batch: int, threads: int, warmup: str):
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    options = {**SETTINGS, "batch": batch, "device": "cpu", "verbose": False}
    for _ in model.predict(warmup, stream=True, **options):  # builds and fuses its predictor
        pass
    torch.set_num_threads(threads)  # its device selection resets the thread count; give both the same
    return lambda source: model.predict(source, stream=True, **options)


def measure(args, threads: int, section: dict) -> None:
    """Add one row per batch size at this torch thread count: samples of both sides, alternating passes."""
    with tempfile.TemporaryDirectory() as tmp:
        images = image_folder(args.data, args.images, Path(tmp) / "images")
        warmup = image_folder(args.data, 4, Path(tmp) / "warmup")
        runners = {}
        for batch in args.batches:
            runners[("reference", batch)] = ultralytics_runner(batch, threads, str(warmup))
            runners[("detforge", batch)] = detforge_runner(batch)
        torch.set_num_threads(threads)
        for run in runners.values():
            timed(run, warmup, 4)
        samples: dict[tuple[str, int], list[tuple[float, float]]] = {key: [] for key in runners}
        for _ in range(args.repeats):
            for key, run in runners.items():
                samples[key].append(timed(run, images, args.images))
    for batch in args.batches:
        ours, theirs = samples[("detforge", batch)], samples[("reference", batch)]
        add_row(section, {"torch threads": threads, "batch": batch}, {
            "img/s (wall)": {"detforge": [s[0] for s in ours], "reference": [s[0] for s in theirs]},
            "img per CPU-s": {"detforge": [s[1] for s in ours], "reference": [s[1] for s in theirs]},
        })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes to time")
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()],
                        help="torch thread counts to time (both sides get the same)")
    parser.add_argument("--json", type=Path, help="write the figures here for bench/report.py")
    args = parser.parse_args()
    logging.getLogger("ultralytics").setLevel(logging.WARNING)
    section = new_section(
        "predict", "Prediction throughput", "python bench/predict_throughput.py",
        f"end to end per image (decode, letterbox, model, NMS, results in original pixels) on {args.images} BCCD "
        f"images (640x480 JPEG), YOLOv8n (80 classes, random init), imgsz 640, conf 0.25, iou 0.7, max-det 300; "
        "both sides stream a folder with the same torch thread count; the reference runs at the same batch size.",
        ["torch threads", "batch"], {"img/s (wall)": True, "img per CPU-s": True})
    for threads in args.threads:
        measure(args, threads, section)
    publish(section, args.json)


if __name__ == "__main__":
    main()
