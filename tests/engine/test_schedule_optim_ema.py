"""Warmup/decay schedule, parameter groups and EMA behave as the YOLOv8 recipe specifies."""

import math

import pytest
import torch
from torch import nn

import detforge
from detforge.engine.ema import ModelEMA
from detforge.engine.lr import WarmupSchedule, decay_factor
from detforge.engine.optim import build_optimizer, parameter_groups, resolve_auto


def tiny_model():
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1), nn.Flatten(),
                         nn.Linear(8, 2))


def test_parameter_groups_split_decay_norm_bias():
    model = tiny_model()
    decay, norm, bias = parameter_groups(model)
    assert [p.shape for p in decay] == [(4, 3, 3, 3), (2, 4, 1, 1), (2, 8)]
    assert [p.shape for p in norm] == [(4,)]
    assert [p.shape for p in bias] == [(4,), (2,), (2,)]
    assert len(decay) + len(norm) + len(bias) == len(list(model.parameters()))


def test_optimizer_applies_decay_only_to_weights():
    opt = build_optimizer(tiny_model(), "sgd", 0.01, 0.937, 5e-4)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["decay"]["weight_decay"] == 5e-4
    assert groups["norm"]["weight_decay"] == 0 and groups["bias"]["weight_decay"] == 0
    assert opt.defaults["nesterov"] is True


def test_frozen_parameters_are_left_out():
    model = detforge.create_model("yolov8n", num_classes=2)
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    decay, norm, bias = parameter_groups(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for p in decay + norm + bias) == trainable


def test_auto_optimizer_rule():
    assert resolve_auto("auto", 0.01, 0.937, 0.1, 3, 1000) == ("adamw", round(0.002 * 5 / 7, 6), 0.9, 0.0)
    assert resolve_auto("auto", 0.01, 0.937, 0.1, 3, 20000) == ("sgd", 0.01, 0.937, 0.0)
    assert resolve_auto("sgd", 0.02, 0.9, 0.1, 3, 10) == ("sgd", 0.02, 0.9, 0.1)


def test_decay_factor_endpoints():
    for cosine in (False, True):
        assert decay_factor(0, 10, 0.01, cosine) == pytest.approx(1.0)
        assert decay_factor(9, 10, 0.01, cosine) == pytest.approx(0.01)
    assert decay_factor(5, 11, 0.01, False) == pytest.approx(0.505)
    assert decay_factor(5, 11, 0.01, True) == pytest.approx(0.505)
    assert decay_factor(2, 11, 0.01, True) > decay_factor(2, 11, 0.01, False)


def test_warmup_ramps_bias_down_weights_up_and_momentum():
    opt = build_optimizer(tiny_model(), "sgd", 0.01, 0.937, 5e-4)
    schedule = WarmupSchedule(opt, 0.01, 10, 0.01, False, warmup_iters=100, warmup_bias_lr=0.1,
                              warmup_momentum=0.8, momentum=0.937)
    schedule.step(0, 0)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["bias"]["lr"] == pytest.approx(0.1) and groups["decay"]["lr"] == 0.0
    assert groups["decay"]["momentum"] == pytest.approx(0.8)
    schedule.step(0, 50)
    assert groups["bias"]["lr"] == pytest.approx(0.055) and groups["decay"]["lr"] == pytest.approx(0.005)
    schedule.step(1, 100)
    lr = 0.01 * decay_factor(1, 10, 0.01, False)
    assert all(g["lr"] == pytest.approx(lr) for g in opt.param_groups)
    assert groups["norm"]["momentum"] == pytest.approx(0.937)


def test_adamw_warmup_moves_beta1():
    opt = build_optimizer(tiny_model(), "adamw", 0.001, 0.9, 5e-4)
    WarmupSchedule(opt, 0.001, 5, 0.01, False, 10, 0.1, 0.8, 0.9).step(0, 0)
    assert opt.param_groups[0]["betas"][0] == pytest.approx(0.8)


def test_ema_ramp_and_average():
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = ModelEMA(model, decay=0.9, tau=2.0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1 / 2.0))
    assert ema.ema.weight.item() == pytest.approx(1 - d)
    for _ in range(200):
        ema.update(model)
    assert ema.ema.weight.item() == pytest.approx(1.0, abs=1e-6)
    assert not any(p.requires_grad for p in ema.ema.parameters())
