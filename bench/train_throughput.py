"""Training throughput and peak memory, detforge vs Ultralytics, yolov8n on BCCD in one run.

Both train yolov8n from scratch on a private copy of BCCD (neither writes caches into the shared
folder) with the same settings: batch 16, default augmentations (mosaic 1.0, HSV, translate,
scale, fliplr), the same number of loader workers, CPU, float32, no validation, and the same
optimizer (the `auto` rule picks AdamW for both). Ultralytics forces `workers=0` on CPU; the
bench sets its `workers` back to the requested number after construction so both load in the
background. Threads: `--threads 0` leaves each framework its own setting (detforge times its
thread counts with its ThreadTuner; Ultralytics sets torch to cpu_count - 1 threads when it selects
the CPU: 1 on a 2-core machine, whatever OMP_NUM_THREADS says), which is what a user gets out of
the box; `--threads N` gives both N torch threads (OMP_NUM_THREADS for detforge, and for Ultralytics
`torch.set_num_threads` once its trainer has selected the device), the like-for-like race. Several
values give one set of rows each; the counts each side trained with are in the row's key.

Every measurement is its own subprocess, so `ru_maxrss` of that process (RUSAGE_SELF: the main
training process only, loader workers excluded) is the peak of one framework at one size. The
workers' peaks (VmHWM, which counts pages shared with the parent) are reported separately. A
measurement trains `--warmup` batches untimed, then times `--batches` batches, each from the end
of the previous batch (loading, forward, loss, backward, optimizer/EMA steps included) — both fit
in the first epoch so no epoch-end work (validation, checkpoints) runs. The two frameworks
alternate for `--repeats` rounds; the table shows the medians.

A second detforge row trains with bfloat16 autocast, detforge's default on CPUs with native bf16
(the reference has no CPU mixed precision and trains in float32), against the same float32
reference measurements; `--no-bf16` leaves it out (it is left out on CPUs without native bf16).
Both detforge rows keep its other CPU default, channels-last memory.

    python bench/train_throughput.py [--threads 2 0] [--sizes 320 640] [--batches 7] [--warmup 5] [--repeats 5]
                                     [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from children import run_json_child
from data_throughput import private_copy
from report import add_row, new_section, publish

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "bccd"
FRAMEWORKS = ("detforge", "detforge-bf16", "ultralytics")


class StopMeasuring(Exception):
    """Raised from an Ultralytics callback once the timed batches are done."""


def worker_peaks_mb() -> list[float]:
    """Peak RSS (VmHWM) of each live child process of this one, MB (Linux /proc)."""
    peaks = []
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[1] != me:
                continue
            for line in (stat.parent / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except (OSError, IndexError, ValueError):
            continue
    return peaks


def report(ends: list[float], batch: int, warmup: int) -> None:
    """Print the child's result as one JSON line; `ends[i]` is when batch i-1 finished (ends[0]: start)."""
    timed = ends[warmup:]
    steps = [b - a for a, b in itertools.pairwise(timed)]
    print(json.dumps({
        "images_per_s": batch * len(steps) / (timed[-1] - timed[0]),
        "batch_s": steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peaks_mb": worker_peaks_mb(),
        "threads": sys.modules["torch"].get_num_threads(),  # at the end: detforge's tuned count
    }), flush=True)


class TimedBatches:
    """Wraps the detforge train loader: yields `count` batches (starting new passes if needed) and
    records when each one is asked for, i.e. when the training step of the previous one ended."""

    def __init__(self, loader, count: int) -> None:
        self.loader, self.count = loader, count
        self.dataset = loader.dataset
        self.ends: list[float] = []

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        it = iter(self.loader)
        for _ in range(self.count):
            self.ends.append(time.perf_counter())
            try:
                batch = next(it)
            except StopIteration:
                it = iter(self.loader)
                batch = next(it)
            yield batch
        self.ends.append(time.perf_counter())


def detforge_trainer(args: argparse.Namespace):
    """A set-up yolov8n trainer whose epoch the bench drives itself: no validation, no checkpoints."""
    from detforge.engine.train_config import make_train_config
    from detforge.engine.trainer import Trainer

    config = make_train_config({
        "model": "yolov8n", "data": str(args.data / "data.yaml"), "epochs": 100, "imgsz": args.imgsz,
        "batch": args.batch, "workers": args.workers, "device": "cpu", "amp": args.child == "detforge-bf16",
        "amp_dtype": "bf16", "plots": False,
        "project": str(args.out), "name": "detforge", "exist_ok": True,
    })
    trainer = Trainer(config)
    trainer._setup()
    return trainer


def run_detforge(args: argparse.Namespace) -> None:
    trainer = detforge_trainer(args)
    timed = TimedBatches(trainer.train_loader, args.warmup + args.batches)
    trainer.train_loader = timed
    trainer._train_epoch(0)
    report(timed.ends, args.batch, args.warmup)


