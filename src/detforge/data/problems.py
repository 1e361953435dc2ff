"""What was wrong with a dataset and what was done about it.

Bad input is never dropped silently: every fix (clip, de-duplicate, EXIF rotate, convert to
RGB), every dropped box and every skipped image becomes one `Problem` line naming the file.
The summary shows the first few on screen and the full list goes to a file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from detforge.fsutil import printable, write_atomic

FIXED = "fixed"  # the data was repaired and kept
DROPPED = "dropped"  # part of the labels (a line, a box) was left out
SKIPPED = "skipped"  # the whole image was left out
ACTIONS = (SKIPPED, DROPPED, FIXED)

# Kinds, used for counting and by callers that must react to one kind (unknown classes stop training).
UNREADABLE_IMAGE = "unreadable image"
TRUNCATED_IMAGE = "truncated image"
MISSING_IMAGE = "missing image"
MISSING_LABELS = "missing label file"
MALFORMED = "malformed label"
OUTSIDE = "box outside image"
SWAPPED = "swapped corners"
UNKNOWN_CLASS = "unknown class"
ZERO_AREA = "zero-area box"
DUPLICATE = "duplicate box"
EXIF_ROTATED = "EXIF rotation"
COLOR_MODE = "not 8-bit RGB"
SIZE_MISMATCH = "size mismatch"
NAMES_MISMATCH = "nc/names mismatch"
CROWD = "crowd annotation"


@dataclass(frozen=True)
class Problem:
    """One finding: `file` (with `:line` where it helps), a `kind` to count by, a `detail`."""

    file: str
    kind: str
    action: str
    detail: str

    def line(self) -> str:
        """One line whatever the file name holds (newlines, escape sequences are shown escaped)."""
        return printable(f"{self.file}: {self.kind}: {self.detail} -> {self.action}")


class ProblemReport:
    """An ordered list of problems with counts by kind and by action.

    File names under `root` are stored relative to it, so lines stay short and readable.
    """

    def __init__(self, problems: list[Problem] | None = None, root: Path | None = None) -> None:
        self.problems: list[Problem] = list(problems or [])
        self.root = root

    def add(self, file: str | Path, kind: str, action: str, detail: str) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        self.problems.append(Problem(self._display(file), kind, action, detail))

    def _display(self, file: str | Path) -> str:
        text = str(file)
        if self.root is not None:
            prefix = str(self.root).rstrip("/") + "/"
            if text.startswith(prefix):
                return text[len(prefix):]
        return text

    def extend(self, other: ProblemReport) -> None:
        self.problems.extend(other.problems)

    def __len__(self) -> int:
        return len(self.problems)

    def __iter__(self):
        return iter(self.problems)

    def count(self, kind: str | None = None, action: str | None = None) -> int:
        return sum(
            1 for p in self.problems if (kind is None or p.kind == kind) and (action is None or p.action == action)
        )

    def by_kind(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))

    def summary(self) -> str:
        """One line: `5 problems: 1 image skipped, 3 boxes dropped, 1 fixed`."""
        if not self.problems:
            return "no problems found"
        counts = Counter(p.action for p in self.problems)
        parts = [f"{counts[a]} {a}" for a in ACTIONS if counts[a]]
        return f"{len(self.problems)} problem(s): " + ", ".join(parts)

    def head(self, n: int) -> list[str]:
        return [p.line() for p in self.problems[:n]]

    def write(self, path: str | Path) -> Path:
        """Write every problem, one per line, to `path` (parents created), atomically; inside the
        dataset `root` no symlink is followed (a downloaded dataset may plant one)."""
        return write_atomic(path, "".join(p.line() + "\n" for p in self.problems), within=self.root)

    def to_dicts(self) -> list[dict[str, str]]:
        return [asdict(p) for p in self.problems]

    @classmethod
    def from_dicts(cls, rows: list[dict[str, str]]) -> ProblemReport:
        return cls([Problem(**row) for row in rows])
