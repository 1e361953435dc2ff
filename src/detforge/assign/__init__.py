"""Assigners: decide which anchors learn which ground-truth box."""

from detforge.assign.tal import Assignment, TaskAlignedAssigner
from detforge.assign.targets import pad_targets

__all__ = ["Assignment", "TaskAlignedAssigner", "pad_targets"]
