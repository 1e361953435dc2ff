"""Callbacks: a user's callback sees the run's events without editing the trainer; the TensorBoard tracker."""

import sys

import pytest
import torch

import detforge
from detforge.engine import threads
from detforge.engine.callbacks import Callbacks, FunctionCallback
from detforge.engine.train_config import make_train_config
from detforge.engine.trainer import Trainer
from detforge.errors import ConfigError


class Recorder(detforge.Callback):
    def __init__(self):
        self.events = []

    def on_run_start(self, trainer):
        self.events.append(("run_start", trainer.start_epoch))

    def on_train_batch_end(self, trainer, epoch, index, batch):
        self.events.append(("batch", epoch, index, tuple(batch["img"].shape)))

    def on_train_epoch_end(self, trainer, epoch, losses):
        self.events.append(("train_epoch", epoch, sorted(losses)))

    def on_fit_epoch_end(self, trainer, epoch, row):
        self.events.append(("fit_epoch", epoch, row["epoch"], "metrics/mAP50-95" in row))

    def on_checkpoint_saved(self, trainer, epoch, path):
        self.events.append(("checkpoint", epoch, path.is_file()))

    def on_run_end(self, trainer, result):
        self.events.append(("run_end", result.epochs_run, result.evaluation is not None))


def test_user_callback_sees_every_event_in_order(settings):
    recorder, rows = Recorder(), []
    result = detforge.train(**{**settings, "epochs": 1}, callbacks=[recorder])
    kinds = [event[0] for event in recorder.events]
    steps = kinds.count("batch")
    assert steps == 2 and kinds == ["run_start", *["batch"] * steps, "train_epoch", "fit_epoch", "checkpoint",
                                    "run_end"]
    assert recorder.events[1] == ("batch", 0, 0, (8, 3, 64, 64))
    assert recorder.events[-4][2] == ["box", "cls", "dfl", "images_per_s"]
    assert recorder.events[-3:] == [("fit_epoch", 0, 1, True), ("checkpoint", 0, True), ("run_end", 1, True)]
    assert (result.run_dir / "results.csv").is_file()  # the built-in callbacks ran too

    trainer = Trainer(make_train_config({**settings, "epochs": 1, "name": "fn"}))
    trainer.add_callback("on_fit_epoch_end", lambda trainer, epoch, row: rows.append(row))
    trainer.train()
    assert [row["epoch"] for row in rows] == [1]


def test_function_callbacks_name_a_known_event():
    with pytest.raises(ValueError, match="unknown callback event 'on_epoch'"):
        FunctionCallback("on_epoch", print)
    seen = []
    Callbacks([FunctionCallback("on_run_end", lambda *a: seen.append(a)), detforge.Callback()]).fire(
        "on_run_end", "trainer", "result")
    assert seen == [("trainer", "result")]


def test_training_gives_back_the_callers_thread_count(settings, monkeypatch):
    monkeypatch.setattr(threads.ThreadTuner, "for_training", classmethod(lambda cls, *a: cls([1])))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        used = []
        trainer = Trainer(make_train_config({**settings, "epochs": 1}))
        trainer.add_callback("on_train_epoch_end", lambda t, e, losses: used.append(torch.get_num_threads()))
        trainer.train()
        assert used == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_tensorboard_logs_scalars_the_batch_and_the_pr_curve(settings):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install "
                        "'detforge[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = detforge.train(**{**settings, "epochs": 2, "logger": "tensorboard"})
    events = EventAccumulator(str(result.run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/box", "train/cls", "train/dfl", "metrics/mAP50-95", "images_per_s"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/box")] == [1, 2]
    assert {"train/batch", "val/PR_curve"} <= set(tags["images"])
    assert events.Images("val/PR_curve")[0].width > 100


def test_tensorboard_missing_is_a_one_line_error(settings, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"logger=tensorboard needs the tensorboard package: pip install "
                                          r"'detforge\[tensorboard\]'"):
        Trainer(make_train_config({**settings, "epochs": 1, "logger": "tensorboard"})).train()
