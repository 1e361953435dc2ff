"""TensorBoard tracker (`--set logger=tensorboard`): a callback, so the trainer knows nothing of it.

Writes event files into the run folder (`tensorboard --logdir runs/train` lists every run):
every results.csv column as a scalar per epoch, the first training batch as an image, and the
final validation's precision-recall curve. Needs the optional `tensorboard` package
(`pip install 'detforge[tensorboard]'`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from detforge.engine.callbacks import Callback
from detforge.errors import ConfigError
from detforge.eval.plots import figure_rgb, pr_curve_figure
from detforge.infer.annotate import batch_mosaic

if TYPE_CHECKING:
    from detforge.engine.trainer import Trainer, TrainResult


def summary_writer_class() -> type:
    """torch's SummaryWriter, or a ConfigError saying how to install TensorBoard."""
    try:
        import tensorboard  # noqa: F401  (torch's writer imports it lazily and fails later without it)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("logger=tensorboard needs the tensorboard package: pip install 'detforge[tensorboard]'") \
            from None
    return SummaryWriter


class TensorBoardLogger(Callback):
    """Scalars per epoch, a batch mosaic and the PR curve, into `run_dir`'s event files."""

    def __init__(self) -> None:
        self.writer_class = summary_writer_class()  # fail at set-up, not after the first epoch
        self.writer = None

    def on_run_start(self, trainer: Trainer) -> None:
        # a resumed run continues its event file's steps; TensorBoard shows the latest value per step
        self.writer = self.writer_class(log_dir=str(trainer.run_dir))

    def on_train_batch_end(self, trainer: Trainer, epoch: int, index: int, batch: dict) -> None:
        if epoch == trainer.start_epoch and index == 0:
            mosaic = batch_mosaic(batch["img"].numpy(), batch["boxes"].numpy(), batch["cls"].numpy(),
                                  batch["batch_idx"].numpy(), trainer.names)
            self.writer.add_image("train/batch", mosaic, epoch + 1, dataformats="HWC")

    def on_fit_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, float(value), epoch + 1)
        self.writer.flush()  # a killed run keeps every finished epoch

    def on_run_end(self, trainer: Trainer, result: TrainResult) -> None:
        evaluation = result.evaluation
        if evaluation is not None:
            coco = evaluation.coco
            figure = pr_curve_figure(coco.recall_points, coco.pr_curve, coco.ap50, evaluation.names)
            self.writer.add_image("val/PR_curve", figure_rgb(figure), result.epochs_run, dataformats="HWC")
        self.writer.close()
