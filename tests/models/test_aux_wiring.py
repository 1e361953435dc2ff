"""`aux` parts for any model: YOLOv7 P5 (anchor-based) and YOLOv8 (anchor-free) train with an
auxiliary head on the neck's top-down maps; deploy removes it and leaves outputs unchanged."""

from __future__ import annotations

import copy

import torch

import detforge
from detforge.config import load_config
from detforge.losses import DetectionLoss, YOLOv7Loss
from detforge.models.aux import default_aux
from detforge.models.heads.anchor_base import AnchorHeadOutput
from detforge.models.heads.base import HeadOutput

BOXES = torch.tensor([[8.0, 10.0, 40.0, 44.0], [30.0, 20.0, 60.0, 50.0], [4.0, 4.0, 20.0, 30.0]])
CLS = torch.tensor([0.0, 1.0, 2.0])
BATCH_IDX = torch.tensor([0.0, 0.0, 1.0])


def _params(module):
    return sum(p.numel() for p in module.parameters())


def test_default_aux_mirrors_the_lead_head():
    # reg_max, like the channels and classes, is wired from the lead head when the model is built
    assert default_aux(load_config("yolov8n")) == {"type": "decoupled", "box_convs": 2, "cls_convs": 2}
    assert default_aux(load_config("yolov7-tiny")) == {"type": "yolov7_aux", "act": "leaky_relu"}
    declared = load_config("yolov8n", overrides={"aux": {"type": "coupled"}})
    assert default_aux(declared) == {"type": "coupled"}


def test_yolov8_aux_trains_on_top_down_maps_and_deploys_away():
    torch.manual_seed(0)
    model = detforge.create_model("yolov8n", num_classes=3, aux=True)
    plain = detforge.create_model("yolov8n", num_classes=3)
    assert model.aux is not None and plain.aux is None
    x = torch.rand(2, 3, 64, 64)
    out = model.train()(x)
    assert isinstance(out, HeadOutput) and isinstance(out.aux, HeadOutput)
    assert out.aux.box.shape == out.box.shape and out.aux.cls.shape == out.cls.shape
    total, _ = DetectionLoss(model=model)(out, BOXES, CLS, BATCH_IDX)
    total.backward()
    assert all(p.grad is not None for p in model.aux.parameters() if p.requires_grad)
    # the lead part's weights are those of a plain model; deployed, both give the same boxes
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("aux.")})
    model.eval(), plain.eval()
    with torch.no_grad():
        expected = plain(x)
        deployed = copy.deepcopy(model).deploy(target="export")
        assert deployed.aux is None and _params(deployed) == _params(copy.deepcopy(plain).deploy(target="export"))
        assert torch.allclose(deployed(x), expected, atol=1e-4)
        assert torch.equal(model(x), expected)  # eval mode never runs the aux part


def test_yolov7_tiny_aux_on_p5():
    torch.manual_seed(0)
    model = detforge.create_model("yolov7-tiny", num_classes=3, aux=True)
    out = model.train()(torch.rand(2, 3, 64, 64))
    assert isinstance(out.aux, AnchorHeadOutput)
    assert [m.shape for m in out.aux.maps] == [m.shape for m in out.maps]
    total, items = YOLOv7Loss(model=model)(out, BOXES, CLS, BATCH_IDX)
    total.backward()
    assert torch.isfinite(total) and set(items) == {"box", "obj", "cls"}
    assert model.aux.preds[0].weight.grad.abs().sum() > 0
    deployed = copy.deepcopy(model).deploy(target="export")
    assert deployed.aux is None and not any("aux" in k for k in deployed.state_dict())
