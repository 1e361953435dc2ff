"""ThreadTuner: keeps the most threads while they have their cores, else the fastest count."""

import pytest
import torch

from detforge.engine.threads import ThreadTuner, threads_restored


class FakeClocks:
    """Wall and process-CPU clocks advanced by the simulated steps."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def tuner(self, candidates, **kw):
        return ThreadTuner(candidates, clock=lambda: self.wall, cpu_clock=lambda: self.cpu, **kw)


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def run(tuner, clocks, machine, steps):
    """Run `steps` simulated steps; machine(threads) -> (wall seconds, CPU busy fraction per thread).
    Returns the thread count each step ran with."""
    used = []
    for _ in tuner.steps(range(steps)):
        threads = torch.get_num_threads()
        wall, busy = machine(threads)
        clocks.wall += wall
        clocks.cpu += wall * threads * busy
        used.append(threads)
    return used


def idle(threads):
    return {2: (0.6, 0.9), 1: (1.0, 1.0)}[threads]


def shared(threads):  # other processes take the cores: two threads stall at every barrier
    return {2: (4.0, 0.3), 1: (1.2, 0.8)}[threads]


def test_keeps_the_most_threads_while_they_have_their_cores():
    clocks = FakeClocks()
    used = run(clocks.tuner([2, 1], trial_steps=2), clocks, idle, 12)
    assert used == [2] * 12  # one thread is never tried (its kernels would cost memory)


def test_times_fewer_threads_when_the_cores_are_shared(caplog):
    clocks = FakeClocks()
    with caplog.at_level("INFO", logger="detforge.engine.threads"):
        used = run(clocks.tuner([2, 1], trial_steps=2), clocks, shared, 10)
    assert used[:5] == [2, 2, 2, 1, 1]  # first step untimed, two timed steps per count
    assert used[5:] == [1] * 5
    assert [r.getMessage() for r in caplog.records] == [  # said once, so a user can free the cores
        ("CPU training: 1 of 2 intra-op threads, other processes are using the cores "
         "(fastest steps: 2 threads 4.00s, 1 threads 1.20s)")]
    clocks = FakeClocks()  # shared, yet two threads still faster: the timing decides
    used = run(clocks.tuner([2, 1], trial_steps=2), clocks, lambda n: {2: (0.8, 0.5), 1: (1.0, 1.0)}[n], 10)
    assert used[:5] == [2, 2, 2, 1, 1] and used[5:] == [2] * 5


def test_checks_again_when_steps_slow_down_and_every_interval():
    clocks = FakeClocks()
    tuner = clocks.tuner([2, 1], trial_steps=2, interval=100)
    assert run(tuner, clocks, idle, 6) == [2] * 6
    used = run(tuner, clocks, shared, 10)
    assert used == [2, 2, 2, 2, 1, 1, 1, 1, 1, 1]  # two slow steps start a check, which picks one
    clocks = FakeClocks()
    tuner = clocks.tuner([2, 1], trial_steps=1, interval=4)
    assert run(tuner, clocks, shared, 6)[-1] == 1
    used = run(tuner, clocks, idle, 12)  # the load left: the next periodic check returns to two
    assert used[-4:] == [2] * 4


def test_fixed_when_deterministic_or_not_cpu_or_set_by_the_user(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    assert ThreadTuner.for_training(torch.device("cpu"), deterministic=False).candidates == [2, 1]
    assert ThreadTuner.for_training(torch.device("cpu"), deterministic=True).candidates == [2]
    assert ThreadTuner.for_training(torch.device("cuda"), deterministic=False).candidates == [2]
    torch.set_num_threads(8)
    assert ThreadTuner.for_training(torch.device("cpu"), deterministic=False).candidates == [8, 4, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert ThreadTuner.for_training(torch.device("cpu"), deterministic=False).candidates == [8]
    clocks = FakeClocks()
    assert set(run(clocks.tuner([3]), clocks, lambda n: (1.0, 0.1), 5)) == {3}


def test_threads_restored_gives_the_count_back_also_on_errors():
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError), threads_restored() as before:
        assert before == 2
        for _ in ThreadTuner([1]).steps(range(2)):
            assert torch.get_num_threads() == 1
        raise RuntimeError("a failed run")
    assert torch.get_num_threads() == 2
