"""INT8 post-training static quantization (onnxruntime QDQ), for ONNX Runtime and OpenVINO.

1. Export the float ONNX graph (fixed shape: calibration ranges are per tensor; any H x W).
2. Calibrate: run images of the dataset's train split, letterboxed to the input as inference does,
   and record each activation's range (MinMax).
3. Insert QuantizeLinear/DequantizeLinear pairs: weights int8 per output channel (symmetric),
   activations uint8 — the pairing x86 CPUs run with VNNI instructions. With `keep_fp32="head"`
   the heads' prediction convs (the convs without an activation after them) and every node
   after them (the DFL softmax, the decode, the score sigmoids) stay float32: they are cheap
   and decide the box coordinates and scores, where 8 bits hurt most.
4. For OpenVINO the QDQ graph is converted as it is; OpenVINO's CPU plugin runs it in INT8.
5. When the dataset has a val split (and `check=True`), score the float and the INT8 file on it
   and store both mAP50-95 values in the file's metadata; a drop of more than
   `MAX_MAP_DROP` (1 point) is logged as a warning. `detforge val` on the file shows both.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from detforge.errors import ExportError

logger = logging.getLogger(__name__)

MAX_MAP_DROP = 0.01  # mAP50-95, as a fraction (1 point)
KEEP_FP32 = ("head", "none")


def calibration_batches(data, imgsz: int | tuple[int, int], count: int, split: str = "train") -> list[np.ndarray]:
    """Up to `count` float32 images `[1, 3, H, W]` in 0..1 from `split` of `data` (its checked labels'
    image list, in order), each letterboxed to the export's (H, W) with the inference letterbox."""
    import cv2

    from detforge.data import load_dataset_spec
    from detforge.data.augment import letterbox
    from detforge.data.images import read_image
    from detforge.data.scan import load_split

    spec = load_dataset_spec(data)
    split = split if split in spec.splits else next(iter(spec.splits))  # a one-split dataset calibrates on it
    store = load_split(spec, split).store
    shape = (int(imgsz), int(imgsz)) if isinstance(imgsz, (int, float)) else tuple(int(s) for s in imgsz)
    batches = []
    for i in range(len(store)):
        image = read_image(store.path(i))
        if image is None:
            continue
        boxed, _, _ = letterbox(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), shape)
        batches.append(np.ascontiguousarray(boxed.transpose(2, 0, 1)[None], dtype=np.float32) / 255)
        if len(batches) >= count:
            break
    if not batches:
        raise ExportError(f"{data}: split {split!r} has no readable images to calibrate INT8 with; check the dataset")
    return batches


