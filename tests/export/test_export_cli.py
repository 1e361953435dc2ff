"""`detforge export` end to end, and its one-line errors for bad arguments."""

from __future__ import annotations

import pytest
import torch
from export_helpers import IMGSZ, lively_model

import detforge
from detforge.cli import main
from detforge.errors import ExportError

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    detforge.save_weights(lively_model("decoupled"), path)
    return path


@pytest.mark.parametrize("argv,message", [
    (["--format", "tflite"], "unknown export format 'tflite'"),
    (["--int8"], "--int8 needs calibration images: pass --data"),
    (["--nms", "--opset", "10"], "--nms needs opset 12 or newer"),
    (["--opset", "8"], "--opset 8 is not supported here"),
    (["--imgsz", "64", "64", "64"], "--imgsz takes one size or HEIGHT WIDTH"),
])
def test_bad_arguments_give_one_line_errors(weights, tmp_path, capsys, argv, message):
    code = main(["export", "--weights", str(weights), "--output", str(tmp_path / "m.onnx"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export_writes_a_runnable_file(weights, tmp_path, capsys):
    out = tmp_path / "tiny.onnx"
    assert main(["export", "--weights", str(weights), "--output", str(out), "--imgsz", str(IMGSZ)]) == 0
    assert f"exported {out}" in capsys.readouterr().out
    from detforge.export import load_runtime

    assert load_runtime(out)(torch.rand(1, 3, IMGSZ, IMGSZ)).shape == (1, 84, 7)

    # an exported file is not re-exported: one line pointing back at the weights
    assert main(["export", "--weights", str(out), "--output", str(tmp_path / "again.onnx")]) == 2
    assert "already an exported onnxruntime file" in capsys.readouterr().err


def test_model_whose_deploy_keeps_aux_heads_is_refused(tmp_path):
    model = lively_model("decoupled")
    model.aux = torch.nn.Conv2d(8, 8, 1)  # an auxiliary head that deploy() failed to drop
    model.deploy = None  # an old model without deploy(): fuse() alone does not remove aux parts
    with pytest.raises(ExportError, match="auxiliary \\(training-only\\) heads"):
        model.export("onnx", output=tmp_path / "m.onnx", imgsz=IMGSZ)
