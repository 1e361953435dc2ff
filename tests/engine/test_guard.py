"""NonFiniteGuard: skip non-finite steps, stop after too many in a row."""

import logging

import pytest
import torch

from detforge.engine.guard import NonFiniteGuard
from detforge.errors import DetforgeError, TrainingDivergedError


def test_finite_loss_passes():
    guard = NonFiniteGuard(max_consecutive=2)
    assert guard.check(torch.tensor(3.5)) is True
    assert guard.check(0.0) is True
    assert guard.skipped == 0


def test_non_finite_loss_is_skipped_and_logged(caplog):
    guard = NonFiniteGuard(max_consecutive=3)
    with caplog.at_level(logging.WARNING, logger="detforge.engine.guard"):
        assert (
            guard.check(torch.tensor(float("nan")), {"box": torch.tensor(float("nan")), "cls": 1.0}) is False
        )
    assert (
        "step skipped" in caplog.text and "box" in caplog.text and "cls" not in caplog.text.split("terms:")[1]
    )
    assert guard.check(torch.tensor([1.0, float("inf")])) is False  # any non-finite element
    assert guard.consecutive == 2 and guard.skipped == 2


def test_a_finite_step_resets_the_streak():
    guard = NonFiniteGuard(max_consecutive=2)
    for _ in range(5):
        assert guard.check(float("inf")) is False
        assert guard.check(1.0) is True
    assert guard.skipped == 5 and guard.consecutive == 0


def test_raises_after_max_consecutive():
    guard = NonFiniteGuard(max_consecutive=3)
    guard.check(float("nan"))
    guard.check(float("nan"))
    with pytest.raises(TrainingDivergedError, match="3 steps in a row.*dfl.*lower lr0") as info:
        guard.check(float("nan"), {"dfl": float("inf")})
    assert isinstance(info.value, DetforgeError)
    assert "\n" not in str(info.value)


def test_rejects_a_zero_limit():
    with pytest.raises(ValueError):
        NonFiniteGuard(max_consecutive=0)
