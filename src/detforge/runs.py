"""Run folders: every command that writes results gets its own `project/name` folder."""

from __future__ import annotations

from pathlib import Path


def next_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """`project/name`, or `name2`, `name3`... when it exists (unless `exist_ok`)."""
    base = Path(project) / name
    if exist_ok or not base.exists():
        return base
    n = 2
    while base.with_name(f"{base.name}{n}").exists():
        n += 1
    return base.with_name(f"{base.name}{n}")
