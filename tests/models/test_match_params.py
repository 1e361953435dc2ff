"""head.match_params / head.target_params: head variants land within ±5% of the decoupled head's size."""

import pytest
import torch

import detforge
from detforge.errors import ConfigError


def head_params(model) -> int:
    return sum(p.numel() for p in model.head.parameters())


@pytest.mark.parametrize("name", ["yolov8n-coupled", "yolov8n-hybrid", "yolov8n-obj", "yolov8n"])
def test_matched_heads_land_on_the_decoupled_size(name):
    target = head_params(detforge.create_model("yolov8n", num_classes=3))
    natural = head_params(detforge.create_model(name, num_classes=3))
    matched = detforge.create_model(name, num_classes=3, overrides={"head.match_params": True})
    assert abs(head_params(matched) / target - 1) <= 0.05
    if name in ("yolov8n-coupled", "yolov8n-hybrid"):
        assert abs(natural / target - 1) > 0.05  # they did differ before matching
    matched.eval()
    assert matched(torch.zeros(1, 3, 64, 64)).shape[-1] == 4 + 3  # still a working model


@pytest.mark.parametrize("name", ["yolov8n-coupled", "yolov8n-hybrid", "yolov8n"])
def test_explicit_target(name):
    model = detforge.create_model(name, num_classes=3, overrides={"head.target_params": 500_000})
    assert abs(head_params(model) / 500_000 - 1) <= 0.05


def test_bad_target_is_a_config_error():
    with pytest.raises(ConfigError, match="head"):
        detforge.create_model("yolov8n", overrides={"head.target_params": -3})
