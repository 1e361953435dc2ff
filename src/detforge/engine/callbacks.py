"""Callbacks: what a run reports, kept out of the training loop.

The trainer calls a few events on every callback it holds; results.csv, the plots and the
TensorBoard logger are callbacks like a user's own, so adding a tracker never means editing the
trainer:

    class KeepMAP(detforge.Callback):
        def __init__(self):
            self.history = []

        def on_fit_epoch_end(self, trainer, epoch, row):
            self.history.append((epoch, row["metrics/mAP50-95"]))

    detforge.train(model="yolov8n", data="data.yaml", callbacks=[KeepMAP()])

Events run in the main process only (rank 0 under DDP), in the order the callbacks were added,
built-in ones first. A callback must not draw from the global random generators (torch, numpy,
random): a resumed run repeats an uninterrupted one only if they advance the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detforge.engine.results import ResultsLog, plot_results
from detforge.infer.annotate import plot_batch

if TYPE_CHECKING:
    from detforge.engine.trainer import Trainer, TrainResult

EVENTS = ("on_run_start", "on_train_batch_end", "on_train_epoch_end", "on_fit_epoch_end", "on_checkpoint_saved",
          "on_run_end")


class Callback:
    """Override the events you need; each gets the trainer (its config, run_dir, model, ema, names...)."""

    def on_run_start(self, trainer: Trainer) -> None:
        """Set-up is done (model, loaders, optimizer; a resumed run's state restored); training starts."""

    def on_train_batch_end(self, trainer: Trainer, epoch: int, index: int, batch: dict) -> None:
        """Training step `index` of `epoch` (0-based) has run on `batch` (the loader's dict, uint8 images)."""

    def on_train_epoch_end(self, trainer: Trainer, epoch: int, losses: dict[str, float]) -> None:
        """The training pass of `epoch` is over: mean loss terms across ranks, plus images_per_s."""

    def on_fit_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        """After validation: the epoch's results row (epoch, train/*, metrics/*, lr/*, images_per_s)."""

    def on_checkpoint_saved(self, trainer: Trainer, epoch: int, path: Path) -> None:
        """`path` (last_state.safetensors) now holds everything needed to resume after `epoch`."""

    def on_run_end(self, trainer: Trainer, result: TrainResult) -> None:
        """The run is over; `result.evaluation` is the final validation of the best weights (or None)."""


class FunctionCallback(Callback):
    """One event handled by a plain function: `trainer.add_callback("on_fit_epoch_end", fn)`."""

    def __init__(self, event: str, fn: Callable[..., Any]):
        if event not in EVENTS:
            raise ValueError(f"unknown callback event {event!r}; events: {', '.join(EVENTS)}")
        setattr(self, event, fn)


class Callbacks:
    """The trainer's ordered list of callbacks; `fire(event, ...)` calls the event on each."""

    def __init__(self, callbacks: list[Callback] | None = None):
        self.items: list[Callback] = list(callbacks or [])

    def add(self, callback: Callback) -> None:
        self.items.append(callback)

    def fire(self, event: str, *args: Any) -> None:
        for callback in self.items:
            handler = getattr(callback, event, None)
            if handler is not None:
                handler(*args)


class ResultsCsv(Callback):
    """results.csv: one row per epoch; a resumed run first drops the rows the killed run wrote after its
    last checkpoint."""

    def on_run_start(self, trainer: Trainer) -> None:
        trainer.results = ResultsLog(trainer.run_dir / "results.csv")
        if trainer.resume_state is not None:
            trainer.results.truncate_after(trainer.start_epoch)

    def on_fit_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        trainer.results.append(row)


class TrainingPlots(Callback):
    """train_batch0.png after the first epoch, results.png and the final validation's curves at the end."""

    def on_fit_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        if epoch == trainer.start_epoch:
            batch = next(iter(trainer.train_loader))
            plot_batch(batch["img"].numpy(), batch["boxes"].numpy(), batch["cls"].numpy(),
                       batch["batch_idx"].numpy(), trainer.names, trainer.run_dir / "train_batch0.png")

    def on_run_end(self, trainer: Trainer, result: TrainResult) -> None:
        plot_results(ResultsLog(trainer.run_dir / "results.csv"), trainer.run_dir / "results.png")
        if result.evaluation is not None:
            result.evaluation.save_plots(trainer.run_dir)
