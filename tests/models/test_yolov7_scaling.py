"""Compound scaling (YOLOv7 §3.3): deepening the ELANs widens their concatenation; the transition
widths and everything after them follow by the same factor. Checked against the reference's
variants: YOLOv7 → YOLOv7-X and YOLOv7-E6 → YOLOv7-D6."""

from __future__ import annotations

import yaml

import detforge
from detforge.config import packaged_configs
from detforge.models.scaling import compound_scale, concat_growth, elan_concat_width


def raw(name: str) -> dict:
    return yaml.safe_load(packaged_configs()[name].read_text())


def test_concat_width_arithmetic():
    assert elan_concat_width(64, 4, 2, 1.0) == 4 * 64  # YOLOv7 backbone: c4, c2, b, a
    assert elan_concat_width(64, 6, 2, 1.0) == 5 * 64  # YOLOv7-X: c6, c4, c2, b, a
    assert elan_concat_width(256, 4, 1, 0.5) == 2 * 256 + 4 * 128  # ELAN-H
    assert concat_growth({"elan_depth": 4, "elan_every": 2}, {"elan_depth": 6, "elan_every": 2}) == 1.25
    assert concat_growth({"elan_depth": 6, "elan_every": 1, "elan_width_ratio": 0.5},
                         {"elan_depth": 8, "elan_every": 1, "elan_width_ratio": 0.5}) == 1.2


def widths(config: dict) -> dict:
    keys = {"backbone": ("stem", "stage_down_channels", "stage_hidden", "stage_channels", "elan_depth", "elan_every"),
            "neck": ("spp_channels", "reduce_channels", "td_hidden", "td_channels", "down_channels", "bu_hidden",
                     "bu_channels", "out_widths", "elan_depth", "elan_every", "elan_width_ratio")}
    picked = {part: {k: config[part].get(k) for k in ks} for part, ks in keys.items()}
    picked["aux"] = (config.get("aux") or {}).get("widths")
    return picked


def test_yolov7_scales_to_yolov7x():
    scaled = compound_scale(raw("yolov7"), {"elan_depth": 6, "elan_every": 2},
                            {"elan_depth": 6, "elan_every": 2, "elan_width_ratio": 1.0})
    assert widths(scaled) == widths(raw("yolov7x"))


def test_yolov7_e6_scales_to_d6():
    scaled = compound_scale(raw("yolov7-e6"), {"elan_depth": 8, "elan_every": 2}, {"elan_depth": 8})
    assert widths(scaled) == widths(raw("yolov7-d6"))
    model = detforge.models.build.build_model(detforge.config.validate_config(scaled))
    assert sum(p.numel() for p in model.parameters()) == 154_709_364  # the reference's D6
