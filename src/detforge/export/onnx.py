"""ONNX export of the deployed detector.

The graph maps `images [B, 3, H, W]` (RGB, 0..1, float32) to `output0 [B, N, 4 + C]`: xyxy boxes in
input pixels, then per-class scores in [0, 1] — exactly what the PyTorch model returns in eval
mode, so the same NMS and the same `Results` follow. With `nms=True` an in-graph
NonMaxSuppression turns that into `detections [B, max_det, 6]` (see `detforge.export.nms`).

The file is traced with the TorchScript-based exporter (it needs no extra packages), then
simplified with onnxslim (constant folding, fused shape arithmetic), checked with
`onnx.checker`, and labelled with metadata a loader needs: class names, strides, input size,
batch, whether axes are dynamic, what the output means, and the model config JSON.
"""

from __future__ import annotations

import io
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detforge.errors import ExportError
from detforge.export.deploy import check_output, deployed_copy
from detforge.export.graph import ExportGraph
from detforge.models.detector import max_stride

logger = logging.getLogger(__name__)

PREFERRED_OPSET = 19  # newest opset the runtimes used here (onnxruntime, OpenVINO) are tested with
MIN_OPSET = 11  # Resize / Range / dynamic shapes as traced
NMS_MIN_OPSET = 12  # NonMaxSuppression (10), TopK with a k input (10), Pad with a pads input (11), int64 Min (12)
INPUT_NAME = "images"
METADATA_FORMAT = "detforge"


def exporter_max_opset() -> int:
    """Highest opset both the TorchScript-based exporter and the installed `onnx` package know."""
    import onnx

    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as torch_max
    except ImportError:  # older torch
        torch_max = 17
    return min(int(torch_max), onnx.defs.onnx_opset_version())


def choose_opset(requested: int | None, nms: bool = False) -> int:
    """The opset to export with: `requested`, checked, or the newest that everything here supports."""
    highest = exporter_max_opset()
    if requested is None:
        return min(PREFERRED_OPSET, highest)
    if nms and requested < NMS_MIN_OPSET:
        raise ExportError(
            f"--nms needs opset {NMS_MIN_OPSET} or newer (NonMaxSuppression with per-image padding); "
            f"got --opset {requested}: raise it or drop --opset"
        )
    if not MIN_OPSET <= requested <= highest:
        raise ExportError(f"--opset {requested} is not supported here; use {MIN_OPSET}..{highest} or drop --opset")
    return requested


def input_size(imgsz: int | tuple[int, int] | list[int], stride: int) -> tuple[int, int]:
    """(height, width) of the exported input: `imgsz` (one side or two) rounded up to the stride."""
    sides = [int(imgsz)] * 2 if isinstance(imgsz, (int, float)) else [int(s) for s in imgsz]
    if len(sides) != 2 or min(sides) <= 0:
        raise ExportError(f"imgsz {imgsz!r} must be one positive size or (height, width)")
    rounded = tuple(math.ceil(s / stride) * stride for s in sides)
    if list(rounded) != sides:
        logger.warning("imgsz %s is not a multiple of the stride %d; exporting %s", sides, stride, list(rounded))
    return rounded


def model_metadata(model: nn.Module, shape: tuple[int, int], batch: int, dynamic: bool, output: str,
                   extra: dict[str, Any] | None = None) -> dict[str, str]:
    """String → string metadata stored in the exported file (ONNX `metadata_props`, OpenVINO rt_info,
    TorchScript extra files): everything `detforge.load` needs besides the graph."""
    config = getattr(model, "config", None)
    config_json = None
    if config is not None and hasattr(config, "model_dump"):
        data = config.model_dump(mode="json")
        data["names"] = list(model.names)
        config_json = json.dumps(data)
    from detforge import __version__

    meta = {
        "format": METADATA_FORMAT,
        "format_version": "1",
        "detforge_version": __version__,
        "task": "detect",
        "names": json.dumps(list(model.names)),
        "strides": json.dumps([int(s) for s in model.strides]),
        "imgsz": json.dumps(list(shape)),
        "batch": str(batch),
        "dynamic": json.dumps(bool(dynamic)),
        "output": output,
    }
    if config_json is not None:
        meta["config"] = config_json
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    return meta


