"""End-to-end prediction throughput, detforge vs Ultralytics, on the same 100 BCCD images in one run.

Each side gets the same folder (symlinks to the images) and streams per-image results: decode →
letterbox → model → NMS → results with boxes in original pixels. A folder, not a Python list:
Ultralytics decodes a whole list into memory and runs it as one batch (about 6 images/s here, the
figure quoted in the issue), while a folder goes through its streaming loader, its fastest path. Both run a randomly initialised YOLOv8n with 80 classes
(Ultralytics' `YOLO("yolov8n.yaml")`, detforge's `create_model("yolov8n")`) at imgsz 640, conf
0.25, NMS IoU 0.7, max-det 300, PyTorch on the CPU with the same number of torch threads. Each
side is warmed up first, then the timed passes alternate between the two so that load from
other processes hits both alike; the best pass of each is kept. Prints a markdown table;
`--write-docs` also puts it into docs/benchmarks.md under "Prediction throughput".

    python bench/predict_throughput.py [--data ../shared/datasets/bccd] [--images 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "bccd"
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Prediction throughput"
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


def measure(args, threads: int) -> list[tuple[str, str, int, int, float | None]]:
    """Rows (pipeline, backend, threads, batch, images/s) for one torch thread count."""
    with tempfile.TemporaryDirectory() as tmp:
        images = image_folder(args.data, args.images, Path(tmp) / "images")
        warmup = image_folder(args.data, 4, Path(tmp) / "warmup")
        runners = {}
        for batch in args.batches:
            runners[("Ultralytics 8.4", batch)] = ultralytics_runner(batch, threads, str(warmup))
        for batch in args.batches:
            runners[("detforge", batch)] = detforge_runner(batch)
        torch.set_num_threads(threads)
        for run in runners.values():
            timed(run, warmup, 4)
        best: dict[tuple[str, int], tuple[float, float]] = {}
        for _ in range(args.repeats):
            for key, run in runners.items():
                wall, cpu = timed(run, images, args.images)
                old = best.get(key, (0.0, 0.0))
                best[key] = (max(old[0], wall), max(old[1], cpu))
    rows = [(name, "PyTorch", threads, batch, rates) for (name, batch), rates in best.items()]
    rows.append(("detforge", "ONNX Runtime", threads, max(args.batches), None))
    return rows


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(rows, args, load: float) -> str:
    lines = [
        (f"{args.images} BCCD images (640x480 JPEG), YOLOv8n (80 classes, random init), imgsz 640, conf 0.25, "
        f"iou 0.7, max-det 300; {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}; "
        f"best of {args.repeats} alternating passes; 1-minute load average {load:.1f} at the start "
        "(other processes share these cores)."),
        "",
        ("| pipeline | backend | torch threads | batch | images/s (wall) | vs best Ultralytics "
        "| images per CPU-second | vs best Ultralytics |"),
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    reference: dict[int, list[float]] = {}  # the best Ultralytics figures at each thread count
    for name, _, threads, _, rates in rows:
        if name.startswith("Ultralytics"):
            ref = reference.setdefault(threads, [0.0, 0.0])
            reference[threads] = [max(ref[0], rates[0]), max(ref[1], rates[1])]
    for name, backend, threads, batch, rates in rows:
        if rates is None:
            lines.append(f"| {name} | {backend} | {threads} | {batch} | n/a until export exists | n/a | n/a | n/a |")
            continue
        wall, cpu = rates
        ref_wall, ref_cpu = reference[threads]
        lines.append(f"| {name} | {backend} | {threads} | {batch} | {wall:.1f} | {wall / ref_wall:.2f}x "
                     f"| {cpu:.1f} | {cpu / ref_cpu:.2f}x |")
    return "\n".join(lines)


def write_docs(text: str) -> None:
    """Replace (or append) the "Prediction throughput" section of docs/benchmarks.md, leaving the others."""
    old = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    body = (f"{SECTION}\n\nMeasured with `python bench/predict_throughput.py --write-docs`: end to end per image "
            f"(decode, letterbox, model, NMS, results in original pixels).\n\n{text}\n")
    if SECTION in old:
        start = old.index(SECTION)
        end = old.find("\n## ", start + len(SECTION))
        new = old[:start] + body + (old[end + 1:] if end != -1 else "")
    else:
        new = old.rstrip("\n") + "\n\n" + body
    DOCS.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="detforge batch sizes to time")
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()],
                        help="torch thread counts to time (both sides get the same)")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    logging.getLogger("ultralytics").setLevel(logging.WARNING)
    load = os.getloadavg()[0]
    text = table([row for threads in args.threads for row in measure(args, threads)], args, load)
    print(text)
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
