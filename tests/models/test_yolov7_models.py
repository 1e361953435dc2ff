"""Packaged YOLOv7 models: exact parameter counts vs the reference, the anchor-head contract,
deploy() keeps outputs, aux heads exist in training only."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from yolov7_helpers import randomize

import detforge
from detforge.models.heads.anchor_base import AnchorHeadOutput

# (training, deployed) parameter counts with 80 classes, measured from the reference code
# (yolov7.models.yolo.Model on cfg/training and cfg/deploy, deploy fused with Model.fuse()).
# For d6/e6e the deployed figure is the deploy config unfused (its count after fusion is not
# published), checked against ours with the BatchNorms still present.
P5 = {
    "yolov7-tiny": (6_228_762, 6_219_709),
    "yolov7": (37_622_682, 36_905_341),
    "yolov7x": (71_347_394, 71_311_741),
}
P6 = {
    "yolov7-w6": (82_312_436, 70_394_300),
    "yolov7-e6": (111_898_292, 97_202_940),
    "yolov7-d6": (154_709_364, None),
    "yolov7-e6e": (166_408_884, None),
}
P6_UNFUSED_DEPLOY = {"yolov7-d6": 133_810_044, "yolov7-e6e": 151_757_244}
PACKAGED = [n for n in {**P5, **P6} if n in detforge.config.packaged_configs()]


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", PACKAGED)
def test_parameter_counts_equal_reference(name):
    training, deployed = {**P5, **P6}[name]
    model = detforge.create_model(name)
    assert count(model) == training
    if deployed is None:
        head_implicit = count(model.head.implicit_a) + count(model.head.implicit_m)
        assert count(model) - count(model.aux) - head_implicit == P6_UNFUSED_DEPLOY[name]
        return
    model.deploy(target="export")
    assert model.aux is None
    assert count(model) == deployed


def test_anchor_head_training_and_inference_contract():
    model = detforge.create_model("yolov7-tiny", num_classes=3)
    x = torch.rand(2, 3, 64, 96)
    out = model.train()(x)
    assert isinstance(out, AnchorHeadOutput) and out.aux is None
    assert [tuple(m.shape) for m in out.maps] == [(2, 3, 8, 12, 8), (2, 3, 4, 6, 8), (2, 3, 2, 3, 8)]
    assert out.anchors.shape == (3, 3, 2) and out.anchors[0, 0].tolist() == [10.0, 13.0]
    assert out.strides == [8, 16, 32]
    with torch.no_grad():
        boxes = model.eval()(x)
    assert boxes.shape == (2, 3 * (96 + 24 + 6), 4 + 3)
    assert (boxes[..., 2:4] >= boxes[..., :2]).all() and ((boxes[..., 4:] >= 0) & (boxes[..., 4:] <= 1)).all()


def test_decode_follows_the_yolov7_formula():
    model = detforge.create_model("yolov7-tiny", num_classes=1).eval()
    maps = [torch.zeros(1, 3, 2, 2, 6), torch.zeros(1, 3, 1, 1, 6), torch.zeros(1, 3, 1, 1, 6)]
    out = model.head.decode(AnchorHeadOutput(maps, model.head.anchors, [8, 16, 32]))
    # σ(0) = 0.5: xy = (1 − 0.5 + cell) · stride, wh = 1² · anchor; cell (1, 0) of level 0, anchor 0
    cx, cy, w, h = (0.5 + 1) * 8, 0.5 * 8, 10, 13
    assert out[0, 1].tolist() == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, 0.25])


@pytest.mark.parametrize("name", [n for n in PACKAGED if n in P5])
def test_deploy_keeps_outputs_p5(name):
    _check_deploy(name, 64)


def _check_deploy(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = randomize(detforge.create_model(name, num_classes=5)).eval()
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        before = model(x)
        deployed = copy.deepcopy(model).deploy(target="export")
        after = deployed(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    assert deployed.aux is None and getattr(deployed.head, "implicit_a", None) is None
    scale = before[..., :4].abs().max()
    assert (before[..., :4] - after[..., :4]).abs().max() / scale < 1e-4
    assert (before[..., 4:] - after[..., 4:]).abs().max() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PACKAGED if n in P6])
def test_deploy_keeps_outputs_p6(name):
    _check_deploy(name, 128)


def test_p6_aux_head_in_training_only():
    model = detforge.create_model("yolov7-w6", num_classes=2)
    x = torch.rand(1, 3, 128, 128)
    out = model.train()(x)
    assert isinstance(out.aux, AnchorHeadOutput) and out.aux.aux is None
    assert [tuple(m.shape) for m in out.aux.maps] == [tuple(m.shape) for m in out.maps]
    assert torch.equal(out.aux.anchors, out.anchors)
    aux_params = {id(p) for p in model.aux.parameters()}
    model.deploy(target="export")
    assert model.aux is None and not aux_params & {id(p) for p in model.parameters()}
    assert not any("aux" in k for k in model.state_dict())


def test_eelan_neck_feeds_aux_the_last_group():
    model = detforge.create_model("yolov7-e6e", num_classes=2)
    assert model.neck.aux_last_group and model.neck.top_down[0].cardinality == 2
    features = model.backbone(torch.rand(1, 3, 128, 128))
    _, aux = model.neck.forward_with_aux(features)
    block = model.neck.top_down[-1]  # level 0 (finest) is built last
    assert [a.shape[1] for a in aux] == model.neck.aux_channels == [160, 320, 480, 640]
    assert block.out_channels == 160


def test_config_places_repconv_by_the_planned_reparam_rule():
    from detforge.errors import ConfigError
    from detforge.models.blocks import RepConvN

    with pytest.raises(ConfigError, match=r"backbone\.stages\.0\.elan\.convs\.0: a RepConv with an identity branch "
                                          r"feeds a concat.*planned re-parameterization"):
        detforge.create_model("yolov7-tiny", overrides={"backbone.elan_conv": "repconv"})
    model = detforge.create_model("yolov7-tiny", overrides={"backbone.elan_conv": "repconv",
                                                            "backbone.swap_identity": True})
    assert isinstance(model.backbone.stages[0][1].convs[1], RepConvN)
    assert detforge.create_model("yolov7").neck.out_convs[0].identity is None  # 128→256: no identity


@pytest.mark.parametrize("name", ["yolov7-tiny-decoupled", "yolov7-w6-decoupled"])
def test_decoupled_head_on_yolov7_trunks(name):
    model = detforge.create_model(name, num_classes=3)
    out = model.train()(torch.rand(1, 3, 128, 128))
    assert out.box.shape[-1] == 64 and out.cls.shape[-1] == 3
    if name == "yolov7-tiny-decoupled":
        _check_deploy(name, 64)


def test_bad_yolov7_settings_are_one_line_config_errors():
    from detforge.errors import ConfigError

    with pytest.raises(ConfigError, match="head.anchors needs one list"):
        detforge.create_model("yolov7-tiny", overrides={"head.anchors": [[10, 13]]})
    with pytest.raises(ConfigError, match=r"yolov7-tiny.yaml: neck.down: input should be 'conv', 'mp'"):
        detforge.create_model("yolov7-tiny", overrides={"neck.down": "avgpool"})
    with pytest.raises(ConfigError, match="elan_depth ≥ 1"):
        detforge.create_model("yolov7-tiny", overrides={"backbone.elan_depth": 0})
