"""Shared helpers of the security tests and fuzzers (issue 8); conftest.py wires the fixtures and the budget.

The property every hostile input must satisfy:
- it ends in a one-line `DetforgeError` (exit code 2 on the CLI) or a reported problem, never a traceback
  (`run_cli`);
- no file outside the command's outputs changes, content or stat (`snapshot` before and after);
- the process behaves the same afterwards: torch, pathlib and builtins untouched (`process_fingerprint`,
  checked around every test here by the autouse fixture `process_unchanged`);
- peak memory stays bounded (`PeakMemory`).

Budget: by default each fuzzer runs a few derandomized examples (the whole folder takes seconds in
`make test`). With `DETFORGE_FUZZ_SECONDS=N` (`make fuzz`) the N seconds are shared out among the
collected fuzz tests, and each keeps drawing fresh random examples until its share is spent.
A fuzz test looks like:

    @pytest.mark.fuzz
    def test_something():
        @given(st.binary())
        def check(data): ...
        run_fuzz(check, examples=20)
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import os
import pathlib
import stat
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import torch
from hypothesis import HealthCheck, Phase, settings

FUZZ_SECONDS = float(os.environ.get("DETFORGE_FUZZ_SECONDS") or 0)
FUZZ_TESTS = 1  # set by conftest.py to the number of collected fuzz tests


def fuzz_seconds() -> float:
    """This fuzz test's share of the long budget (0 in the short, default run)."""
    return FUZZ_SECONDS / FUZZ_TESTS


def run_fuzz(check: Callable[[], None], examples: int = 20) -> int:
    """Run a `@given` function: `examples` fixed examples by default, or fresh random rounds until this
    test's share of `DETFORGE_FUZZ_SECONDS` is spent. Returns the number of rounds."""
    long = FUZZ_SECONDS > 0
    configured = settings(
        max_examples=max(examples, 100) if long else examples, deadline=None, database=None, derandomize=not long,
        suppress_health_check=list(HealthCheck), print_blob=True,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: each example runs a CLI command,
    )(check)                                                   # and shrinking one took minutes
    stop, rounds = time.monotonic() + fuzz_seconds(), 0
    while True:
        configured()
        rounds += 1
        if time.monotonic() >= stop:
            return rounds


# -- the CLI, in-process -------------------------------------------------------------------------------

@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(argv: list[str]) -> CliResult:
    """`detforge ARGV` in this process; asserts the contract every user error keeps: exit code 0/1 or 2, and
    with 2 exactly one line on stderr starting `error: `, never a traceback (an escaping exception fails)."""
    from detforge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:  # argparse rejects the option: its usage text, exit code 2
            code = exit_.code if isinstance(exit_.code, int) else 2
    result = CliResult(code, out.getvalue(), err.getvalue())
    assert "Traceback" not in result.err, result.err
    assert code in (0, 1, 2), (code, result.err)
    if code == 2 and result.err.startswith("error: "):
        assert result.err.count("\n") == 1, result.err
    return result


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    """Exit code 2 with one `error:` line on stderr (argparse's usage errors end in one `error:` line too)."""
    assert result.code == 2, (result.code, result.err)
    last = result.err.rstrip("\n").splitlines()[-1]
    assert "error: " in last and "Traceback" not in result.err, result.err
    for fragment in fragments:
        assert fragment in last, (fragment, last)


# -- files: nothing outside the outputs changes ----------------------------------------------------------

def snapshot(*roots: Path, skip: Iterable[Path] = ()) -> dict[str, tuple]:
    """Every entry under `roots` (links not followed) → (mode, uid, gid, size, mtime_ns, content hash or
    link target). Entries under a `skip` path (the command's outputs) are left out."""
    skipped = [os.path.abspath(s) for s in skip]
    found: dict[str, tuple] = {}

    def visit(path: str) -> None:
        if any(path == s or path.startswith(s + os.sep) for s in skipped):
            return
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as fh:
                content = hashlib.sha256(fh.read()).hexdigest()
        else:
            content = None
        if stat.S_ISDIR(st.st_mode):  # creating an output inside a folder changes its size and mtime, nothing else
            found[path] = (st.st_mode, st.st_uid, st.st_gid, None, None, None)
        else:
            found[path] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, content)
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(path)):
                visit(os.path.join(path, name))

    for root in roots:
        visit(os.path.abspath(root))
    return found


def assert_unchanged(before: dict[str, tuple], after: dict[str, tuple]) -> None:
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"files changed outside the outputs: {changed[:5]}"


# -- the process: torch, pathlib and builtins behave the same afterwards ---------------------------------

def _attributes(obj: object) -> dict[str, int]:
    """Identity of everything a hostile setattr could replace on a module, class or function."""
    fields = {k: id(v) for k, v in vars(obj).items() if not k.startswith("__pybind11")} if hasattr(
        obj, "__dict__") else {}  # pybind11 extensions park their internals in builtins on first import
    for name in ("__defaults__", "__kwdefaults__", "__code__"):
        if hasattr(obj, name):
            fields[name] = hash(repr(getattr(obj, name)))
    return fields


def process_fingerprint() -> dict[str, object]:
    """What torch, pathlib and builtins do and hold: tensors loaded back, paths rendered, and the identity of
    every attribute of the objects the restricted unpickler allows (torch._utils and friends)."""
    import collections

    buffer = io.BytesIO()
    torch.save({"t": torch.arange(4.0)}, buffer)
    buffer.seek(0)
    watched = [builtins, pathlib.PurePath, pathlib.PurePosixPath, pathlib.Path, pathlib.PosixPath, torch.Tensor,
               torch.nn.Module, torch.nn.Parameter, torch.Size, torch.device, collections.OrderedDict]
    watched += [v for v in vars(torch._utils).values() if callable(v)]
    return {
        "load": torch.load(buffer, weights_only=True)["t"].tolist(),
        "math": (torch.ones(3) * 2 - 1).tolist(),
        "from_numpy": torch.tensor([1.5, -2.0]).numpy().tolist(),
        "path": [str(pathlib.PurePosixPath("a") / "b"), str(Path("/x", "y").name), os.fspath(Path("c"))],
        "watched": {f"{getattr(o, '__module__', '')}.{getattr(o, '__qualname__', o)}": _attributes(o)
                    for o in watched},
        "torch.set_default_dtype": str(torch.get_default_dtype()),
        "sys.path": list(sys.path),
    }


# -- memory -----------------------------------------------------------------------------------------------

def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


class PeakMemory:
    """Peak memory a block adds over what the process held when it started, in bytes (`.grown`): the larger
    of two measures, since neither sees everything —
    - Python and numpy allocations traced by tracemalloc (exact, but blind to torch's and C libraries');
    - on Linux, the resident set size polled every 2 ms and the kernel's peak (VmHWM, reset through
      /proc/self/clear_refs); blind to memory the allocator reuses without asking the kernel.

        with PeakMemory() as peak: load(...)
        assert peak.grown < 64 * 2**20
    """

    def __enter__(self) -> Self:
        self.grown, self.start = 0, None
        tracemalloc.start()
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.start = self.peak = _status("VmRSS")
        except OSError:
            return self
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._done.wait(0.002):
            self.peak = max(self.peak, _status("VmRSS"))

    def __exit__(self, *exc) -> None:
        self.grown = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if self.start is not None:
            self._done.set()
            self._thread.join()
            rss = max(self.peak, _status("VmHWM"), _status("VmRSS")) - self.start
            self.grown = max(self.grown, rss)
