"""Progress bars only where someone watches them.

A bar redraws itself with carriage returns; in a log file or a CI console (stderr is not a
terminal) that becomes one unreadable line per update. `progress_bar` is tqdm on a terminal
and a silent pass-through elsewhere; long loops then log one plain line per epoch instead
(`interactive()` tells them which).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm


def interactive() -> bool:
    """True when stderr (where bars are drawn) is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress_bar(iterable: Iterable | None = None, *, disable: bool = False, **kwargs) -> tqdm:
    """`tqdm(iterable, **kwargs)`, disabled when `disable` or when stderr is not a terminal."""
    return tqdm(iterable, disable=disable or not interactive(), **kwargs)
