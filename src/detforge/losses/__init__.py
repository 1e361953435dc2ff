"""Training losses: DFL and the detection losses that combine the terms (registered in `LOSSES`)."""

from detforge.losses.detection import DetectionLoss
from detforge.losses.dfl import dfl_loss
from detforge.losses.objectness import ObjectnessLoss
from detforge.losses.yolov7 import YOLOv7Loss

__all__ = ["DetectionLoss", "ObjectnessLoss", "YOLOv7Loss", "dfl_loss"]
