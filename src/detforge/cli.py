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
from typing import NoReturn

from detforge.errors import ConfigError, DetforgeError
from detforge.fsutil import printable
from detforge.limits import MAX_CLASSES

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
    "detforge.commands.ablate",
    "detforge.commands.diagnose",
)


# Numeric options, by destination name, and the values they accept (every command, every element of a list).
# Checked once here, so a new command's `--imgsz` or `--batch` is held to the same range without code.
OPTION_RANGES: dict[str, tuple[float, float]] = {
    "imgsz": (32, 8192), "batch": (1, 4096), "epochs": (1, 1_000_000), "workers": (0, 256), "devices": (1, 1024),
    "conf": (0.0, 1.0), "iou": (0.0, 1.0), "max_det": (1, 100_000), "coco_max_dets": (1, 100_000),
    "slice_size": (32, 8192), "slice_overlap": (0.0, 0.95), "line_width": (1, 1000), "images": (1, 10_000_000),
    "classes": (0, MAX_CLASSES), "num_classes": (1, MAX_CLASSES), "val_fraction": (0.0, 1.0),
    "test_fraction": (0.0, 1.0), "show": (0, 10**9), "lr0": (0.0, 10.0), "patience": (0, 1_000_000),
    "seed": (0, 2**32 - 1), "repeats": (1, 1_000_000),
    "warmup": (0, 1_000_000), "threads": (1, 1024), "calib_images": (1, 1_000_000), "opset": (7, 100),
    "batches": (1, 1_000_000),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported as one `error:` line (exit code 2) like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {printable(self.prog)}: {printable(message)}; see `{self.prog} --help`\n")


def check_options(args: argparse.Namespace) -> None:
    """Refuse a numeric option outside `OPTION_RANGES` (NaN included) in one line, before any work starts."""
    for dest, (low, high) in OPTION_RANGES.items():
        values = getattr(args, dest, None)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, (int, float)) and not low <= value <= high:
                raise ConfigError(f"--{dest.replace('_', '-')} {value}: must be from {low} to {high}")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
        check_options(args)
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
