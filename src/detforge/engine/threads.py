"""Intra-op thread count for CPU training, chosen by timing training steps.

Every parallel op of a multi-threaded step ends at a barrier that waits for its slowest thread.
On idle cores that costs little and two threads run a YOLOv8n step ~1.5x faster than one; on
cores shared with other busy processes a descheduled thread stalls each of the step's ~1000
barriers, and the same step runs 3-8x slower than with one thread. Which regime a machine is in
changes while a run trains, so `ThreadTuner` checks it every `interval` steps and as soon as steps
slow down: it runs a few steps with the most threads; if those threads kept their cores busy
(process CPU time close to threads x wall time) they are kept, otherwise each smaller count is
timed too and the fastest wins. Skipping the smaller counts when the cores are free matters for
memory too: oneDNN caches its kernels per thread count, and each extra count costs ~100 MB.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import torch

log = logging.getLogger(__name__)
T = TypeVar("T")


class ThreadTuner:
    """Sets `torch.set_num_threads` before each training step.

    candidates: thread counts (one entry: fixed, nothing is timed). trial_steps: steps timed per
    count (the fastest counts, so a one-off stall does not decide). efficient: CPU time / (threads x
    wall time) of the most threads above which the cores are taken to be free. interval: steps
    between checks. slowdown: check at once when `trial_steps` consecutive steps are this much
    slower than the kept count's trial. clock, cpu_clock: wall and process CPU seconds (tests fake them).
    """

    def __init__(self, candidates: Sequence[int], trial_steps: int = 2, efficient: float = 0.6, interval: int = 200,
                 slowdown: float = 1.5, clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] = time.process_time):
        self.candidates = sorted(set(candidates), reverse=True)
        self.trial_steps, self.efficient, self.interval, self.slowdown = trial_steps, efficient, interval, slowdown
        self.clock, self.cpu_clock = clock, cpu_clock
        self.chosen = self.candidates[0]
        self.queue: list[int] = []  # counts still to time in this check
        self.best: dict[int, float] = {}  # fastest step per count in this check
        self.timed = self.since_check = self.slow_steps = 0
        self.busy = 0.0  # highest CPU time / (threads x wall) of the most threads in this check
        self.first = True  # the run's first step (allocations, kernel set-up) is not timed

    @classmethod
    def for_training(cls, device: torch.device, deterministic: bool) -> ThreadTuner:
        """Tune on CPU unless the user fixed the count (OMP_NUM_THREADS) or wants reproducible runs
        (results differ in the last bits between thread counts)."""
        current = torch.get_num_threads()
        if device.type != "cpu" or deterministic or "OMP_NUM_THREADS" in os.environ or current == 1:
            return cls([current])
        return cls([current, current // 2 if current >= 4 else 1, 1])

    def steps(self, batches: Iterable[T]) -> Iterator[T]:
        """Yield `batches`; the time from a yield to the next request is the step that used it."""
        for batch in batches:
            threads = self.queue[0] if self.queue else self.chosen
            if threads != torch.get_num_threads():
                torch.set_num_threads(threads)
            wall, cpu = self.clock(), self.cpu_clock()
            yield batch
            self._record(threads, self.clock() - wall, self.cpu_clock() - cpu)

    def _record(self, threads: int, wall: float, cpu: float) -> None:
        if len(self.candidates) == 1:
            return
        if self.first:
            self.first = False
            self._start_check()
            return
        if self.queue:
            self._trial(threads, wall, cpu)
            return
        self.since_check += 1
        self.slow_steps = self.slow_steps + 1 if wall > self.slowdown * self.best[self.chosen] else 0
        if self.slow_steps >= self.trial_steps or self.since_check >= self.interval:
            self._start_check()

    def _start_check(self) -> None:
        self.queue, self.best = list(self.candidates), {}
        self.timed = self.since_check = self.slow_steps = 0
        self.busy = 0.0

    def _trial(self, threads: int, wall: float, cpu: float) -> None:
        self.best[threads] = min(self.best.get(threads, math.inf), wall)
        self.busy = max(self.busy, cpu / max(wall * threads, 1e-9))
        self.timed += 1
        if self.timed < self.trial_steps:
            return
        self.timed = 0
        self.queue.pop(0)
        if threads == self.candidates[0] and self.busy >= self.efficient:
            self.queue = []  # the threads had their cores: fewer cannot be faster
        if not self.queue:
            chosen = min(self.best, key=self.best.get)
            if chosen != self.chosen:
                timings = ", ".join(f"{n} threads {s:.2f}s" for n, s in self.best.items())
                if chosen < self.candidates[0]:  # news to the user, who may want to free the cores
                    log.info("CPU training: %d of %d intra-op threads, other processes are using the cores "
                             "(fastest steps: %s)", chosen, self.candidates[0], timings)
                else:
                    log.debug("CPU training: back to %d intra-op threads (fastest steps: %s)", chosen, timings)
            self.chosen = chosen


@contextmanager
def threads_restored() -> Iterator[int]:
    """Give torch's intra-op thread count back on exit (also on errors): the tuner changes it per step,
    and a library call must not leave the caller's process with another count."""
    before = torch.get_num_threads()
    try:
        yield before
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
