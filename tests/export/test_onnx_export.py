"""ONNX export of every head kind: onnxruntime gives PyTorch's outputs; metadata, checker, dynamic axes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from export_helpers import HEAD_CONFIGS, IMGSZ, NAMES, lively_model

from detforge.export.graph import ExportGraph

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run_onnx(path, images: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def assert_close_output(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Boxes within 1e-3 relative (plus a small absolute slack for coordinates near 0), scores within 1e-4."""
    assert got.shape == expected.shape
    torch.testing.assert_close(got[..., :4], expected[..., :4], rtol=1e-3, atol=1e-2)
    torch.testing.assert_close(got[..., 4:], expected[..., 4:], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("kind", list(HEAD_CONFIGS))
def test_export_graph_equals_the_models_decode(kind):
    model = lively_model(kind).fuse()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        expected, got = model(x), ExportGraph(model)(x)
    assert ExportGraph(model).lean
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", list(HEAD_CONFIGS))
def test_onnxruntime_matches_pytorch_for_each_head_kind(kind, tmp_path):
    model = lively_model(kind)
    path = model.export("onnx", output=tmp_path / f"{kind}.onnx", imgsz=IMGSZ, batch=2)
    x = torch.rand(2, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        expected = model(x)
    assert_close_output(run_onnx(path, x), expected)
    assert model.training is False and not any(isinstance(m, torch.nn.Identity) for m in model.modules()), \
        "export must leave the caller's model unfused"

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["names"]) == NAMES and json.loads(meta["strides"]) == [8, 16, 32]
    assert json.loads(meta["imgsz"]) == [IMGSZ, IMGSZ] and meta["batch"] == "2" and meta["output"] == "boxes_scores"
    assert json.loads(meta["config"])["name"] == HEAD_CONFIGS[kind]
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [2, 3, IMGSZ, IMGSZ]
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Transpose") <= 1 and "BatchNormalization" not in ops  # lean, fused graph


def test_dynamic_export_runs_at_other_batch_and_size(tmp_path):
    model = lively_model("decoupled")
    path = model.export("onnx", output=tmp_path / "dyn.onnx", imgsz=IMGSZ, dynamic=True)
    for shape in [(1, 3, 64, 64), (3, 3, 96, 128)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            expected = model(x)
        assert_close_output(run_onnx(path, x), expected)


def test_half_weights_halve_the_file_and_keep_outputs(tmp_path):
    model = lively_model("decoupled")
    full = model.export("onnx", output=tmp_path / "fp32.onnx", imgsz=IMGSZ)
    half = model.export("onnx", output=tmp_path / "fp16.onnx", imgsz=IMGSZ, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    got, expected = run_onnx(half, x), run_onnx(full, x)
    torch.testing.assert_close(got[..., 4:], expected[..., 4:], rtol=0.05, atol=5e-3)


def test_caller_model_is_untouched(tmp_path):
    model = lively_model("coupled").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.export("onnx", output=tmp_path / "m.onnx", imgsz=IMGSZ, simplify=False)
    assert model.training
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert np.isfinite(run_onnx(tmp_path / "m.onnx", torch.rand(1, 3, IMGSZ, IMGSZ)).numpy()).all()


def test_model_with_aux_heads_exports_its_deployed_self(tmp_path):
    import detforge

    model = detforge.create_model("yolov8", scale="n", num_classes=3, aux=True,
                                  overrides={"scales.n.width": 0.125}).eval()
    path = model.export("onnx", output=tmp_path / "aux.onnx", imgsz=IMGSZ)
    proto = onnx.load(str(path))
    assert model.aux is not None, "the caller's model keeps its aux heads"
    assert not any("aux" in init.name for init in proto.graph.initializer)
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        expected = model(x)
    assert_close_output(run_onnx(path, x), expected)


def test_anchor_based_yolov7_head_exports_with_dynamic_axes(tmp_path):
    import detforge

    model = detforge.create_model("yolov7-tiny", num_classes=3).eval()
    assert not ExportGraph(model).lean  # IDetect decodes its own way: traced as it is
    path = model.export("onnx", output=tmp_path / "v7.onnx", imgsz=IMGSZ, dynamic=True)
    for shape in [(1, 3, 64, 64), (2, 3, 64, 96)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            expected = model(x)
        assert_close_output(run_onnx(path, x), expected)
