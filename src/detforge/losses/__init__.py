"""Training losses: DFL and the detection losses that combine the terms (registered in `LOSSES`)."""

from detforge.losses.detection import DetectionLoss
from detforge.losses.dfl import dfl_loss
from detforge.losses.yolov7 import YOLOv7Loss

__all__ = ["DetectionLoss", "YOLOv7Loss", "dfl_loss"]
