"""Training with YOLOv7's recipe and with auxiliary heads (`aux: true` / `train --aux`)."""

from __future__ import annotations

import argparse

import pytest
import torch

import detforge
from detforge.commands.train import register, settings_from_args
from detforge.data import build_dataloader
from detforge.engine.train_config import make_train_config
from detforge.engine.trainer import Trainer
from detforge.io.weights import read_weights
from detforge.losses import DetectionLoss, YOLOv7Loss


class Frozen(torch.nn.Module):
    """Repeats an assigner's first answer per call signature, so the loss before and after a step
    compares like with like (the assigners re-match positives from the moving predictions)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.first = inner, {}
        for key in ("topk", "aux_topk", "coarse_offset"):
            if hasattr(inner, key):
                setattr(self, key, getattr(inner, key))

    def forward(self, *args, **kwargs):
        key = tuple(sorted(kwargs.items()))
        if key not in self.first:
            self.first[key] = self.inner(*args, **kwargs)
        return self.first[key]


def _fixed_batch(tiny_data):
    batch = next(iter(build_dataloader(tiny_data, "train", imgsz=64, batch_size=8, augment=False, workers=0,
                                       progress=False)))
    return batch["img"].float() / 255, (batch["boxes"], batch["cls"], batch["batch_idx"])


@pytest.mark.parametrize(("name", "aux", "loss_type"), [("yolov7-tiny", False, YOLOv7Loss),
                                                        ("yolov7-tiny", True, YOLOv7Loss),
                                                        ("yolov8n", True, DetectionLoss)])
def test_trainer_parts_learn_with_the_recipe_and_aux(settings, tiny_data, name, aux, loss_type):
    trainer = Trainer(make_train_config({**settings, "model": name, "aux": aux}))
    torch.manual_seed(0)
    model = trainer.build_model(["a", "b"])
    trainer.config = trainer.resolve_config(model)
    loss_fn = trainer.build_loss(model)
    assert isinstance(loss_fn, loss_type) and (model.aux is not None) == aux
    if name.startswith("yolov7"):  # the packaged recipe: YOLOv7's assigner, loss and scratch settings
        assert trainer.config.loss.as_dict() == {"type": "yolov7", "box": 0.05, "obj": 0.7, "cls": 0.3}
        assert trainer.config.assigner.as_dict() == {"type": "yolov7_ota", "anchor_t": 4.0}
        assert (trainer.config.optimizer, trainer.config.lr0, trainer.config.momentum) == ("sgd", 0.01, 0.937)
    loss_fn.assigner = Frozen(loss_fn.assigner)
    if isinstance(loss_fn, DetectionLoss):
        loss_fn.coarse_assigner = Frozen(loss_fn.coarse_assigner)
    images, targets = _fixed_batch(tiny_data)
    # small plain steps, as at the start of warmup: the loss surface of a fresh model is sharply curved
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5)
    model.train()
    losses = []
    for _ in range(3):
        out = model(images)
        assert (out.aux is not None) == aux
        loss, _ = loss_fn(out, *targets)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[2] < losses[1] < losses[0]


def test_cli_flag_sets_aux():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--model", "yolov8n", "--aux"])
    assert make_train_config(settings_from_args(args)).aux is True
    assert make_train_config(settings_from_args(parser.parse_args(["train"]))).aux is False


@pytest.mark.parametrize("model", ["tiny", "yolov7-tiny"])
def test_resume_is_exact_with_an_aux_head(settings, monkeypatch, model):
    settings = {**settings, "aux": True, "epochs": 2, **({} if model == "tiny" else {"model": model})}
    full = Trainer(make_train_config({**settings, "name": "full"})).train()
    assert any(k.startswith("aux.") for k in read_weights(full.last)[0])

    original = Trainer._end_epoch

    def stop_after_first_epoch(self, epoch, losses):
        metrics = original(self, epoch, losses)
        if epoch == 0:
            raise KeyboardInterrupt
        return metrics

    monkeypatch.setattr(Trainer, "_end_epoch", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        Trainer(make_train_config({**settings, "name": "split"})).train()
    monkeypatch.setattr(Trainer, "_end_epoch", original)
    resumed = Trainer.resume(full.run_dir.with_name("split")).train()
    assert resumed.losses == full.losses
    a, b = read_weights(full.last)[0], read_weights(resumed.last)[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the trained weights load as a model whose deployed form has no aux part
    model = detforge.load(full.best)
    assert model.aux is not None and model.deploy(target="export").aux is None
