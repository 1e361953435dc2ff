"""Gradient-conflict probe: cosine 1 for identical objectives, -1 for opposed ones; the trainer's callback
writes probe.csv, results.csv columns and probe.png."""

import csv
import logging
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import detforge
from detforge.engine.probe import GradientProbe, gradient_conflict, layer_groups, probe_batch
from detforge.losses.detection import DetectionLoss


def toy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(16, 4)
    return model, model(x).pow(2).mean()


def test_identical_objectives_agree():
    model, objective = toy()
    out = gradient_conflict(objective, objective * 1.0, {"all": list(model.parameters())})
    assert out["all"]["cos"] == pytest.approx(1.0, abs=1e-9)
    assert out["all"]["ratio"] == pytest.approx(1.0)


def test_opposed_objectives_fight_and_ratio_is_the_norm_ratio():
    model, objective = toy()
    groups = {"first": list(model[0].parameters()), "last": list(model[2].parameters())}
    out = gradient_conflict(objective, -2.0 * objective, groups)
    for group in groups:
        assert out[group]["cos"] == pytest.approx(-1.0, abs=1e-9)
        assert out[group]["ratio"] == pytest.approx(0.5)


def test_unreached_group_is_nan():
    _, objective = toy()
    other = nn.Linear(2, 2)
    out = gradient_conflict(objective, objective, {"other": list(other.parameters())})
    assert math.isnan(out["other"]["cos"])


def tiny_detector(head):
    return detforge.create_model("yolov8n", overrides={"backbone.stage_channels": [16, 16, 32, 32],
                                                      "backbone.stem_channels": 8, "head": head})


@pytest.mark.parametrize("head, shared", [({"type": "coupled", "num_classes": 2}, True),
                                          ({"type": "hybrid", "num_classes": 2}, True),
                                          ({"type": "decoupled", "num_classes": 2}, False)])
def test_detector_groups_and_bn_stats_untouched(head, shared):
    model = tiny_detector(head)
    assert ("head_shared" in layer_groups(model)) is shared
    before = {k: v.clone() for k, v in model.state_dict().items()}
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0], [30.0, 20.0, 60.0, 50.0]])
    out = probe_batch(model, DetectionLoss(model=model), torch.rand(2, 3, 64, 64), boxes, torch.tensor([0, 1]),
                      torch.tensor([0, 1]))
    assert set(out) == set(layer_groups(model))
    assert all(-1.0 <= v["cos"] <= 1.0 for v in out.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics restored
    assert all(p.grad is None for p in model.parameters())  # the optimizer's gradients are not touched


def test_trainer_logs_probe(settings):
    result = detforge.train(**{**settings, "epochs": 1, "probe_every": 1, "plots": True})
    with (result.run_dir / "results.csv").open() as fh:
        row = next(csv.DictReader(fh))
    assert -1.0 <= float(row["probe/backbone_cos"]) <= 1.0 and float(row["probe/neck_ratio"]) > 0
    with (result.run_dir / "probe.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["group"] for r in rows} == {"backbone", "neck"} and len(rows) == 2 * 2  # 2 steps, 2 groups
    assert (result.run_dir / "probe.png").is_file()


def test_probe_is_off_with_sync_batchnorm(tmp_path, caplog):
    """Its extra forward runs on the main process only: SyncBatchNorm would wait there for the other ranks."""
    trainer = SimpleNamespace(run_dir=tmp_path, model=nn.Sequential(nn.SyncBatchNorm(4)),
                              resume_state=None, train_loader=[None] * 3)
    probe = GradientProbe(every=1)
    with caplog.at_level(logging.WARNING):
        probe.on_run_start(trainer)
    assert "gradient probe off" in caplog.text and "SyncBatchNorm" in caplog.text
    probe.on_train_batch_end(trainer, 0, 0, batch={})  # would fail on the empty batch if it probed
    assert not (tmp_path / "probe.csv").exists()
