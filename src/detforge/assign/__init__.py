"""Assigners: decide which anchors learn which ground-truth box."""

from detforge.assign.tal import Assignment, TaskAlignedAssigner
from detforge.assign.targets import pad_targets
from detforge.assign.yolov7_ota import AnchorAssignment, YOLOv7Assigner

__all__ = ["AnchorAssignment", "Assignment", "TaskAlignedAssigner", "YOLOv7Assigner", "pad_targets"]
