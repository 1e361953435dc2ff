"""Model latency per backend: the harness behind `detforge bench` (and bench/deploy_latency.py).

Each backend is a callable on a float32 batch `[B, 3, S, S]`; `measure` warms it up, then times
`repeats` calls and keeps the median (a shared machine's other processes hit single calls; the
median is what a quiet run would see most closely). Figures are milliseconds per image of the
model alone — no decode, letterbox or NMS — so backends compare like for like. Backends take turns
call by call (`measure_interleaved`) so load from other processes hits all alike; every figure
carries the 1-minute load average read when its batch size's timing began.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from detforge.device import half_dtype

Backend = Callable[[np.ndarray], object]


@dataclass
class Row:
    """One backend at one batch size."""

    name: str
    batch: int
    ms_per_image: float | None
    repeats: int
    load_average: float
    note: str = ""
    ratio: float | None = None  # against the reference row of the same batch, when there is one
    samples: list[float] = field(default_factory=list)  # ms/img of every timed call

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Report:
    model: str
    imgsz: int
    rows: list[Row] = field(default_factory=list)
    machine: dict = field(default_factory=dict)
    reference: str | None = None

    def to_dict(self) -> dict:
        return {"model": self.model, "imgsz": self.imgsz, "reference": self.reference, "machine": self.machine,
                "rows": [r.to_dict() for r in self.rows]}

    def add_ratios(self, reference: str) -> None:
        """`ratio` = ms/img of each row over the `reference` row's at the same batch (lower is faster)."""
        self.reference = reference
        base = {r.batch: r.ms_per_image for r in self.rows if r.name == reference and r.ms_per_image}
        for row in self.rows:
            if row.ms_per_image and row.batch in base:
                row.ratio = row.ms_per_image / base[row.batch]

    def table(self) -> str:
        batches = sorted({r.batch for r in self.rows})
        names = list(dict.fromkeys(r.name for r in self.rows))
        cells = {(r.name, r.batch): r for r in self.rows}
        head = "| backend | " + " | ".join(f"batch {b}: ms/img | ratio | load" for b in batches) + " |"
        lines = [head, "|---|" + "---:|---:|---:|" * len(batches)]
        for name in names:
            parts = []
            for b in batches:
                row = cells.get((name, b))
                if row is None or row.ms_per_image is None:
                    parts.append(f"{row.note if row else 'n/a'} | | ")
                    continue
                ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
                parts.append(f"{row.ms_per_image:.1f} | {ratio} | {row.load_average:.1f}")
            lines.append(f"| {name} | " + " | ".join(parts) + " |")
        ref = f"; ratio = ms/img over {self.reference}'s (lower is faster)" if self.reference else ""
        machine = ", ".join(f"{k} {v}" for k, v in self.machine.items())
        return "\n".join(lines) + (
            f"\n\nmedian of {self.rows[0].repeats if self.rows else 0} timed calls after "
            f"warm-up{ref}; load = 1-minute load average when the timing began (a busy shared machine: other "
            f"processes compete for the cores); {machine}")


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def machine_info() -> dict:
    """CPU, cores and the versions of everything that runs a backend."""
    info = {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__}
    from importlib.metadata import PackageNotFoundError, version

    for package in ("onnxruntime", "openvino", "onnx", "ultralytics"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = "not installed"
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(run: Backend, batch: np.ndarray, repeats: int = 5, warmup: int = 2) -> float:
    """Median milliseconds per image of `run(batch)` over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        run(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000 / len(batch)


def measure_interleaved(runners: dict[str, Backend], batch: np.ndarray, repeats: int = 5, warmup: int = 2
                        ) -> list[tuple[str, float, float, list[float]]]:
    """(name, median ms/img, load average, ms/img of each call) per runner; the timed calls take turns
    (one call of each runner per round) so that a burst of load from other processes hits every
    backend alike."""
    for run in runners.values():
        for _ in range(warmup):
            run(batch)
    times: dict[str, list[float]] = {name: [] for name in runners}
    load = load_average()
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run(batch)
            times[name].append(time.perf_counter() - start)
    return [(name, statistics.median(t) * 1000 / len(batch), load, [v * 1000 / len(batch) for v in t])
            for name, t in times.items()]


def torch_backend(model: torch.nn.Module, dtype: torch.dtype = torch.float32) -> Backend:
    """Time `model` on the float32 batches, cast to `dtype` first (inside the timing, as `Predictor` does)."""
    def run(x: np.ndarray):
        with torch.inference_mode():
            return model(torch.from_numpy(x).to(dtype))

    return run


def detforge_backends(model, imgsz: int, batch: int, folder: Path, names: list[str], threads: int | None = None,
                      calibration: str | Path | None = None) -> dict[str, Backend | str]:
    """name → backend (or a one-line reason it is unavailable) for each requested detforge backend.

    names: any of eager, fused, fused-half (the fused model in bfloat16, as `predict --half` runs it on a CPU
    with native bf16), onnxruntime, openvino, onnxruntime-int8, openvino-int8.
    Exported files go to `folder`; INT8 calibrates on `calibration` (a dataset) or, without one,
    on a few synthetic images (latency does not depend on the calibration).
    """
    from detforge.errors import DetforgeError
    from detforge.export.api import export
    from detforge.export.runtime import OnnxRuntimeModel, OpenVinoModel

    out: dict[str, Backend | str] = {}
    for name in names:
        try:
            if name == "eager":
                out[name] = torch_backend(copy.deepcopy(model).eval())
            elif name == "fused":
                out[name] = torch_backend(copy.deepcopy(model).deploy())
            elif name == "fused-half":
                half = half_dtype(torch.device("cpu"))  # what predict --half runs on this CPU
                out[name] = (torch_backend(copy.deepcopy(model).deploy(dtype=half), half) if half != torch.float32
                             else "this CPU has no native bfloat16 (predict --half runs float32)")
            elif name in ("onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8"):
                int8 = name.endswith("int8")
                if int8 and calibration is None:
                    from detforge.data.synthetic import synthesize

                    calibration = synthesize(folder / "calibration", images=8, classes=3,
                                             imgsz=imgsz, seed=0)
                fmt = "openvino" if name.startswith("openvino") else "onnx"
                suffix = "xml" if fmt == "openvino" else "onnx"
                path = export(model, fmt, output=folder / f"{name}_b{batch}" / f"model.{suffix}", imgsz=imgsz,
                              batch=batch, int8=int8, data=calibration, calibration_images=8, check=False)
                runtime = OpenVinoModel(path) if fmt == "openvino" else OnnxRuntimeModel(path, threads=threads)
                out[name] = runtime.run
            else:
                out[name] = f"unknown backend {name!r}"
        except (DetforgeError, ImportError) as err:
            out[name] = str(err).splitlines()[0]
    return out


DETFORGE_BACKENDS = ("eager", "fused", "fused-half", "onnxruntime", "openvino", "onnxruntime-int8", "openvino-int8")


def run_bench(model, model_name: str, imgsz: int = 640, batches=(1, 8), repeats: int = 5, warmup: int = 2,
              backends=DETFORGE_BACKENDS, threads: int | None = None, calibration=None,
              extra: Callable[[int, Path], dict[str, Backend | str]] | None = None, prefix: str = "detforge ",
              log: Callable[[str], None] | None = None) -> Report:
    """Measure every backend at every batch size, the timed calls of all backends interleaved;
    `extra(batch, folder)` adds more rows (e.g. a reference)."""
    report = Report(model_name, imgsz, machine=machine_info())
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="detforge-bench-") as tmp:
        for batch in batches:
            x = rng.random((batch, 3, imgsz, imgsz), dtype=np.float32)
            runners = {prefix + k: v for k, v in detforge_backends(model, imgsz, batch, Path(tmp), list(backends),
                                                                   threads, calibration).items()}
            if extra is not None:
                runners.update(extra(batch, Path(tmp)))
            available = {k: v for k, v in runners.items() if not isinstance(v, str)}
            for name, run in runners.items():
                if isinstance(run, str):
                    report.rows.append(Row(name, batch, None, repeats, load_average(), note=run))
            for row in measure_interleaved(available, x, repeats, warmup):
                report.rows.append(Row(row[0], batch, row[1], repeats, row[2], samples=row[3]))
                if log is not None:
                    log(f"{row[0]} batch {batch}: {row[1]:.1f} ms/img (load {row[2]:.1f})")
    return report
