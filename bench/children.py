"""Bench measurements that run in a process of their own (so peak RSS, imports and torch threads are
that measurement's alone) and print their result as one JSON line.

Every child starts from the environment the bench was started with, taken when this module is
first imported: importing Ultralytics sets OMP_NUM_THREADS=1 in the importing process, and a
parent that scored an Ultralytics model must not pass that on to the next child it starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

STARTING_ENV = dict(os.environ)


def run_json_child(arguments: list[str], what: str, threads: int = 0, **env: str) -> dict:
    """Run `python *arguments` and return the last JSON line it printed. `threads` (unless 0) becomes
    its OMP_NUM_THREADS; `env` adds variables. Exits with the child's stderr when it fails."""
    environment = dict(STARTING_ENV, YOLO_OFFLINE="1", YOLO_VERBOSE="False", **env)
    if threads:
        environment["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run([sys.executable, *arguments], env=environment, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        sys.exit(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])
