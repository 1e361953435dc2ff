"""Datasets: YOLO/COCO/VOC readers and writers, validation that loses nothing, a label cache,
the augmentation pipeline and the training/validation loaders."""

from detforge.data.augment import AugmentConfig, letterbox
from detforge.data.dataset import DetectionDataset
from detforge.data.loader import DetectionLoader, build_dataloader, collate
from detforge.data.problems import Problem, ProblemReport
from detforge.data.records import LabeledImage, LabelStore
from detforge.data.scan import SplitLabels, load_split
from detforge.data.spec import DatasetSpec, load_dataset_spec

__all__ = [
    "AugmentConfig",
    "DatasetSpec",
    "DetectionDataset",
    "DetectionLoader",
    "LabelStore",
    "LabeledImage",
    "Problem",
    "ProblemReport",
    "SplitLabels",
    "build_dataloader",
    "collate",
    "letterbox",
    "load_dataset_spec",
    "load_split",
]
