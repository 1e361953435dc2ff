"""`detforge diagnose`: gradient conflict between the box and class losses, and the task-alignment report,
on a trained model (engine/diagnose.py)."""

from __future__ import annotations

import argparse
import json
import math


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "diagnose",
        help="gradient-conflict probe and task-alignment report of trained weights",
        description="On a few batches of a dataset split: per layer group (backbone, neck, shared head convs) the "
        "cosine between the box-loss and class-loss gradients and their norm ratio; for the assigner's positives, "
        "class score vs IoU with the matched target per class, the s^a·IoU^b distribution and their Spearman rank "
        "correlation. Writes diagnose.json and alignment.png.",
    )
    p.add_argument("--weights", required=True, help="a trained .safetensors file")
    p.add_argument("--data", required=True, help="data.yaml (YOLO), COCO json, or VOC folder")
    p.add_argument("--split", default="val", help="split to read (default val)")
    p.add_argument("--batches", type=int, default=10, help="batches to measure (default 10)")
    p.add_argument("--batch", type=int, default=8, help="images per batch (default 8)")
    p.add_argument("--imgsz", type=int, help="image size (default: the size the weights were trained at)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    p.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    p.add_argument("--project", default="runs/diagnose", help="parent folder of the run (default runs/diagnose)")
    p.add_argument("--name", default="exp", help="run folder name; a number is added if it exists")
    p.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from detforge.engine.diagnose import diagnose
    from detforge.engine.results import json_safe
    from detforge.errors import ConfigError
    from detforge.runs import next_run_dir

    if args.batches < 1:
        raise ConfigError(f"--batches {args.batches}: must be at least 1")
    save_dir = next_run_dir(args.project, args.name)
    result = diagnose(args.weights, args.data, args.split, args.batches, args.imgsz, args.batch, args.device,
                      args.workers, save_dir)
    report = result.pop("report")
    if args.json:
        print(json.dumps(json_safe(result)))
        return 0
    print(f"gradient conflict (box vs class), {result['batches']} batches of {args.split}:")
    print(f"  {'group':<12} {'cos':>7} {'± std':>7} {'|box|/|cls|':>12}")
    for group, v in result["probe"].items():
        print(f"  {group:<12} {_f(v['cos'])} {_f(v['cos_std'])} {_f(v['ratio'], 12)}")
    print(report.table())
    print(f"results in {save_dir} (diagnose.json, alignment.png)")
    return 0


def _f(value: float, width: int = 7) -> str:
    return f"{'n/a':>{width}}" if value is None or math.isnan(value) else f"{value:>{width}.3f}"
