"""Where one training step's time goes, detforge vs Ultralytics: loader wait, forward, loss, assigner,
backward, optimizer step, EMA (yolov8n, batch 16, default augmentation, BCCD).

The phases are timed by wrapping, in this script only, what each trainer calls (neither trainer is
changed): the train loader's `next()` (loader wait), the model's forward, the loss and, inside it,
the TAL assigner, `Tensor.backward`, the optimizer step (unscale, clip, step, zero_grad) and the EMA
update (these two per optimizer step: both accumulate to a nominal batch of 64); "other" is the rest
of the step (moving the batch, the LR schedule, logging). Nested phases
count exclusively (the loss row excludes the assigner, the optimizer row excludes EMA). A step runs
from one batch request to the next.

Each phase gets wall time and CPU time of the training process (`time.process_time`: all its
threads; loader worker processes excluded). Wall time is unreliable on a loaded machine, CPU time
much less so: a descheduled step waits without burning CPU. Both sides run single-threaded
(`--threads`, default 1: what the reference does on CPU, and what is fair on shared cores) with
`--workers` loader processes each; each measurement is its own subprocess. The reference trains in
float32 (AMP off); detforge is profiled in float32 and under bfloat16 autocast (its CPU default where
the CPU has native bfloat16; left out elsewhere), each against the same reference steps.

    python bench/train_profile.py [--sizes 320 640] [--precisions float32 bf16] [--warmup 2] [--steps 3]
                                  [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from children import run_json_child
from data_throughput import private_copy
from report import add_row, new_section, publish
from train_throughput import detforge_trainer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "bccd"
PER_OPTIMIZER_STEP = ("optimizer", "EMA")
PRECISIONS = {"float32": "detforge", "bf16": "detforge-bf16"}  # detforge's precision -> its child
PHASES = ("loader wait", "forward", "loss", "assigner", "backward", "optimizer", "EMA", "other")


class StopProfiling(Exception):
    """Raised from an Ultralytics callback once the profiled steps are done."""


class PhaseClock:
    """Exclusive wall and CPU seconds per phase, split into steps by `step()`."""

    def __init__(self) -> None:
        self.stack: list[list[float]] = []  # per open phase: [child wall, child cpu]
        self.wall: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.cpu: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.steps: list[dict] = []
        self.mark: tuple[float, float] | None = None

    def wrap(self, phase: str, fn):
        def timed(*args, **kwargs):
            self.stack.append([0.0, 0.0])
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                child_wall, child_cpu = self.stack.pop()
                self.wall[phase] += wall - child_wall
                self.cpu[phase] += cpu - child_cpu
                if self.stack:
                    self.stack[-1][0] += wall
                    self.stack[-1][1] += cpu
        return timed

    def step(self) -> None:
        """A step boundary: close the running step's totals (its 'other' is the untimed rest)."""
        now = (time.perf_counter(), time.process_time())
        if self.mark is not None:
            total_wall, total_cpu = now[0] - self.mark[0], now[1] - self.mark[1]
            wall = {p: self.wall[p] * 1000 for p in PHASES}
            cpu = {p: self.cpu[p] * 1000 for p in PHASES}
            wall["other"] = total_wall * 1000 - sum(wall.values())
            cpu["other"] = total_cpu * 1000 - sum(cpu.values())
            self.steps.append({"wall_ms": wall, "cpu_ms": cpu, "step_wall_ms": total_wall * 1000,
                               "step_cpu_ms": total_cpu * 1000})
        self.wall, self.cpu = dict.fromkeys(PHASES, 0.0), dict.fromkeys(PHASES, 0.0)
        self.mark = now


class TimedLoader:
    """Proxy of a train loader: each `next()` starts a step and is timed as loader wait."""

    def __init__(self, loader, clock: PhaseClock, limit: int | None = None) -> None:
        self._loader, self._clock, self._limit = loader, clock, limit

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def __len__(self) -> int:
        return self._limit or len(self._loader)

    def __iter__(self):
        it = iter(self._loader)
        fetch = self._clock.wrap("loader wait", lambda: next(it))
        for _ in range(len(self)):
            self._clock.step()
            try:
                batch = fetch()
            except StopIteration:
                return
            yield batch
        self._clock.step()


def profile_detforge(args: argparse.Namespace) -> PhaseClock:
    import torch

    from detforge.engine.threads import ThreadTuner

    trainer = detforge_trainer(args)
    trainer.threads = ThreadTuner([args.threads])  # fixed count: nothing tuned while profiling
    clock = PhaseClock()
    trainer.train_loader = TimedLoader(trainer.train_loader, clock, args.warmup + args.steps)
    trainer.model.forward = clock.wrap("forward", trainer.model.forward)
    assigner = getattr(trainer.loss_fn, "assigner", None)
    if assigner is not None:
        assigner.forward = clock.wrap("assigner", assigner.forward)
    trainer.loss_fn = clock.wrap("loss", trainer.loss_fn)
    torch.Tensor.backward = clock.wrap("backward", torch.Tensor.backward)
    trainer.ema.update = clock.wrap("EMA", trainer.ema.update)
    trainer._optimizer_step = clock.wrap("optimizer", trainer._optimizer_step)
    trainer._train_epoch(0)
    return clock


