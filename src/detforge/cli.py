"""The `detforge` command.

Each sub-command lives in its own module under `detforge.commands` and exposes
`register(subparsers)`; this file only wires them together and turns a `DetforgeError`
into one line on stderr (exit code 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from detforge.errors import DetforgeError

COMMAND_MODULES = (
    "detforge.commands.info",
    "detforge.commands.convert",
    "detforge.commands.train",
    "detforge.commands.demo",
    "detforge.commands.data",
    "detforge.commands.val",
    "detforge.commands.predict",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detforge",
        description="Real-time object detectors built from backbone, neck and head parts.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what a command relaunching itself (torchrun) passes on
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return int(args.run(args) or 0)
    except DetforgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
