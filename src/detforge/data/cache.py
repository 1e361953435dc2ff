"""Label cache: a split's checked records and problems, saved as numpy arrays.

The cache is keyed by a hash of every input file's path, size and mtime (plus the class names
and a format version), so touching any image or label file rebuilds it. It is written to a
temporary file and renamed into place, so a crash never leaves a half-written cache that a
later run would trust, and never through a symlink planted in the dataset. It lives next to the
dataset (`<root>/.detforge-cache/`) unless that
folder is read-only, then under `$DETFORGE_CACHE_DIR` (default `~/.cache/detforge/datasets`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
from pathlib import Path

import numpy as np

from detforge.data.problems import ProblemReport
from detforge.data.records import LabelStore
from detforge.errors import UnsafePathError
from detforge.fsutil import write_atomic

LOGGER = logging.getLogger(__name__)

VERSION = 1
LOCAL_DIR = ".detforge-cache"


def input_hash(files: list[Path], names: list[str], fmt: str) -> str:
    """sha256 over (path, size, mtime) of each file (missing files count too) and the names."""
    h = hashlib.sha256(f"{VERSION}|{fmt}|{json.dumps(names)}".encode())
    for f in files:
        try:
            st = os.stat(f)
            h.update(os.fsencode(f) + f"|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(os.fsencode(f) + b"|missing\n")
    return h.hexdigest()


def user_cache_dir() -> Path:
    env = os.environ.get("DETFORGE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "detforge" / "datasets"


def _writable(folder: Path) -> bool:
    """Writable by us *and* not marked read-only: root may write anywhere, but should not."""
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return os.access(folder, os.W_OK) and bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def cache_path(root: Path, fmt: str, split: str) -> Path:
    """Where a split's cache goes: beside the dataset if that folder may be written, else the user cache."""
    name = f"{fmt}-{split}.npz"
    local = root / LOCAL_DIR
    try:
        if local.is_symlink():  # planted by whoever made the dataset: never write through it
            LOGGER.warning("%s is a symlink; not used for the label cache (remove it)", local)
        elif (local.is_dir() and _writable(local)) or (not local.exists() and _writable(root)):
            return local / name
    except OSError:  # e.g. a root path too long to look at: use the user cache
        pass
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return user_cache_dir() / f"{root.name}-{digest}" / name


def load(path: Path, key: str) -> tuple[LabelStore, ProblemReport] | None:
    """The cached store and problems if `path` holds a complete cache for `key`, else None."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key or int(data["version"]) != VERSION:
                return None
            store = LabelStore(**{name: data[name] for name in LabelStore.ARRAYS})
            problems = ProblemReport.from_dicts(json.loads(str(data["problems"])))
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001 - any unreadable cache is rebuilt, never trusted
        LOGGER.warning("ignoring unreadable label cache %s (%s)", path, err)
        return None
    return store, problems


def save(path: Path, key: str, store: LabelStore, problems: ProblemReport, root: Path | None = None) -> bool:
    """Write atomically (see `write_atomic`; no symlink followed below the dataset `root`);
    returns False (and logs) if it cannot be written."""
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(key), version=np.array(VERSION),
             problems=np.array(json.dumps(problems.to_dicts())), **store.arrays())
    try:
        write_atomic(path, buffer.getvalue(), within=root)
    except (OSError, UnsafePathError) as err:
        LOGGER.warning("label cache not saved to %s (%s)", path, err)
        return False
    return True
