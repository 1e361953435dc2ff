"""`detforge info` for the YOLOv7 family: per-part figures, --deploy, and GFLOPs that agree with
torch's own FLOP counter on the fused model (and with the reference's published figures)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import detforge
from detforge.cli import main

# GFLOPs of the fused model at 640 as the reference's counter reports them.
REFERENCE_GFLOPS_640 = {"yolov7-tiny": 13.7, "yolov7": 104.5, "yolov7x": 189.7}


def torch_gflops(model, size: int) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


@pytest.mark.parametrize("name", ["yolov7-tiny", "yolov7", "yolov7x"])
def test_gflops_agree_with_torch_counter_and_reference(name):
    model = detforge.create_model(name).deploy(target="export")
    ours = model.info(320).gflops
    assert ours == pytest.approx(torch_gflops(model, 320), rel=0.01)
    # every layer is a same-padded conv, so FLOPs scale with the image area: 640² = 4 × 320²
    assert round(4 * ours, 1) == pytest.approx(REFERENCE_GFLOPS_640[name], abs=0.051)


def test_gflops_agree_on_a_p6_model():
    model = detforge.create_model("yolov7-w6").deploy(target="export")
    ours = model.info(128).gflops
    assert ours == pytest.approx(torch_gflops(model, 128), rel=0.01)
    assert round(100 * ours, 1) == pytest.approx(359.7, abs=0.2)  # reference: 359.7 at 1280 = 100 × 128²


def test_cli_info_reports_parts_and_deployed_model(capsys):
    assert main(["info", "yolov7-w6", "--imgsz", "128", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    parts = {p["name"]: p for p in info["parts"]}
    assert info["params"] == 82_312_436 and parts["aux (training only)"]["params"] == 11_882_620
    assert {"backbone", "neck", "head.preds", "head.implicit_a", "head.implicit_m"} <= set(parts)
    assert main(["info", "yolov7-w6", "--imgsz", "128", "--json", "--deploy"]) == 0
    deployed = json.loads(capsys.readouterr().out)
    assert deployed["params"] == 70_394_300
    assert not any("aux" in p["name"] or "implicit" in p["name"] for p in deployed["parts"])
