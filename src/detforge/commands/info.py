"""`detforge info MODEL`: per-part parameter / GFLOP table of a model or weights file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show a model's parts, parameters, GFLOPs and output shapes",
        description="Print a per-part table (backbone, neck, each head branch, auxiliary heads): parameters, "
        "GFLOPs and output shapes for one image of --imgsz pixels, and the totals; --deploy for the fused model.",
    )
    parser.add_argument("model", help="packaged name (e.g. yolov8n, yolov8s-p2), a model YAML, a .safetensors file "
                        "or a .pt checkpoint")
    parser.add_argument("--imgsz", type=int, default=640, help="square input size for FLOPs (default 640)")
    parser.add_argument("--num-classes", type=int, help="override head.num_classes")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set head.reg_max=8 (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the table as one JSON object")
    parser.add_argument("--deploy", action="store_true",
                        help="report the deployed model (fused: BatchNorm, RepConv and implicit knowledge folded; "
                        "training-only auxiliary heads removed)")
    parser.set_defaults(run=run)


def load_model(spec: str, num_classes: int | None = None, overrides: list[str] | None = None):
    """A model from a packaged name / YAML, or from a weights file (detforge.load decides its format)."""
    import detforge

    path = Path(spec)
    if path.suffix in (".safetensors", ".pt") or (path.is_file() and path.suffix not in (".yaml", ".yml")):
        return detforge.load(spec)
    return detforge.create_model(spec, num_classes=num_classes, overrides=overrides or [])


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model, args.num_classes, args.overrides)
    if args.deploy:
        model.deploy(target="export")  # plain modules, so that every conv is counted
    info = model.info(args.imgsz)
    print(json.dumps(info.to_dict()) if args.json else info.table())
    return 0
