"""Settings that used to do nothing without a word: --set on a weights file, weights of another
architecture, and validation with class names that are not the dataset's."""

import logging

import detforge
from detforge.engine.finetune import transfer_weights
from detforge.engine.train_config import make_train_config
from detforge.engine.trainer import Trainer

WIDER = """\
backbone: {type: csp_darknet, stem_channels: 16, stage_channels: [32, 32, 64, 64], stage_depths: [1, 1, 1, 1]}
neck: {type: pan_fpn, depth: 1}
head: {type: decoupled, num_classes: 2}
"""


def test_set_on_a_weights_file_changes_the_architecture(settings, tiny_model, tmp_path, caplog):
    weights = detforge.save_weights(detforge.create_model(tiny_model), tmp_path / "w.safetensors")
    with caplog.at_level(logging.INFO):
        result = Trainer(make_train_config({**settings, "model": str(weights), "epochs": 1,
                                            "overrides": ["head.reg_max=8"]})).train()
    trained = detforge.load(result.last)
    assert trained.head.reg_max == 8 and trained.config.head.kwargs["reg_max"] == 8
    assert "architecture changed by head.reg_max=8" in caplog.text
    assert "of another shape" in caplog.text  # the box branch's last convs could not be copied


def test_weights_of_another_architecture_are_counted_and_warned_about(tiny_model, tmp_path, caplog):
    wide = tmp_path / "wide.yaml"
    wide.write_text(WIDER)
    model, source = detforge.create_model(tiny_model), detforge.create_model(wide)
    with caplog.at_level(logging.INFO):
        copied = transfer_weights(model, source, "wide.safetensors")
    total = len(model.state_dict())
    assert f"transferred {copied}/{total} tensors from wide.safetensors; {total - copied} skipped" in caplog.text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "come from these weights" in warnings[0].getMessage()

    caplog.clear()
    with caplog.at_level(logging.INFO):
        transfer_weights(model, detforge.create_model(tiny_model), "same.safetensors")
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_val_warns_when_class_names_differ(tiny_data, tiny_model, caplog):
    model = detforge.create_model(tiny_model, names=["apple", "pear"])
    with caplog.at_level(logging.WARNING):
        detforge.val(model, str(tiny_data), imgsz=64, workers=0, progress=False)
    assert "class names differ from the dataset's (model: apple, pear; dataset:" in caplog.text
