"""Model/training configs and --set values: bounded, and every mistake is one ConfigError line (issue 8)."""

from __future__ import annotations

import time

import pytest

import detforge
from detforge.config import parse_override
from detforge.engine.train_config import load_train_yaml
from detforge.errors import ConfigError


@pytest.mark.parametrize(("override", "message"), [
    ("head.num_classes=[", "--set 'head.num_classes=[': not valid YAML"),
    ("head.num_classes=*x", "undefined alias"),
    ("head.num_classes=20000", "head.num_classes = 20000; expected a whole number of classes from 1 to 10,000"),
    ("head.reg_max=99999999999999999999999", "model part numbers are at most 65,536"),
    ("head.reg_max=-3", "head 'decoupled' cannot be built from these arguments"),
    ("scales.n.width=1000.0", "scales.n.width: input should be less than or equal to 8"),
    ("names=" + "[" * 3000 + "]" * 3000, "nested too deeply"),
    ("head.num_classes=" + "9" * 5000, "not valid YAML"),
])
def test_bad_overrides_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError) as caught:
        detforge.create_model("yolov8n", overrides=[override])
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_config_too_big_to_allocate_is_refused_before_allocating():
    overrides = ["head.num_classes=10000", "scales.n.width=8.0", "scales.n.max_channels=8192"]
    with pytest.raises(ConfigError, match="2,816,768,000 parameters, over the 500,000,000 limit"):
        detforge.create_model("yolov8n", overrides=overrides)


def test_alias_bomb_in_a_config_is_refused_quickly(tmp_path):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    (tmp_path / "train.yaml").write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_train_yaml(tmp_path / "train.yaml")
    with pytest.raises(ConfigError, match="alias bomb"):
        parse_override("names=" + "; ".join(lines).replace("; ", ", ").join("{}"))
    assert time.monotonic() - start < 2


def test_ordinary_anchors_still_work():
    assert parse_override("x={a: &a [1, 2], b: *a}") == ("x", {"a": [1, 2], "b": [1, 2]})


def test_control_characters_in_yaml_are_one_line():
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_override("x=a\x00b")


def test_flat_setting_into_a_non_section_is_one_line():
    from detforge.engine.train_config import make_train_config

    with pytest.raises(ConfigError, match="augment: is 28, not a section"):
        make_train_config({"data": "x.yaml", "augment": 28, "mosaic": 0.5}, "t.yaml")


def test_unknown_setting_with_a_newline_in_its_name_stays_one_line():
    from detforge.engine.train_config import make_train_config

    with pytest.raises(ConfigError) as caught:
        make_train_config({"data": "x.yaml", "augment": {"\nab": 1}}, "t.yaml")
    assert "\n" not in str(caught.value) and "augment.\\nab" in str(caught.value)
