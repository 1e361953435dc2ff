"""OpenVINO IR export: the ONNX graph converted by OpenVINO's own converter.

Going through ONNX keeps one traced graph for every runtime (and the in-graph NMS works the
same). The IR is `NAME.xml` + `NAME.bin`; detforge's metadata (names, strides, input size, ...)
is stored in the model's runtime info under `detforge`. `half=True` stores the weights as
float16 (OpenVINO's compression; the CPU plugin computes in float32 or its own precision).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from detforge.errors import ExportError

logger = logging.getLogger(__name__)


def onnx_to_openvino(onnx_path: str | Path, xml_path: str | Path, half: bool = False) -> Path:
    """Convert a detforge ONNX file into an OpenVINO IR at `xml_path` (the `.bin` goes beside it)."""
    try:
        import openvino as ov
    except ImportError:
        raise ExportError("openvino is not installed; pip install openvino (or choose --format onnx)") from None
    import onnx

    meta = {p.key: p.value for p in onnx.load_model(str(onnx_path), load_external_data=False).metadata_props}
    model = ov.convert_model(str(onnx_path))
    for key, value in meta.items():
        model.set_rt_info(value, ["detforge", key])
    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml_path), compress_to_fp16=half)
    logger.info("exported %s (+ %s)", xml_path, xml_path.with_suffix(".bin").name)
    return xml_path


def export_openvino(model, path: str | Path, half: bool = False, **onnx_settings) -> Path:
    """Export `model` to ONNX in a temporary folder, then to an OpenVINO IR at `path` (`.xml`)."""
    from detforge.export.onnx import export_onnx

    path = Path(path)
    if path.suffix != ".xml":
        path = path / f"{path.name}.xml" if not path.suffix else path.with_suffix(".xml")
    with tempfile.TemporaryDirectory(prefix="detforge-ov-") as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", **onnx_settings)
        return onnx_to_openvino(onnx_path, path, half=half)
