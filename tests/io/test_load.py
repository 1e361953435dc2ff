"""One way in (issue 9 item 2): `detforge.load` reads every weight kind by parsing it; `list_models`."""

from __future__ import annotations

import importlib
import shutil

import pytest
import torch

import detforge
from detforge.config import packaged_configs
from detforge.errors import WeightsError
from detforge.io import load as io_load
from detforge.io.load import LOADERS, register_loader
from detforge.io.sniff import _SNIFFERS, sniff
from detforge.io.weights import build_skeleton


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    model = detforge.create_model("yolov8n", num_classes=2, overrides={"head.box_convs": 1})
    model.names = ["a", "b"]
    return detforge.save_weights(model, tmp_path_factory.mktemp("w") / "m.safetensors"), model


def test_list_models_names_every_packaged_config_and_scale():
    names = detforge.list_models()
    assert {"yolov8n", "yolov8x", "yolov8s-p2", "yolov8m-coupled"} <= set(names)
    assert len(names) == len(set(names))
    for stem in packaged_configs():  # each config file appears (with its scales, or as itself)
        family, _, variant = stem.partition("-")
        assert any(n.startswith(family) and n.endswith(variant) for n in names), stem
    for name in names:  # every listed name resolves to a valid config
        assert detforge.load_config(name).num_classes >= 1
    assert build_skeleton(lambda: detforge.create_model("yolov8n")).num_classes == 80


def test_format_comes_from_the_content_not_the_suffix(weights, tmp_path):
    path, model = weights
    renamed = tmp_path / "weights.pt"
    shutil.copy(path, renamed)
    assert sniff(renamed) == "safetensors"
    loaded = detforge.load(renamed)
    assert loaded.names == ["a", "b"] and io_load is detforge.load
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_one_resolver_for_cli_and_library(weights, capsys):
    from detforge.cli import main
    from detforge.io.convert import load_detector

    path, _ = weights
    assert load_detector(path).names == ["a", "b"]  # the trainer's / predictor's name for it
    assert main(["info", str(path), "--imgsz", "64"]) == 0
    assert "backbone" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not a weights file"),
        (b"hello world, not weights", "not a weights file"),
        (b"\x80\x02}q\x00.", "legacy"),
    ],
)
def test_unreadable_files_are_one_line_errors(tmp_path, content, match):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=match) as err:
        detforge.load(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    with pytest.raises(WeightsError, match="no such weights file"):
        detforge.load(tmp_path / "missing.pt")


def test_a_registered_format_is_dispatched_by_its_sniffer(tmp_path, monkeypatch):
    load_module, sniff_module = (importlib.import_module(f"detforge.io.{m}") for m in ("load", "sniff"))
    monkeypatch.setattr(load_module, "LOADERS", dict(LOADERS))  # registration lasts for this test only
    monkeypatch.setattr(sniff_module, "_SNIFFERS", list(_SNIFFERS))
    path = tmp_path / "model.bin"
    path.write_bytes(b"MYFMT" + bytes(10))
    register_loader("myfmt", lambda p, limits=None: ("loaded", p.name), lambda head, size: head[:5] == b"MYFMT")
    assert detforge.load(path) == ("loaded", "model.bin")
