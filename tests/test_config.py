"""Configs: overrides, registered user parts, and one-line errors for each kind of mistake."""

import textwrap

import pytest
import torch
from torch import nn

import detforge
from detforge.config import load_config
from detforge.errors import ConfigError
from detforge.models.layers import ConvBNAct

BASE = """
backbone:
  type: csp_darknet
  stem_channels: 16
  stage_channels: [16, 32, 64, 64]
  stage_depths: [1, 1, 1, 1]
neck:
  type: pan_fpn
  depth: 1
head:
  type: decoupled
  num_classes: 3
"""


def write(tmp_path, text, name="model.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path, text, **kw) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        detforge.create_model(path, **kw)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_valid_yaml_builds(tmp_path):
    model = detforge.create_model(write(tmp_path, BASE))
    assert model.num_classes == 3 and model.config.name == "model"


def test_unknown_part_name(tmp_path):
    msg = error_of(tmp_path, BASE.replace("type: pan_fpn", "type: bifpn"))
    assert "neck.type" in msg and "'bifpn'" in msg and "pan_fpn" in msg


def test_unknown_key_lists_accepted_keys(tmp_path):
    msg = error_of(tmp_path, BASE.replace("  num_classes: 3", "  num_classes: 3\n  num_class: 4"))
    assert "head.num_class" in msg and "unknown key" in msg and "num_classes" in msg and "box_convs" in msg


def test_unknown_top_level_key(tmp_path):
    msg = error_of(tmp_path, BASE + "epochs: 3\n")
    assert "epochs" in msg and "backbone" in msg


def test_wrong_type(tmp_path):
    msg = error_of(tmp_path, BASE.replace("depth: 1", "depth: three"))
    assert "neck.depth" in msg and "'three'" in msg


def test_wrong_type_inside_list(tmp_path):
    msg = error_of(tmp_path, BASE.replace("[1, 1, 1, 1]", "[1, x, 1, 1]"))
    assert "backbone.stage_depths.1" in msg


def test_channel_mismatch_between_parts(tmp_path):
    msg = error_of(tmp_path, BASE.replace("  depth: 1", "  depth: 1\n  in_channels: [8, 8, 8]"))
    assert "neck.in_channels" in msg and "[32, 64, 64]" in msg


def test_unknown_scale(tmp_path):
    msg = error_of(tmp_path, BASE + "scales:\n  n: {depth: 0.5, width: 0.5}\nscale: q\n")
    assert "scale" in msg and "'q'" in msg and "n" in msg


def test_missing_part(tmp_path):
    msg = error_of(tmp_path, "backbone:\n  type: csp_darknet\nneck:\n  type: pan_fpn\n")
    assert "head" in msg and "missing" in msg


def test_unknown_packaged_name_lists_choices():
    with pytest.raises(ConfigError, match="yolov8n"):
        detforge.create_model("yolov9q")


def test_overrides_set_nested_keys():
    config = load_config("yolov8n", overrides={"head.num_classes": 3, "head.reg_max": 8})
    assert config.head.kwargs["num_classes"] == 3 and config.head.kwargs["reg_max"] == 8
    model = detforge.create_model("yolov8n", overrides=["head.num_classes=3", "neck.depth=1"])
    assert model.num_classes == 3 and len(model.neck.top_down[0].blocks) == 1


def test_bad_override_is_one_line():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        detforge.create_model("yolov8n", overrides=["head.num_classes"])
    with pytest.raises(ConfigError, match="head.num_clases"):
        detforge.create_model("yolov8n", overrides=["head.num_clases=3"])


def test_scale_multipliers_apply():
    n, s = detforge.create_model("yolov8n"), detforge.create_model("yolov8s")
    assert s.backbone.out_channels == [2 * c for c in n.backbone.out_channels]


@detforge.register_backbone("test_tiny_backbone")
class TinyBackbone(nn.Module):
    """A user's own backbone: two stride-2 convs per level."""

    def __init__(self, width: int = 8, scaling=None):
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Sequential(ConvBNAct(3, width, 3, 4), ConvBNAct(width, width, 3, 2))]
            + [ConvBNAct(width, width, 3, 2) for _ in range(2)]
        )
        self.out_channels, self.strides = [width] * 3, [8, 16, 32]

    def forward(self, x):
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs


def test_user_registered_part_builds_from_yaml(tmp_path):
    path = write(tmp_path, BASE.replace("type: csp_darknet\n  stem_channels: 16\n  stage_channels: [16, 32, 64, 64]\n"
                                        "  stage_depths: [1, 1, 1, 1]", "type: test_tiny_backbone\n  width: 12"))
    model = detforge.create_model(path)
    assert isinstance(model.backbone, TinyBackbone) and model.neck.in_channels == [12, 12, 12]
    assert model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 84, 7)
    with pytest.raises(ConfigError, match="backbone.width"):
        detforge.create_model(path, overrides={"backbone.width": "wide"})


@pytest.mark.parametrize("override", ["backbone.stage_channels=[0,0,0,0]", "head.reg_max=0",
                                      "backbone.stem_channels=0"])
def test_a_layer_without_channels_is_a_config_error_not_a_torch_crash(override):
    # found by tests/security's `--set` fuzzer: these built and then failed inside conv2d
    with pytest.raises(ConfigError, match="zero-sized .* must be at least 1"):
        detforge.create_model("yolov8n", overrides=[override])
