"""Output piped into `head` and logs written to files: no traceback, no progress-bar noise."""

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

from detforge import progress
from detforge.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"


def test_closed_pipe_is_not_a_traceback():
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-m", "detforge", "info", "yolov8n", "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first write, like `| head -c 0`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_broken_pipe_in_process_returns_141(monkeypatch):
    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["info", "yolov8n", "--json"]) == 141


def test_bars_only_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress.progress_bar(range(3)).disable
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not progress.progress_bar(range(3)).disable
    assert progress.progress_bar(range(3), disable=True).disable


def test_training_logs_one_plain_line_per_epoch_without_a_terminal(settings, caplog, monkeypatch):
    from detforge.engine.train_config import make_train_config
    from detforge.engine.trainer import Trainer

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with caplog.at_level(logging.INFO):
        Trainer(make_train_config({**settings, "epochs": 1})).train()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/1  box ")]
    assert len(lines) == 1 and "img/s" in lines[0]
    assert "\r" not in sys.stderr.getvalue()
