"""Writing files safely, and text that is safe to write.

Every file detforge writes that a user will read or load again goes through `write_atomic`:
a new file is created exclusively (`O_EXCL | O_NOFOLLOW`, so a planted symlink is never
followed), filled, flushed and renamed over the target, so a reader sees the old file or the
new one, never half of one, and a symlink at the target is replaced, not written through.

Folders inside a downloaded dataset are not ours: a `.detforge-cache` that is a symlink to
`~/.ssh` would otherwise send our writes there. With `within=<dataset root>`, every folder
from that root down to the file is opened with `O_NOFOLLOW` (and created if missing), and a
symlink anywhere on that path, or at the target, is refused with an `UnsafePathError`.

`printable` escapes control characters (newline, ESC, lone surrogates from non-UTF-8 file
names, ...) so a file name cannot add lines to a report or drive the terminal.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import unicodedata
from pathlib import Path

from detforge.errors import UnsafePathError

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable(text: object) -> str:
    """`text` with every control / format / unpaired-surrogate character escaped (`\\n`, `\\x1b`, `\\udcff`)."""
    text = str(text)
    if text.isprintable():  # fast path: nothing to escape (spaces are printable too)
        return text
    return "".join(
        c.encode("unicode_escape", "backslashreplace").decode("ascii")
        if unicodedata.category(c) in _ESCAPED_CATEGORIES else c
        for c in text
    )


def read_limited(path: str | Path, limit: int | None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, else OSError: a FIFO or device planted in a
    dataset would block or never end, and a huge file would be read whole."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    with open(path, "rb") as fh:
        data = fh.read() if limit is None else fh.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than the {limit:,}-byte limit", str(path))
    return data


def write_atomic(path: str | Path, data: bytes | str, within: str | Path | None = None) -> Path:
    """Write `data` (str is UTF-8 encoded) to `path` atomically; returns `path`.

    within: a folder whose contents are not trusted (a dataset root): when `path` lies inside it,
    no symlink is followed between it and `path`, and `path` itself must not be a symlink.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8", "backslashreplace")
    within = Path(within) if within is not None and _inside(path, Path(within)) else None
    dir_fd = _open_folder(path.parent, within)
    try:
        _refuse_symlink(path, dir_fd, strict=within is not None)
        tmp, fd = _create_exclusive(path.name, dir_fd)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path


def _inside(path: Path, folder: Path) -> bool:
    path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return path != folder and path.is_relative_to(folder)


def _open_folder(folder: Path, within: Path | None) -> int:
    """An fd of `folder` (created if missing); below `within`, each step is opened without following links."""
    if within is None:
        folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    parts = Path(os.path.abspath(folder)).relative_to(os.path.abspath(within)).parts
    fd = os.open(within, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    where = within
    try:
        for part in parts:
            where = where / part
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, dir_fd=fd)
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as err:
                raise UnsafePathError(
                    f"{where}: is a symlink or not a folder ({err.strerror}); refusing to write through it — "
                    "remove it (the dataset may have been tampered with)"
                ) from None
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refuse_symlink(path: Path, dir_fd: int, strict: bool) -> None:
    try:
        mode = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise UnsafePathError(f"{path}: is a folder; choose a file name")
    if strict and stat.S_ISLNK(mode):
        raise UnsafePathError(
            f"{path}: is a symlink; refusing to write through it — remove it (the dataset may have been tampered with)"
        )


def _create_exclusive(name: str, dir_fd: int) -> tuple[str, int]:
    """(name, fd) of a new temporary file beside `name` that did not exist before (never a link)."""
    for _ in range(100):
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return tmp, os.open(tmp, _NEW_FILE_FLAGS, 0o666, dir_fd=dir_fd)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {name}")
