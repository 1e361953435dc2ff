"""detforge: real-time object detectors assembled from backbone, neck and head parts."""

from detforge import models as _models  # noqa: F401  (registers the packaged parts)
from detforge.config import ModelConfig, load_config
from detforge.engine.callbacks import Callback
from detforge.engine.trainer import train
from detforge.engine.validate import val
from detforge.errors import DetforgeError
from detforge.export.formats import register_loaders as _register_export_loaders
from detforge.infer.predictor import Predictor, predict
from detforge.io import list_models, load, save_weights
from detforge.models.build import build_model, create_model
from detforge.models.detector import Detector
from detforge.registry import (
    register_assigner,
    register_backbone,
    register_head,
    register_loss,
    register_neck,
)

__all__ = [
    "Callback",
    "Detector",
    "DetforgeError",
    "ModelConfig",
    "Predictor",
    "build_model",
    "create_model",
    "list_models",
    "load",
    "load_config",
    "predict",
    "register_assigner",
    "register_backbone",
    "register_head",
    "register_loss",
    "register_neck",
    "save_weights",
    "train",
    "val",
]
__version__ = "0.1.0"

_register_export_loaders()  # exported ONNX / OpenVINO files open through detforge.load (and --weights)
