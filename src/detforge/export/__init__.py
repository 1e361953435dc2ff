"""Deployment: export a detector (ONNX, OpenVINO IR, TorchScript), run exported files through the
same `Predictor`, quantize to INT8.

`export(model, format=...)` is what `detforge export` and `Detector.export` call;
`load_runtime(path)` opens an exported file as a model the predictor and `val` accept.
Heavy packages (onnx, onnxruntime, openvino) are imported only when a function needs them.
"""

from __future__ import annotations

from detforge.export.api import FORMATS, export
from detforge.export.formats import load_runtime, sniff

__all__ = ["FORMATS", "export", "load_runtime", "sniff"]
