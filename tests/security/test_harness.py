"""The fuzz harness itself: each check notices what it is there to notice."""

from __future__ import annotations

import os

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from security_helpers import PeakMemory, assert_unchanged, process_fingerprint, run_cli, run_fuzz, snapshot


def test_snapshot_sees_content_mode_and_link_changes_but_not_outputs(tmp_path):
    (tmp_path / "out").mkdir()
    victim = tmp_path / "victim"
    victim.write_text("a")
    before = snapshot(tmp_path, skip=[tmp_path / "out"])
    (tmp_path / "out" / "written").write_text("fine")
    assert_unchanged(before, snapshot(tmp_path, skip=[tmp_path / "out"]))
    os.chmod(victim, 0o777)
    assert snapshot(tmp_path)[str(victim)] != before[str(victim)]


def test_fingerprint_sees_a_tampered_function_default():
    before = process_fingerprint()
    original = torch._utils._rebuild_tensor_v2.__defaults__
    torch._utils._rebuild_tensor_v2.__defaults__ = (None, None)
    try:
        assert process_fingerprint()["watched"] != before["watched"]
    finally:
        torch._utils._rebuild_tensor_v2.__defaults__ = original
    assert process_fingerprint() == before


def test_peak_memory_counts_native_allocations():
    with PeakMemory() as peak:
        block = np.ones(64 * 2**20, dtype=np.uint8)
        del block
    assert 60 * 2**20 < peak.grown < 200 * 2**20, peak.grown


def test_run_fuzz_runs_the_examples():
    seen = []

    @given(st.integers())
    def check(value):
        seen.append(value)

    assert run_fuzz(check, examples=5) >= 1 and len(seen) >= 5


def test_run_cli_keeps_the_one_line_contract():
    result = run_cli(["info", "no-such-model"])
    assert result.code == 2 and result.err.startswith("error: unknown model") and result.err.count("\n") == 1
