"""Registries: assigners and losses are registered by name, like the model parts."""

import pytest

import detforge
from detforge.assign import TaskAlignedAssigner
from detforge.errors import ConfigError
from detforge.losses import DetectionLoss
from detforge.registry import ASSIGNERS, LOSSES


def test_packaged_assigner_and_loss_are_registered():
    assert ASSIGNERS.get("tal") is TaskAlignedAssigner
    assert LOSSES.get("yolov8") is DetectionLoss


def test_user_parts_register_through_the_package_api():
    @detforge.register_assigner("test_registry_assigner")
    class MyAssigner(TaskAlignedAssigner):
        pass

    @detforge.register_loss("test_registry_loss")
    class MyLoss(DetectionLoss):
        pass

    assert ASSIGNERS.get("test_registry_assigner") is MyAssigner
    assert LOSSES.get("test_registry_loss") is MyLoss
    with pytest.raises(ConfigError, match="already registered"):
        detforge.register_loss("yolov8")(MyLoss)


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="unknown assigner 'nope'; registered: .*tal"):
        ASSIGNERS.get("nope")


def test_loss_reads_classes_and_bins_from_the_model():
    model = detforge.create_model("yolov8n", overrides={"head.num_classes": 3})
    loss = LOSSES.get("yolov8")(model=model, assigner=ASSIGNERS.get("tal")(topk=5), box=2.0)
    assert (loss.num_classes, loss.reg_max, loss.box_gain, loss.assigner.topk) == (3, model.head.reg_max, 2.0, 5)
