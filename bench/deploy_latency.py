"""Deployment latency, detforge vs Ultralytics, in one run: `detforge bench`'s harness plus the
reference's eager model (fused, as its predictor runs it) and its own ONNX export in onnxruntime.

Both sides run a randomly initialised YOLOv8n (80 classes; detforge `create_model("yolov8n")`,
Ultralytics `YOLO("yolov8n.yaml")`) on the same random float32 batches `[B, 3, S, S]`: the model
alone, no decode/letterbox/NMS. Both ONNX files run in onnxruntime with the same session
settings (all graph optimizations, the same thread count). Median ms/img of --repeats calls
after warm-up; every row records the 1-minute load average before it (the machine is shared).
Ratios are against the reference's ONNX Runtime row at the same batch. `--json PATH` writes the
raw samples as a bench/report.py section (`make bench` renders it into docs/benchmarks.md):
detforge's fused eager model against the reference's, every exported backend against the
reference's ONNX Runtime.

    python bench/deploy_latency.py [--imgsz 640] [--batch 1 8] [--repeats 5] [--threads 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

import detforge
from detforge.export.bench import DETFORGE_BACKENDS, run_bench, torch_backend
from report import add_row, new_section, publish

REFERENCE = "Ultralytics onnxruntime"
REFERENCE_EAGER = "Ultralytics eager (fused)"


def reference_backends(imgsz: int, threads: int):
    """(batch, folder) → {name: backend} for Ultralytics' fused eager model and its ONNX export."""
    try:
        from ultralytics import YOLO
    except ImportError:
        raise SystemExit("Ultralytics is not installed (a dev-only reference): pip install ultralytics") from None
    import onnxruntime as ort

    def backends(batch: int, folder: Path):
        eager = YOLO("yolov8n.yaml").model.fuse().eval()
        onnx_path = YOLO("yolov8n.yaml").export(format="onnx", imgsz=imgsz, batch=batch, simplify=True)
        torch.set_num_threads(threads)  # its export selects the CPU, which sets torch to cpu_count - 1 threads
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        Path(onnx_path).unlink(missing_ok=True)
        return {REFERENCE_EAGER: torch_backend(eager),
                REFERENCE: lambda x: session.run(None, {name: x})}

    return backends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--backends", nargs="+", default=list(DETFORGE_BACKENDS))
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    page = new_deploy_section(args)  # before timing: its load and CPU-share readings must not count our own run
    model = detforge.create_model("yolov8n").eval()
    report = run_bench(model, "yolov8n", args.imgsz, args.batch, args.repeats, args.warmup, args.backends,
                       args.threads, extra=reference_backends(args.imgsz, args.threads), log=print)
    report.add_ratios(REFERENCE)
    print(report.table())
    if args.json:
        add_deploy_rows(page, report)
        publish(page, args.json)
        args.json.with_suffix(".table.json").write_text(json.dumps(report.to_dict(), indent=2))


def new_deploy_section(args) -> dict:
    """The bench/report.py section the figures go to."""
    return new_section(
        "deploy", "Deployment latency (model only)",
        f"python bench/deploy_latency.py --imgsz {args.imgsz} --batch {' '.join(map(str, args.batch))} "
        f"--threads {args.threads}",
        f"YOLOv8n (80 classes, random init) on random [B, 3, {args.imgsz}, {args.imgsz}] float32 batches, the "
        f"model alone (no decode/letterbox/NMS); {args.warmup} warm-up calls, then the backends take turns call "
        f"by call; {args.threads} threads (torch, onnxruntime intra-op); both ONNX files in onnxruntime with "
        "the same session settings; INT8 calibrated on 8 synthetic images",
        ["detforge", "reference", "batch"], {"ms/img": False},
        notes="Reference rows: Ultralytics' fused eager model and its own ONNX export (onnxruntime).")


def add_deploy_rows(out: dict, report) -> None:
    """Raw ms/img samples, each detforge row against the matching reference row."""
    rows = {(r.name, r.batch): r for r in report.rows}
    for (name, batch), row in rows.items():
        if name.startswith("Ultralytics") or not row.samples:
            continue
        ref_name = REFERENCE_EAGER if name.endswith(("eager", "fused", "fused-half")) else REFERENCE
        ref = rows.get((ref_name, batch))
        add_row(out, {"detforge": name.removeprefix("detforge "), "reference": ref_name, "batch": batch},
                {"ms/img": {"detforge": row.samples, "reference": ref.samples if ref else []}})


if __name__ == "__main__":
    main()