def profile_ultralytics(args: argparse.Namespace) -> PhaseClock:
    import torch
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils import loss as loss_module
    from ultralytics.utils import tal

    clock = PhaseClock()
    loss_module.v8DetectionLoss.__call__ = clock.wrap("loss", loss_module.v8DetectionLoss.__call__)
    tal.TaskAlignedAssigner.forward = clock.wrap("assigner", tal.TaskAlignedAssigner.forward)
    torch.Tensor.backward = clock.wrap("backward", torch.Tensor.backward)
    trainer = DetectionTrainer(overrides={
        "model": "yolov8n.yaml", "data": str(args.data / "data.yaml"), "epochs": 100, "imgsz": args.imgsz,
        "batch": args.batch, "workers": args.workers, "device": "cpu", "amp": False, "val": False,
        "plots": False, "save": False, "project": str(args.out), "name": "ultralytics", "exist_ok": True,
        "verbose": False,
    })
    trainer.args.workers = args.workers  # undo the CPU override to 0, so both load in the background
    done = args.warmup + args.steps

    def start(t) -> None:
        torch.set_num_threads(args.threads)  # its select_device set cpu_count - 1, whatever OMP_NUM_THREADS says
        model = t.model
        inner = model.forward

        def forward(x, *a, **k):  # called with the batch dict (forward + loss), then with the images
            return (clock.wrap("loss", inner) if isinstance(x, dict) else clock.wrap("forward", inner))(x, *a, **k)

        model.forward = forward
        t.ema.update = clock.wrap("EMA", t.ema.update)
        t.optimizer_step = clock.wrap("optimizer", t.optimizer_step)

    def epoch_start(t) -> None:
        t.train_loader = TimedLoader(t.train_loader, clock)

    def batch_end(t) -> None:
        if len(clock.steps) + 1 >= done:  # the step now ending is the last one
            clock.step()
            raise StopProfiling

    trainer.add_callback("on_train_start", start)
    trainer.add_callback("on_train_epoch_start", epoch_start)
    trainer.add_callback("on_train_batch_end", batch_end)
    with contextlib.suppress(StopProfiling):
        trainer.train()
    return clock


def child(args: argparse.Namespace) -> None:
    clock = (profile_ultralytics if args.child == "ultralytics" else profile_detforge)(args)
    print(json.dumps({"steps": clock.steps[args.warmup:], "load": os.getloadavg()[0]}), flush=True)


def phase_values(steps: list[dict], kind: str, phase: str) -> list[float]:
    """Per profiled step, the `kind` ("wall_ms"/"cpu_ms") of `phase`; optimizer and EMA only from the
    steps that ran an optimizer step; "step": the whole step."""
    if phase == "step":
        return [s[f"step_{kind}"] for s in steps]
    if phase in PER_OPTIMIZER_STEP:
        return [s[kind][phase] for s in steps if s["wall_ms"]["optimizer"] > 0]
    return [s[kind][phase] for s in steps]


def measure(framework: str, args: argparse.Namespace, imgsz: int, out: Path) -> list[dict]:
    command = [__file__, "--child", framework, "--imgsz", str(imgsz), "--data", str(args.data),
               "--out", str(out), "--batch", str(args.batch), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--workers", str(args.workers), "--threads", str(args.threads)]
    return run_json_child(command, f"{framework} at {imgsz}", args.threads,
                          DETFORGE_CACHE_DIR=str(out / "cache"))["steps"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dataset folder with data.yaml")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="profiled steps per framework and size")
    parser.add_argument("--warmup", type=int, default=2, help="unprofiled steps first")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both")
    parser.add_argument("--precisions", nargs="+", choices=tuple(PRECISIONS), default=list(PRECISIONS),
                        help="detforge's precisions (default: float32 bf16; bf16 only where the CPU has it)")
    parser.add_argument("--json", type=Path, help="write the figures here for bench/report.py")
    parser.add_argument("--child", choices=(*PRECISIONS.values(), "ultralytics"), help=argparse.SUPPRESS)
    parser.add_argument("--imgsz", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    if not (args.data / "data.yaml").exists():
        print(f"skipped: {args.data / 'data.yaml'} not found (pass --data)", file=sys.stderr)
        return 0
    from detforge.device import cpu_has_bf16

    if "bf16" in args.precisions and not cpu_has_bf16():
        print("bf16 rows left out: this CPU has no native bfloat16 (detforge trains in float32 here)", file=sys.stderr)
        args.precisions.remove("bf16")
    section = new_section(
        "train_profile", "Training step profile", "python bench/train_profile.py",
        f"yolov8n from scratch on a private copy of {args.data.name} train, batch {args.batch}, default augmentation, "
        f"{args.workers} loader workers, {args.threads} torch thread(s) on both sides, CPU; the reference in float32 "
        f"(AMP off), detforge in the row's precision (channels-last memory, its CPU default); {args.warmup} "
        f"unprofiled steps, then {args.steps} profiled; milliseconds per step and phase (exclusive), wall time and "
        "CPU time of the training process (loader workers excluded).",
        ["imgsz", "detforge precision", "phase"], {"wall ms": False, "CPU ms": False},
        notes=("Optimizer and EMA rows are per optimizer step, from the profiled steps that ran one: both sides "
               "accumulate gradients up to a nominal batch of 64 (every 4th batch of 16), but the reference ramps "
               "accumulation up from 1 during its warmup iterations, so early on it steps every batch. "
               "The step row is the whole step, median over the profiled steps."))
    with tempfile.TemporaryDirectory() as tmp:
        args.data = private_copy(args.data, Path(tmp))
        for imgsz in args.sizes:
            reference = measure("ultralytics", args, imgsz, Path(tmp))
            for precision in args.precisions:
                ours = measure(PRECISIONS[precision], args, imgsz, Path(tmp))
                for phase in (*PHASES, "step"):
                    add_row(section, {"imgsz": imgsz, "detforge precision": precision, "phase": phase}, {
                        metric: {"detforge": phase_values(ours, kind, phase),
                                 "reference": phase_values(reference, kind, phase)}
                        for metric, kind in (("wall ms", "wall_ms"), ("CPU ms", "cpu_ms"))
                    })
            print(f"imgsz {imgsz} done", file=sys.stderr, flush=True)
    publish(section, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
