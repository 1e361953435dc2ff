"""`detforge demo`: the main job on an embedded default (what `make demo` runs)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the end-to-end demo on built-in data",
                                   description="Build every packaged model and print its summary.")
    parser.add_argument("--imgsz", type=int, default=640, help="input size for the GFLOPs column")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import detforge
    from detforge.config import packaged_model_names

    for name in packaged_model_names():
        info = detforge.create_model(name).info(64)
        print(f"{name:18s} {info.params:>12,} params  {info.gflops * (args.imgsz / 64) ** 2:7.1f} GFLOPs")
    return 0
