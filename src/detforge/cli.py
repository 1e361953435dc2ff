"""The `detforge` command.

Each sub-command lives in its own module under `detforge.commands` and exposes
`register(subparsers)`; this file only wires them together and turns a `DetforgeError`
into one line on stderr (exit code 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from detforge.errors import DetforgeError
from detforge.fsutil import printable

COMMAND_MODULES = (
    "detforge.commands.info",
    "detforge.commands.convert",
    "detforge.commands.train",
    "detforge.commands.demo",
    "detforge.commands.data",
    "detforge.commands.val",
    "detforge.commands.predict",
    "detforge.commands.export",
    "detforge.commands.bench",
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
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not in the interpreter's exit flush
        return code
    except DetforgeError as err:
        print(f"error: {printable(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader closed the pipe (`detforge info --json | head -c 300`): nothing left to say to it
        _silence_stdout()
        return 141  # what a shell reports for a process ended by SIGPIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests, embedded use)
        pass


if __name__ == "__main__":
    sys.exit(main())