def traceable(net: nn.Module, example: torch.Tensor, source: str = "model") -> nn.Module:
    """`ExportGraph(net)`, checked against `net` on `example` (they must agree to float rounding)."""
    graph = ExportGraph(net).eval()
    with torch.no_grad():
        expected, got = net(example), graph(example)
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-3):
        raise ExportError(f"{source}: the export layout of the decode disagrees with the model's own "
                          f"(max difference {(got - expected).abs().max():.3g}); please report this bug")
    return graph


def trace_to_onnx(model: nn.Module, example: torch.Tensor, opset: int, dynamic: bool):
    """Trace `model` with the TorchScript-based exporter into an in-memory `onnx.ModelProto`."""
    import onnx

    buffer = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "anchors"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; the result is checked below
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=["output0"], do_constant_folding=True,
                          dynamic_axes=axes if dynamic else None)
    return onnx.load_from_string(buffer.getvalue())


def slim(proto, source: str):
    """onnxslim: fold constants, drop redundant shape arithmetic, fuse what ORT/OpenVINO would anyway."""
    try:
        import onnxslim
    except ImportError:
        logger.warning("onnxslim is not installed; the ONNX file is left unsimplified (pip install onnxslim)")
        return proto
    try:
        return onnxslim.slim(proto)
    except Exception as err:  # noqa: BLE001 - a simplifier bug must not lose the export
        logger.warning("%s: onnxslim failed (%s); keeping the unsimplified graph", source, str(err).splitlines()[0])
        return proto


def weights_to_fp16(proto, min_elements: int = 16):
    """Store float32 initializers as float16 with a Cast back to float32 in front of their users.

    Halves the file; the arithmetic stays float32 (runtimes fold the casts when they load it), so
    it runs on any CPU and the outputs move only by the weights' float16 rounding.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or math.prod(init.dims) < min_elements:
            continue
        array = numpy_helper.to_array(init).astype(np.float16)
        name = init.name
        init.CopyFrom(numpy_helper.from_array(array, name + "_fp16"))
        casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=TensorProto.FLOAT, name=name + "_cast"))
    for node in reversed(casts):
        graph.node.insert(0, node)
    return proto


def export_onnx(model: nn.Module, path: str | Path, imgsz: int | tuple[int, int] = 640, batch: int = 1,
                dynamic: bool = False, opset: int | None = None, simplify: bool = True, nms: bool = False,
                half: bool = False, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                agnostic: bool = False, source: str = "model") -> Path:
    """Export `model` (a `Detector`; it is copied and deployed, never changed) to an ONNX file at `path`.

    imgsz / batch: the input shape traced (and fixed unless `dynamic`: then batch, height and
    width are free). nms: append NonMaxSuppression (conf / iou / max_det / agnostic are then
    baked into the graph). half: store the weights as float16. Returns the written path.
    """
    import onnx

    path = Path(path)
    opset = choose_opset(opset, nms)
    if batch < 1:
        raise ExportError(f"--batch {batch} must be ≥ 1")
    net = deployed_copy(model, source)
    stride = max_stride(net)
    shape = input_size(imgsz, stride)
    example = torch.rand(batch, 3, *shape)
    expected = check_output(net, example, source)
    graph = traceable(net, example, source)
    proto = trace_to_onnx(graph, example, opset, dynamic)
    if simplify:
        proto = slim(proto, source)
    output = "boxes_scores"
    extra: dict[str, Any] = {}
    if nms:
        from detforge.export.nms import append_nms

        proto = append_nms(proto, opset, max_det=max_det, iou=iou, conf=conf, agnostic=agnostic)
        output = "nms"
        extra = {"max_det": max_det, "nms_iou": iou, "nms_conf": conf, "agnostic": json.dumps(bool(agnostic))}
    if half:
        proto = weights_to_fp16(proto)
        extra["weights"] = "float16"
    meta = model_metadata(net, shape, batch, dynamic, output, extra)
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.producer_version = "detforge", meta["detforge_version"]
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"{path}: the exported graph fails onnx.checker ({str(err).splitlines()[0]})") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    logger.info("exported %s: input %s, output %s (%s), opset %d", path, [batch, 3, *shape],
                f"[B, {max_det}, 6]" if nms else f"[B, {expected.shape[1]}, {expected.shape[2]}]",
                output, opset)
    return path
