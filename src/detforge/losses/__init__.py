"""Training losses: DFL, the detection loss that combines them, and the non-finite-loss guard."""

from detforge.losses.detection import DetectionLoss
from detforge.losses.dfl import dfl_loss
from detforge.losses.guard import NonFiniteGuard
from detforge.losses.yolov7 import YOLOv7Loss

__all__ = ["DetectionLoss", "NonFiniteGuard", "YOLOv7Loss", "dfl_loss"]
