"""Fixtures and hooks of the security tests: the fuzz budget is shared out among the collected fuzz tests,
and every test here must leave the process as it found it (helpers: security_helpers.py)."""

from __future__ import annotations

import pytest
import security_helpers
from security_helpers import process_fingerprint


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: a property-based fuzzer; DETFORGE_FUZZ_SECONDS sets its budget")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    security_helpers.FUZZ_TESTS = max(1, sum(1 for item in items if item.get_closest_marker("fuzz")))


@pytest.fixture(autouse=True)
def process_unchanged():
    """Every security test: the process behaves the same after it as before."""
    before = process_fingerprint()
    yield
    after = process_fingerprint()
    diff = [k for k in before if before[k] != after[k]]
    if "watched" in diff:
        for name, fields in before["watched"].items():
            now = after["watched"].get(name, {})
            diff += [f"{name}.{k}" for k in fields.keys() | now.keys() if fields.get(k) != now.get(k)]
    assert not diff, f"the process changed: {diff}"
