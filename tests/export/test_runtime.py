"""Exported files through the same Predictor: onnxruntime, OpenVINO and TorchScript give PyTorch's
detections (same classes, same order, boxes within 1e-3 relative); hostile files are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import IMGSZ, NAMES, lively_model

from detforge.errors import ExportError
from detforge.export import load_runtime, sniff
from detforge.infer.predictor import Predictor

pytest.importorskip("onnxruntime")

CONF = 0.3


def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
            rng.integers(0, 255, (64, 40, 3), dtype=np.uint8)]


@pytest.fixture(scope="module")
def model():
    return lively_model("obj")


@pytest.fixture(scope="module")
def reference(model):
    return Predictor(model, imgsz=IMGSZ, conf=CONF, batch=3).detect(images())


def assert_same_detections(got, expected):
    assert [len(g) for g in got] == [len(e) for e in expected]
    assert sum(len(e) for e in expected) > 0
    for g, e in zip(got, expected):
        assert torch.equal(g[:, 5], e[:, 5]), "classes (and their order) must match"
        torch.testing.assert_close(g[:, :4], e[:, :4], rtol=1e-3, atol=1e-2)
        torch.testing.assert_close(g[:, 4], e[:, 4], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("fmt,settings", [
    ("onnx", {}),
    ("onnx", {"dynamic": True}),
    ("onnx", {"nms": True, "conf": CONF}),
    ("torchscript", {}),
    ("openvino", {}),
])
def test_runtime_backends_match_pytorch_through_the_predictor(model, reference, tmp_path, fmt, settings):
    if fmt == "openvino":
        pytest.importorskip("openvino")
    suffix = {"onnx": ".onnx", "torchscript": ".torchscript", "openvino": ".xml"}[fmt]
    path = model.export(fmt, output=tmp_path / f"m{suffix}", imgsz=IMGSZ, **settings)
    assert sniff(path) == fmt
    runtime = load_runtime(path)
    assert runtime.names == NAMES and runtime.strides == [8, 16, 32]
    # batch 2 on a batch-1 file: the runtime model splits (and pads) batches itself
    got = Predictor(runtime, imgsz=IMGSZ, conf=CONF, batch=2).detect(images())
    assert_same_detections(got, reference)


def test_static_file_refuses_larger_inputs_with_one_line(model, tmp_path):
    runtime = load_runtime(model.export("onnx", output=tmp_path / "m.onnx", imgsz=IMGSZ, simplify=False))
    with pytest.raises(ExportError, match="takes 64x64 images.*--imgsz 64 or export with --dynamic"):
        runtime(torch.rand(1, 3, 128, 64))


def test_hostile_or_foreign_files_are_refused(model, tmp_path):
    onnx = pytest.importorskip("onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07" + b"\xff" * 64)
    assert sniff(junk) is None
    with pytest.raises(ExportError, match="not a readable ONNX file|not an ONNX model"):
        load_runtime(junk)

    path = model.export("onnx", output=tmp_path / "m.onnx", imgsz=IMGSZ, simplify=False)
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ExportError, match="without detforge metadata"):
        load_runtime(bare)

    proto = onnx.load(str(path))
    tensor = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../etc/passwd")
    escape = tmp_path / "escape.onnx"
    onnx.save(proto, str(escape))
    with pytest.raises(ExportError, match="outside the model's folder"):
        load_runtime(escape)


def test_detforge_load_and_predict_cli_open_an_onnx_file(model, tmp_path, capsys):
    import detforge
    from detforge.cli import main

    if not hasattr(detforge.io, "register_loader"):
        pytest.skip("detforge.io has no loader hook yet (register_loader)")
    path = model.export("onnx", output=tmp_path / "m.onnx", imgsz=IMGSZ)
    runtime = detforge.load(path)
    assert runtime.names == NAMES
    import cv2

    cv2.imwrite(str(tmp_path / "a.jpg"), images()[0])
    code = main(["predict", "--weights", str(path), "--source", str(tmp_path / "a.jpg"), "--imgsz", str(IMGSZ),
                 "--project", str(tmp_path / "runs"), "--save-json"])
    assert code == 0 and "1 frames" in capsys.readouterr().out