def run_ultralytics(args: argparse.Namespace) -> None:
    from ultralytics.models.yolo.detect import DetectionTrainer  # sets OMP_NUM_THREADS=1 unless set

    trainer = DetectionTrainer(overrides={
        "model": "yolov8n.yaml", "data": str(args.data / "data.yaml"), "epochs": 100, "imgsz": args.imgsz,
        "batch": args.batch, "workers": args.workers, "device": "cpu", "amp": False, "val": False,
        "plots": False, "save": False, "project": str(args.out), "name": "ultralytics", "exist_ok": True,
        "verbose": False,
    })
    trainer.args.workers = args.workers  # undo the CPU override to 0, so both load in the background
    ends: list[float] = []

    def batch_end(t) -> None:
        ends.append(time.perf_counter())
        if len(ends) == 1 + args.warmup + args.batches:  # ends[0] is the start
            raise StopMeasuring

    def train_start(t) -> None:
        if args.child_threads:  # its select_device has just set cpu_count - 1 threads
            sys.modules["torch"].set_num_threads(args.child_threads)
        ends.append(time.perf_counter())

    trainer.add_callback("on_train_start", train_start)
    trainer.add_callback("on_train_batch_end", batch_end)
    with contextlib.suppress(StopMeasuring):
        trainer.train()
    report(ends, args.batch, args.warmup)


def measure(framework: str, args: argparse.Namespace, imgsz: int, threads: int, out: Path) -> dict:
    command = [__file__, "--child", framework, "--imgsz", str(imgsz), "--data", str(args.data),
               "--out", str(out), "--batch", str(args.batch), "--batches", str(args.batches),
               "--warmup", str(args.warmup), "--workers", str(args.workers), "--child-threads", str(threads)]
    return run_json_child(command, f"{framework} at {imgsz}", threads, DETFORGE_CACHE_DIR=str(out / "cache"))


def thread_key(threads: int, ours: list[dict], theirs: list[dict]) -> str:
    """The row's torch threads as they ran (detforge's tuner and Ultralytics' device selection decide
    when `threads` is 0)."""
    if threads:
        return f"{threads} on both"
    counts = ["/".join(map(str, sorted({r["threads"] for r in runs}))) for runs in (ours, theirs)]
    return f"each its own: {counts[0]} vs {counts[1]}"


def add_rows(section: dict, results: dict) -> None:
    """One row per thread setting, size and detforge precision, each against the same float32 reference runs."""
    for (threads, imgsz), by_name in results.items():
        theirs = by_name["ultralytics"]
        for name, precision in (("detforge", "float32"), ("detforge-bf16", "bf16 autocast (default)")):
            ours = by_name[name]
            if ours:
                key = {"torch threads": thread_key(threads, ours, theirs), "imgsz": imgsz,
                       "detforge precision": precision}
                add_row(section, key, {
                    metric: {"detforge": [r[field] for r in ours], "reference": [r[field] for r in theirs]}
                    for metric, field in (("img/s", "images_per_s"), ("peak RSS MB", "peak_rss_mb"))
                })


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dataset folder with data.yaml")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=7, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed batches first (detforge times its thread counts in batches 1-4)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds per size")
    parser.add_argument("--json", type=Path, help="write the figures here for bench/report.py")
    parser.add_argument("--threads", type=int, nargs="+", default=[0],
                        help="torch threads for both; 0: each framework's own setting (see the module docstring)")
    parser.add_argument("--only", choices=FRAMEWORKS, help="measure one framework only")
    parser.add_argument("--no-bf16", action="store_true", help="leave out the bfloat16-autocast detforge row")
    parser.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--imgsz", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (run_ultralytics if args.child == "ultralytics" else run_detforge)(args)
        return 0
    if not (args.data / "data.yaml").exists():
        print(f"skipped: {args.data / 'data.yaml'} not found (BCCD is expected in ../shared/datasets/bccd; "
              "pass --data)", file=sys.stderr)
        return 0
    train_images = len(list((args.data / "images" / "train").iterdir()))
    if args.warmup + args.batches > train_images // args.batch:
        print(f"warning: {args.warmup + args.batches} batches run past the first epoch ({train_images} images); "
              "epoch-end work and a partial batch get timed", file=sys.stderr)
    frameworks = [args.only] if args.only else list(FRAMEWORKS)
    from detforge.device import cpu_has_bf16

    if args.no_bf16 or not cpu_has_bf16():
        frameworks = [f for f in frameworks if f != "detforge-bf16"]
    section = new_section(
        "train", "Training throughput", "python bench/train_throughput.py",
        f"yolov8n from scratch on a private copy of BCCD train, batch {args.batch}, default augmentations, "
        f"{args.workers} loader workers on both sides, CPU, float32 (the reference always; detforge also with "
        f"bf16 autocast, its default on a CPU with native bf16), no validation, the same optimizer; "
        f"{args.warmup} untimed batches, then {args.batches} timed; peak RSS of the main training process.",
        ["torch threads", "imgsz", "detforge precision"], {"img/s": True, "peak RSS MB": False})
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = private_copy(args.data, Path(tmp))
        args.data = data
        for threads, imgsz in itertools.product(args.threads, args.sizes):
            results[threads, imgsz] = {name: [] for name in FRAMEWORKS}
            for round_ in range(args.repeats):
                order = frameworks if round_ % 2 == 0 else frameworks[::-1]
                for name in order:
                    result = measure(name, args, imgsz, threads, Path(tmp))
                    results[threads, imgsz][name].append(result)
                    print(f"threads {threads or 'own'} imgsz {imgsz} round {round_ + 1} {name}: "
                          f"{result['images_per_s']:.1f} img/s at {result['threads']} threads, peak RSS "
                          f"{result['peak_rss_mb']:.0f} MB, batches "
                          f"{' '.join(f'{s:.2f}' for s in result['batch_s'])} s", file=sys.stderr, flush=True)
    if args.only:
        return 0
    add_rows(section, results)
    publish(section, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
