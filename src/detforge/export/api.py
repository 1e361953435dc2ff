"""`export(model, format=...)`: the one entry point behind `detforge export` and `Detector.export`."""

from __future__ import annotations

from pathlib import Path

from detforge.errors import ExportError

FORMATS = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".torchscript"}


def default_output(weights: str | Path | None, fmt: str, int8: bool = False) -> Path:
    """`W.onnx` beside the weights file (`W_openvino/W.xml` for OpenVINO, `W_int8.onnx` for INT8);
    `model.*` in the working folder for a model not loaded from a file."""
    stem = Path(weights).stem if weights else "model"
    folder = Path(weights).parent if weights else Path(".")
    stem += "_int8" if int8 else ""
    if fmt == "openvino":
        return folder / f"{stem}_openvino" / f"{stem}.xml"
    return folder / f"{stem}{FORMATS[fmt]}"


def export(model, format: str = "onnx", output: str | Path | None = None, imgsz: int | tuple[int, int] | None = None,
           batch: int = 1, dynamic: bool = False, nms: bool = False, half: bool = False, int8: bool = False,
           data: str | Path | None = None, opset: int | None = None, simplify: bool = True,
           conf: float = 0.25, iou: float = 0.7, max_det: int = 300, agnostic: bool = False,
           calibration_images: int = 64, keep_fp32: str = "head", check: bool = True, source: str = "model",
           weights: str | Path | None = None) -> Path:
    """Export the deployed `model` (copied; the caller's model is untouched) and return the written path.

    format: onnx | openvino | torchscript. imgsz, batch, dynamic: the input shape (dynamic frees
    batch, height and width); imgsz defaults to the size the weights were trained at, else 640.
    nms: in-graph NonMaxSuppression → `[B, max_det, 6]` (ONNX, OpenVINO).
    half: float16 weights. int8: post-training static quantization with `calibration_images`
    images from `data`'s train split (ONNX: QDQ; OpenVINO: the QDQ graph compiled to INT8);
    keep_fp32: "head" keeps the heads' last convs and the decode float32, "none" quantizes all.
    check: with int8, score float and INT8 on `data`'s val split and warn on a drop > 1 point mAP50-95.
    """
    fmt = str(format).lower()
    if getattr(model, "backend", None) is not None and not hasattr(model, "head"):
        raise ExportError(f"{source}: already an exported {model.backend} file; export from the .safetensors "
                          "weights it was made from")
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if int8 and data is None:
        raise ExportError("--int8 needs calibration images: pass --data DATA (a data.yaml, COCO json or VOC folder)")
    if int8 and fmt == "torchscript":
        raise ExportError("--int8 is for --format onnx or openvino; TorchScript export stays float")
    if int8 and half:
        raise ExportError("--int8 and --half exclude each other; pick one")
    if nms and fmt == "torchscript":
        raise ExportError("--nms is for --format onnx or openvino; TorchScript keeps the [B, N, 4 + C] output")
    if imgsz is None:
        from detforge.models.provenance import default_imgsz

        imgsz = default_imgsz(model, None)
    weights = weights or (getattr(model, "meta", None) or {}).get("source")  # loaded from a file: export beside it
    path = Path(output) if output is not None else default_output(weights, fmt, int8)
    onnx_settings = {"imgsz": imgsz, "batch": batch, "dynamic": dynamic, "opset": opset, "simplify": simplify,
                     "nms": nms, "conf": conf, "iou": iou, "max_det": max_det, "agnostic": agnostic, "source": source}
    if fmt == "torchscript":
        from detforge.export.torchscript import export_torchscript

        return export_torchscript(model, path, imgsz=imgsz, batch=batch, dynamic=dynamic, half=half, source=source)
    if int8:
        from detforge.export.quantize import export_int8

        return export_int8(model, path, fmt, data, calibration_images=calibration_images, keep_fp32=keep_fp32,
                           check=check, **onnx_settings)
    if fmt == "openvino":
        from detforge.export.openvino import export_openvino

        return export_openvino(model, path, half=half, **onnx_settings)
    from detforge.export.onnx import export_onnx

    return export_onnx(model, path, half=half, **onnx_settings)
