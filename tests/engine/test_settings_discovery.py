"""Training settings can be discovered: suggestions for unknown keys, flat Ultralytics-style names, and
`detforge train --help-settings` listing every setting with its default and meaning."""

import pytest

from detforge.cli import build_parser, main
from detforge.commands.train import settings_from_args
from detforge.engine.settings import settings
from detforge.engine.train_config import TrainConfig, make_train_config
from detforge.errors import ConfigError


def test_flat_ultralytics_names_reach_their_section():
    c = make_train_config({"mosaic": 0.5, "fliplr": 0.1, "close_mosaic": 3, "hsv_h": 0.02, "augment": {"mixup": 0.2}})
    assert (c.augment.mosaic, c.augment.fliplr, c.augment.close_mosaic, c.augment.hsv_h) == (0.5, 0.1, 3, 0.02)
    assert c.augment.mixup == 0.2  # the section's other keys stay


def test_unknown_keys_suggest_the_closest_setting():
    with pytest.raises(ConfigError, match=r"mosaik: unknown training setting; did you mean augment.mosaic\?"):
        make_train_config({"mosaik": 0.5})
    with pytest.raises(ConfigError, match=r"augment.fliplf: unknown training setting; did you mean augment.fliplr"):
        make_train_config({"augment": {"fliplf": 0.5}})
    with pytest.raises(ConfigError, match="--help-settings"):
        make_train_config({"zzzz": 1})


def test_set_on_the_command_line(tmp_path):
    def parsed(*sets):
        args = build_parser().parse_args(["train", "--data", "d.yaml", *[a for s in sets for a in ("--set", s)]])
        return settings_from_args(args)

    config = make_train_config(parsed("mosaic=0.5", "scale=0.3", "head.reg_max=8"))
    assert config.augment.mosaic == 0.5 and config.augment.scale == 0.3 and config.overrides == ["head.reg_max=8"]
    assert make_train_config(parsed("scale=s")).overrides == ["scale=s"]  # a letter: the model's scale


def test_help_settings_lists_every_setting_with_default_and_meaning(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help-settings"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    every = settings(TrainConfig)
    assert all(s.meaning for s in every), [s.key for s in every if not s.meaning]
    for s in every:
        assert any(line.startswith(s.key + " ") and s.meaning in line for line in out.splitlines()), s.key
    assert "mosaic=augment.mosaic" in out
