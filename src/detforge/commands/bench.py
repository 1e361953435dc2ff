"""`detforge bench`: model latency per deployment backend (eager, fused, fused bf16, ONNX Runtime, OpenVINO, INT8).

The side-by-side with the reference implementation (Ultralytics' eager model and its own ONNX
export, measured in the same run) is `python bench/deploy_latency.py`: it reuses this harness and
keeps the reference — a dev-only dependency — out of the library.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    from detforge.export.bench import DETFORGE_BACKENDS

    parser = subparsers.add_parser(
        "bench",
        help="latency table per backend: eager, fused, fused bf16, ONNX Runtime, OpenVINO, INT8",
        description="Export the model to every backend and time the model alone (no decode/letterbox/NMS) on "
        "random [B,3,S,S] batches: median ms/img of --repeats calls after warm-up, with the load average. "
        "Side by side with Ultralytics: python bench/deploy_latency.py.",
    )
    parser.add_argument("--model", default="yolov8n", help="packaged model name (default yolov8n)")
    parser.add_argument("--weights", help="a .safetensors file to time instead of --model")
    parser.add_argument("--imgsz", type=int, default=640, help="square input size (default 640)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--backends", nargs="+", default=list(DETFORGE_BACKENDS), choices=DETFORGE_BACKENDS,
                        metavar="NAME", help=f"subset of {', '.join(DETFORGE_BACKENDS)} (default all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per row (default 5; median kept)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    parser.add_argument("--threads", type=int, help="torch / onnxruntime threads (default: torch's)")
    parser.add_argument("--data", help="INT8 calibration dataset (default: a few synthetic images)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import logging

    import torch

    import detforge
    from detforge.errors import ConfigError
    from detforge.export.bench import run_bench

    if args.repeats < 5:
        raise ConfigError(f"--repeats {args.repeats}: a median needs at least 5 timed calls")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = detforge.load(args.weights) if args.weights else detforge.create_model(args.model)
    log = logging.getLogger("detforge.bench").info if not args.json else None
    report = run_bench(model.eval(), args.weights or args.model, args.imgsz, args.batch, args.repeats, args.warmup,
                       args.backends, args.threads or torch.get_num_threads(), args.data, log=log)
    report.add_ratios("detforge eager" if "eager" in args.backends else report.rows[0].name)
    print(json.dumps(report.to_dict()) if args.json else report.table())
    return 0
