"""`detforge convert SRC.pt DST.safetensors`: import a foreign training checkpoint safely."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an Ultralytics YOLOv8 .pt checkpoint to a detforge .safetensors file",
        description="Read a foreign .pt checkpoint with a restricted unpickler (a file that would run code "
        "is refused), rebuild the matching detforge model and write its weights, config and class "
        "names to one safetensors file that detforge.load() reads back.",
    )
    parser.add_argument("src", help="the .pt checkpoint, e.g. best.pt from an Ultralytics training run")
    parser.add_argument("dst", help="the .safetensors file to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from detforge.io.convert import convert

    model = convert(args.src, args.dst)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"architecture  {model.config.name} ({model.config.backbone.type} / {model.config.neck.type} / "
        f"{model.config.head.type} head)"
    )
    print(
        f"classes       {model.num_classes}: {', '.join(model.names[:5])}"
        f"{', ...' if model.num_classes > 5 else ''}"
    )
    print(f"parameters    {params:,}")
    print(f"written       {args.dst}")
    return 0