def sensitive_nodes(proto) -> list[str]:
    """Names of the nodes `keep_fp32="head"` leaves in float: prediction convs and all that follows them."""
    consumers: dict[str, list] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    prediction = [n for n in proto.graph.node if n.op_type == "Conv"
                  and not any(c.op_type == "Sigmoid" for c in consumers.get(n.output[0], []))]
    keep, stack = set(), list(prediction)
    while stack:
        node = stack.pop()
        if node.name in keep:
            continue
        keep.add(node.name)
        for out in node.output:
            stack.extend(consumers.get(out, []))
    return sorted(keep)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of input arrays."""

    def __init__(self, name: str, batches: list[np.ndarray], batch: int):
        self.name, self.batch = name, batch
        grouped = [np.concatenate(batches[i:i + batch]) for i in range(0, len(batches) - batch + 1, batch)]
        self.items = iter(grouped or [np.concatenate([batches[0]] * batch)])

    def get_next(self):
        item = next(self.items, None)
        return None if item is None else {self.name: item}

    def rewind(self):  # not needed for MinMax
        pass


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


def quantize_onnx(float_path: str | Path, out_path: str | Path, batches: list[np.ndarray], batch: int = 1,
                  keep_fp32: str = "head") -> Path:
    """Write the QDQ INT8 version of the float ONNX file `float_path` to `out_path` (metadata kept)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if keep_fp32 not in KEEP_FP32:
        raise ExportError(f"keep_fp32 {keep_fp32!r} is unknown; use one of {', '.join(KEEP_FP32)}")
    proto = onnx.load(str(float_path))
    meta = {p.key: p.value for p in proto.metadata_props}
    exclude = sensitive_nodes(proto) if keep_fp32 == "head" else []
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    quiet = _DropAdvice()
    root.addFilter(quiet)  # onnxruntime logs "consider pre-processing" advice on the root logger
    try:
        quantize_static(str(float_path), str(out_path), _Reader(proto.graph.input[0].name, batches, batch),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    finally:
        root.removeFilter(quiet)
    quantized = onnx.load(str(out_path))
    meta.update({"quantization": "int8-qdq", "keep_fp32": keep_fp32, "calibration_images": str(len(batches))})
    del quantized.metadata_props[:]
    for key, value in meta.items():
        quantized.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(quantized)
    onnx.save_model(quantized, str(out_path))
    return out_path


def compare_map(float_path: Path, int8_path: Path, data, imgsz: int, split: str = "val") -> dict[str, float] | None:
    """mAP50-95 of the float and the INT8 file on `split` of `data`, or None when it has no such split."""
    from detforge.data import load_dataset_spec
    from detforge.engine.validate import val
    from detforge.export.formats import load_runtime

    if split not in load_dataset_spec(data).splits:
        logger.info("%s has no %r split; INT8 accuracy not checked", data, split)
        return None
    scores = {}
    for key, path in (("fp32", float_path), ("int8", int8_path)):
        try:
            result = val(load_runtime(path), data, split=split, imgsz=imgsz, batch=1, workers=0, plots=False,
                         progress=False)
        except ExportError as err:  # e.g. a portrait image does not fit a landscape export
            logger.warning("INT8 accuracy not checked: %s", err)
            return None
        scores[key] = float(result.summary()["mAP50-95"] or 0.0)
    return scores


def warn_if_dropped(scores: dict[str, float], source: str) -> bool:
    """Log a warning when INT8 loses more than `MAX_MAP_DROP` mAP50-95; returns whether it did."""
    drop = scores["fp32"] - scores["int8"]
    if drop > MAX_MAP_DROP:
        logger.warning("%s: INT8 mAP50-95 %.4f is %.1f points below float32's %.4f; keep sensitive layers in "
                       "float32 (--keep-fp32 head), calibrate on more images (--calib-images), or deploy float32",
                       source, scores["int8"], 100 * drop, scores["fp32"])
        return True
    return False


def export_int8(model, path: str | Path, fmt: str, data, calibration_images: int = 64, keep_fp32: str = "head",
                check: bool = True, **onnx_settings) -> Path:
    """Export `model` as an INT8 ONNX file, or an OpenVINO IR built from it (`fmt="openvino"`)."""
    import onnx

    from detforge.export.onnx import export_onnx

    if onnx_settings.get("dynamic"):
        raise ExportError("--int8 needs a fixed input shape (calibrated ranges); drop --dynamic")
    path = Path(path)
    imgsz = onnx_settings.get("imgsz", 640)
    batch = int(onnx_settings.get("batch", 1))
    with tempfile.TemporaryDirectory(prefix="detforge-int8-") as tmp:
        float_path = export_onnx(model, Path(tmp) / "float.onnx", **onnx_settings)
        meta = {m.key: m.value for m in onnx.load(str(float_path)).metadata_props}
        batches = calibration_batches(data, json.loads(meta["imgsz"]), calibration_images)
        int8_path = Path(tmp) / "int8.onnx" if fmt == "openvino" else path
        quantize_onnx(float_path, int8_path, batches, batch, keep_fp32)
        side = max(imgsz) if isinstance(imgsz, (tuple, list)) else int(imgsz)
        scores = compare_map(float_path, int8_path, data, side) if check else None
        if scores is not None:
            warn_if_dropped(scores, str(path))
            _store_scores(int8_path, scores)
        if fmt == "openvino":
            from detforge.export.openvino import onnx_to_openvino

            return onnx_to_openvino(int8_path, path)
        return path


def _store_scores(path: Path, scores: dict[str, float]) -> None:
    import onnx

    proto = onnx.load(str(path))
    for key, value in (("map50_95_fp32", scores["fp32"]), ("map50_95_int8", scores["int8"])):
        proto.metadata_props.add(key=key, value=f"{value:.6f}")
    onnx.save_model(proto, str(path))
