"""INT8 export (onnxruntime QDQ; OpenVINO from it) calibrated on a few synthetic images."""

from __future__ import annotations

import logging

import pytest
import torch
from export_helpers import IMGSZ, lively_model

from detforge.export import load_runtime
from detforge.export.quantize import sensitive_nodes, warn_if_dropped
from detforge.infer.predictor import Predictor

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from detforge.data.synthetic import synthesize

    return synthesize(tmp_path_factory.mktemp("syn"), images=6, classes=3, imgsz=IMGSZ, seed=0)


def trivial_image():
    """Flat grey with one bright square: the float model's top detections are unambiguous."""
    import numpy as np

    image = np.full((IMGSZ, IMGSZ, 3), 114, np.uint8)
    image[16:40, 20:44] = (230, 40, 40)
    return image


def test_int8_onnx_keeps_the_float_models_detections(data, tmp_path, capsys):
    model = lively_model("decoupled")
    path = model.export("onnx", output=tmp_path / "m_int8.onnx", imgsz=IMGSZ, int8=True, data=data,
                        calibration_images=4)
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["quantization"] == "int8-qdq" and meta["keep_fp32"] == "head"
    assert "map50_95_fp32" in meta and "map50_95_int8" in meta  # scored on the val split
    assert any(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    kept = set(sensitive_nodes(proto))
    assert any(n.op_type == "Softmax" for n in proto.graph.node if n.name in kept)

    expected = Predictor(model, imgsz=IMGSZ, conf=0.5).detect([trivial_image()])[0][:5]
    got = Predictor(load_runtime(path), imgsz=IMGSZ, conf=0.5).detect([trivial_image()])[0][:5]
    assert len(expected) > 0 and len(got) > 0
    from torchvision.ops import box_iou

    # each of the float model's top detections is found again by the INT8 model: same class, IoU > 0.8
    iou = box_iou(expected[:, :4], got[:, :4]) * (expected[:, None, 5] == got[None, :, 5])
    assert (iou.max(1).values > 0.8).all()

    # detforge val on the INT8 file reports its mAP next to the float32 figure stored at export
    from detforge.cli import main

    code = main(["val", "--weights", str(path), "--data", str(data), "--imgsz", str(IMGSZ), "--batch", "2",
                 "--workers", "0", "--no-plots", "--project", str(tmp_path / "runs")])
    assert code == 0
    assert "INT8 (int8-qdq, keep-fp32 head): mAP50-95" in capsys.readouterr().out


def test_int8_openvino_with_a_rectangular_input(data, tmp_path):
    pytest.importorskip("openvino")
    model = lively_model("obj")
    path = model.export("openvino", output=tmp_path / "ov" / "m.xml", imgsz=(IMGSZ // 2, IMGSZ), int8=True,
                        data=data, calibration_images=2, check=False)
    runtime = load_runtime(path)
    assert runtime.imgsz == (IMGSZ // 2, IMGSZ)
    x = torch.rand(1, 3, IMGSZ // 2, IMGSZ)
    with torch.no_grad():
        expected = model(x)
    assert (runtime(x)[..., 4:] - expected[..., 4:]).abs().max() < 0.05


def test_map_drop_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert warn_if_dropped({"fp32": 0.60, "int8": 0.58}, "m.onnx")
        assert not warn_if_dropped({"fp32": 0.60, "int8": 0.595}, "m.onnx")
    assert "2.0 points below" in caplog.text
