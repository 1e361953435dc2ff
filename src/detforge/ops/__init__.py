"""Tensor operations that several parts share: box encodings and IoU variants."""

from detforge.ops.boxes import dfl_decode, distance_to_xyxy, xyxy_to_distance
from detforge.ops.iou import aligned_iou

__all__ = ["aligned_iou", "dfl_decode", "distance_to_xyxy", "xyxy_to_distance"]
