"""Per-branch learning-rate multipliers reach the optimizer groups and the schedule's lrs."""

import pytest

import detforge
from detforge.engine.lr import WarmupSchedule
from detforge.engine.optim import branch_of, build_optimizer
from detforge.engine.train_config import make_train_config
from detforge.engine.trainer import Trainer
from detforge.errors import ConfigError

TINY = {"backbone.stage_channels": [16, 16, 32, 32], "backbone.stem_channels": 8}


def test_branch_of_names():
    assert branch_of("backbone.stem.conv.weight") == "backbone"
    assert branch_of("head.box_branches.0.0.conv.weight") == "box"
    assert branch_of("head.cls_branches.2.1.bias") == "cls"
    assert branch_of("head.obj_preds.1.weight") == "obj"
    assert branch_of("neck.c2f.weight") is None and branch_of("head.shared.0.0.conv.weight") is None


def test_multipliers_make_groups_and_scale_lr():
    model = detforge.create_model("yolov8n-obj", num_classes=2, overrides=TINY)
    mult = {"box": 2.0, "cls": 0.5, "obj": 3.0, "backbone": 0.1}
    opt = build_optimizer(model, "sgd", 0.01, 0.9, 5e-4, mult)
    groups = {g["name"]: g for g in opt.param_groups}
    assert {"bias", "decay", "norm", "decay/box", "norm/cls", "bias/obj", "decay/backbone"} <= set(groups)
    total = sum(len(g["params"]) for g in opt.param_groups)
    assert total == sum(1 for p in model.parameters() if p.requires_grad)  # every parameter exactly once
    ids = {id(p) for p in groups["decay/obj"]["params"]}
    assert ids == {id(p) for p in model.head.obj_preds.parameters() if p.dim() > 1}
    WarmupSchedule(opt, 0.01, 10, 0.01, False, 0, 0.1, 0.8, 0.9).step(0, 5)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["decay"] == pytest.approx(0.01) and lrs["decay/box"] == pytest.approx(0.02)
    assert lrs["bias/cls"] == pytest.approx(0.005) and lrs["norm/backbone"] == pytest.approx(0.001)
    plain = build_optimizer(model, "sgd", 0.01, 0.9, 5e-4, {"box": 1.0})
    assert [g["name"] for g in plain.param_groups] == ["bias", "decay", "norm"]  # factors of 1: no split


def test_lr_mult_setting_reaches_the_trainer(settings):
    config = make_train_config({**settings, "lr_mult": {"cls": 0.5}})
    trainer = Trainer(config)
    trainer._setup()
    assert {g["name"]: g.get("lr_mult") for g in trainer.optimizer.param_groups}["decay/cls"] == 0.5
    with pytest.raises(ConfigError, match="lr_mult.head"):
        make_train_config({**settings, "lr_mult": {"head": 2.0}})
