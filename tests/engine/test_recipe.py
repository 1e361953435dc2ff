"""Assigners and losses chosen by config: sub-configs, the flat keys' deprecation, model recipes."""

import argparse
import logging

import pytest
import yaml

import detforge
from detforge.assign import TaskAlignedAssigner
from detforge.commands.train import settings_from_args
from detforge.config import packaged_configs
from detforge.engine import train_config
from detforge.engine.recipe import resolve_recipe
from detforge.engine.train_config import load_train_yaml, make_train_config
from detforge.engine.trainer import Trainer
from detforge.errors import ConfigError
from detforge.losses import DetectionLoss
from detforge.registry import ASSIGNERS, LOSSES


@detforge.register_assigner("test_counting")
class CountingAssigner(TaskAlignedAssigner):
    """TAL that counts its calls and takes one key of its own."""

    calls = 0

    def __init__(self, topk: int = 10, note: str = "", **kwargs):
        super().__init__(topk=topk, **kwargs)
        self.note = note

    def forward(self, *args, **kwargs):
        CountingAssigner.calls += 1
        return super().forward(*args, **kwargs)


def test_user_registered_assigner_builds_from_yaml_and_trains(settings, tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**settings, "epochs": 1, "assigner": {"type": "test_counting", "topk": 4,
                                                                          "note": "mine"}}))
    trainer = Trainer(make_train_config(load_train_yaml(path), str(path)))
    CountingAssigner.calls = 0
    trainer.train()
    assigner = trainer.loss_fn.assigner
    assert isinstance(assigner, CountingAssigner) and (assigner.topk, assigner.note) == (4, "mine")
    assert CountingAssigner.calls >= len(trainer.train_loader)  # each training step (and validation losses)
    assert trainer.config.assigner.as_dict() == {"type": "test_counting", "topk": 4, "note": "mine"}


def test_defaults_are_the_yolov8_recipe():
    config = resolve_recipe(make_train_config({}), None)
    assert config.assigner.as_dict() == {"type": "tal"}
    assert config.loss.as_dict() == {"type": "yolov8"}


def test_flat_keys_map_onto_the_sub_configs_with_one_notice(caplog, monkeypatch):
    monkeypatch.setattr(train_config, "_noticed", set())
    with caplog.at_level(logging.WARNING, logger="detforge.engine.train_config"):
        config = make_train_config({"box": 5.0, "class_weights": [1.0, 2.0], "tal_topk": 3, "tal_beta": 4.0})
        make_train_config({"box": 6.0})
    assert config.loss.as_dict() == {"box": 5.0, "class_weights": [1.0, 2.0]}
    assert config.assigner.as_dict() == {"topk": 3, "beta": 4.0}
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and "box, class_weights, tal_topk, tal_beta are deprecated" in notices[0]
    assert "loss.box" in notices[0] and "assigner.topk" in notices[0]
    with pytest.raises(ConfigError, match="box and loss.box are both set"):
        make_train_config({"box": 5.0, "loss": {"box": 6.0}})


def test_sub_config_keys_are_checked_against_the_registered_class():
    with pytest.raises(ConfigError, match=r"cfg.yaml: assigner.topk: input should be a valid integer"):
        make_train_config({"assigner": {"type": "tal", "topk": "ten"}}, "cfg.yaml")
    with pytest.raises(ConfigError, match=r"loss.type: unknown loss 'v9'; registered: .*yolov8"):
        make_train_config({"loss": {"type": "v9"}})
    with pytest.raises(ConfigError, match=r"loss.bxo: unknown key for loss 'yolov8'; accepted: type, .*box"):
        resolve_recipe(make_train_config({"loss": {"bxo": 1.0}}), None)  # untyped: checked with the recipe
    with pytest.raises(ConfigError, match=r"loss.model: unknown key"):  # the trainer passes it
        make_train_config({"loss": {"type": "yolov8", "model": 1}})


def test_model_recipe_sits_under_the_user_settings():
    recipe = {"lr0": 0.02, "momentum": 0.9, "assigner": {"topk": 13}, "loss": {"cls": 1.0, "box": 0.05},
              "augment": {"mixup": 0.15, "mosaic": 0.5}}
    user = make_train_config({"lr0": 0.005, "loss": {"box": 7.0}, "augment": {"mosaic": 1.0}})
    config = resolve_recipe(user, recipe, "y.yaml")
    assert (config.lr0, config.momentum) == (0.005, 0.9)
    assert config.assigner.as_dict() == {"type": "tal", "topk": 13}
    assert config.loss.as_dict() == {"type": "yolov8", "cls": 1.0, "box": 7.0}
    assert (config.augment.mixup, config.augment.mosaic) == (0.15, 1.0)
    assert resolve_recipe(config, recipe, "y.yaml") == config  # idempotent: a resumed run is unchanged
    # another loss type replaces the recipe's keys instead of merging into them
    other = resolve_recipe(make_train_config({"loss": {"type": "test_recipe_loss"}}), recipe, "y.yaml")
    assert other.loss.as_dict() == {"type": "test_recipe_loss"}


@detforge.register_loss("test_recipe_loss")
class PlainLoss(DetectionLoss):
    pass


def test_bad_recipes_name_the_model_file():
    with pytest.raises(ConfigError, match=r"y.yaml: train.loss.bx: unknown key for loss 'yolov8'"):
        resolve_recipe(make_train_config({}), {"loss": {"bx": 1.0}}, "y.yaml")
    with pytest.raises(ConfigError, match=r"y.yaml: train.lr00: unknown training setting"):
        resolve_recipe(make_train_config({}), {"lr00": 1.0}, "y.yaml")
    with pytest.raises(ConfigError, match=r"y.yaml: train.data: a run setting"):
        resolve_recipe(make_train_config({}), {"data": "x"}, "y.yaml")


def test_trainer_takes_the_recipe_from_the_model_yaml(settings, tiny_model, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(tiny_model.read_text() + "train: {lr0: 0.03, momentum: 0.9, loss: {cls: 0.7}}\n")
    model = detforge.create_model(path)
    assert model.config.train["loss"] == {"cls": 0.7}
    trainer = Trainer(make_train_config({**settings, "model": str(path), "lr0": 0.001}))
    config = trainer.resolve_config(model)
    assert (config.lr0, config.momentum) == (0.001, 0.9)  # the user's lr0 wins over the recipe's
    assert config.loss.as_dict() == {"type": "yolov8", "cls": 0.7}
    loss = trainer.__class__(config).build_loss(model)
    assert isinstance(loss, DetectionLoss) and loss.cls_gain == 0.7 and loss.num_classes == 2


@pytest.mark.parametrize("name", sorted(packaged_configs()))
def test_every_packaged_recipe_resolves(name):
    """A packaged model's `train:` block (if any) names registered parts with keys they accept."""
    path = packaged_configs()[name]
    recipe = (yaml.safe_load(path.read_text()) or {}).get("train")
    config = resolve_recipe(make_train_config({}), recipe, str(path))
    assert config.loss.type in LOSSES and config.assigner.type in ASSIGNERS


def test_cli_set_reaches_the_sub_configs():
    args = argparse.Namespace(cfg=None, overrides=["loss.cls=1.0", "assigner.topk=13", "box=5", "head.reg_max=8"])
    settings = settings_from_args(args)
    assert settings["loss"] == {"cls": 1.0} and settings["assigner"] == {"topk": 13}
    assert settings["overrides"] == ["head.reg_max=8"]
    config = make_train_config(settings)
    assert config.loss.as_dict() == {"cls": 1.0, "box": 5}
