"""In-graph NonMaxSuppression equals the predictor's NMS; the exported --nms model runs end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import IMGSZ, lively_model

from detforge.export.nms import append_nms
from detforge.infer.postprocess import non_max_suppression

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper


def nms_only_graph(classes: int, opset: int, **settings):
    """A graph that is just `output0 = Identity(images)` with NMS appended: it tests the NMS part alone."""
    shape = ["batch", "n", 4 + classes]
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["output0"])], "nms",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, shape)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto = append_nms(proto, opset, **settings)
    onnx.checker.check_model(proto, full_check=True)
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def random_predictions(batch=3, n=200, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (batch, n, 2))
    wh = rng.uniform(5, 60, (batch, n, 2))
    scores = rng.uniform(0, 1, (batch, n, classes)) ** 3  # distinct, mostly low scores
    return np.concatenate((xy, xy + wh, scores), -1).astype(np.float32)


@pytest.mark.parametrize("opset,agnostic", [(12, False), (13, True), (19, False), (19, True)])
def test_nms_graph_equals_torchvision_nms(opset, agnostic):
    max_det = 25
    session = nms_only_graph(4, opset, max_det=max_det, iou=0.5, conf=0.2, agnostic=agnostic)
    pred = random_predictions()
    (got,) = session.run(None, {"images": pred})
    expected = non_max_suppression(torch.from_numpy(pred), 0.2, 0.5, max_det, agnostic=agnostic)
    assert got.shape == (3, max_det, 6)
    for g, e in zip(got, expected):
        assert len(e) > 0
        np.testing.assert_allclose(g[: len(e)], e.numpy(), rtol=1e-6, atol=1e-5)
        assert not g[len(e):].any(), "rows after the detections are zero padding"


def test_nms_graph_with_nothing_above_the_threshold():
    session = nms_only_graph(2, 17, max_det=10, conf=0.9)
    pred = random_predictions(batch=2, n=50, classes=2) * np.array([1, 1, 1, 1, 0.5, 0.5], np.float32)
    (got,) = session.run(None, {"images": pred})
    assert got.shape == (2, 10, 6) and not got.any()


def test_exported_model_with_nms(tmp_path):
    model = lively_model("hybrid")
    path = model.export("onnx", output=tmp_path / "nms.onnx", imgsz=IMGSZ, batch=2, nms=True, conf=0.3, max_det=50)
    x = torch.rand(2, 3, IMGSZ, IMGSZ)
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = non_max_suppression(model(x), 0.3, 0.7, 50)
    assert got.shape == (2, 50, 6)
    for g, e in zip(got, expected):
        assert len(e) > 0 and (g[:, 4] > 0).sum() == len(e)
        np.testing.assert_array_equal(np.sort(g[: len(e), 5]), np.sort(e[:, 5].numpy()))
        np.testing.assert_allclose(np.sort(g[: len(e), 4]), np.sort(e[:, 4].numpy()), rtol=1e-3, atol=1e-4)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["output"] == "nms" and meta["max_det"] == "50"
