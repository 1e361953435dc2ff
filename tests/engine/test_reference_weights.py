"""`detforge train --weights yolov8n.pt` starts directly from a released Ultralytics checkpoint (documented in
the README as the fastest way to good weights)."""

import logging

import pytest
import torch

import detforge
from detforge.cli import main

ultralytics = pytest.importorskip("ultralytics")
from ultralytics.nn.tasks import DetectionModel


def test_train_from_a_reference_checkpoint(tiny_data, tmp_path, caplog):
    torch.manual_seed(0)
    released = DetectionModel("yolov8n.yaml", nc=80, verbose=False)
    released.names = {i: f"thing{i}" for i in range(80)}
    checkpoint = tmp_path / "yolov8n.pt"
    torch.save({"model": released.half(), "ema": None, "optimizer": None, "epoch": -1}, checkpoint)
    with caplog.at_level(logging.INFO):
        assert main(["train", "--model", "yolov8n", "--weights", str(checkpoint), "--data", str(tiny_data),
                     "--epochs", "1", "--imgsz", "64", "--batch", "8", "--workers", "0", "--set", "plots=false",
                     "--project", str(tmp_path / "runs")]) == 0
    assert "head re-initialized for 2 classes (the weights were trained for 80)" in caplog.text
    copied = [r.getMessage() for r in caplog.records if r.getMessage().startswith("transferred ")]
    assert len(copied) == 1 and "come from these weights" not in caplog.text  # most of the model transferred
    assert detforge.load(tmp_path / "runs" / "exp" / "weights" / "last.safetensors").num_classes == 2
