"""A tiny generated dataset and a tiny model config, shared by the engine tests."""

from pathlib import Path

import pytest

from detforge.data.synthetic import synthesize

TINY_MODEL = """\
backbone: {type: csp_darknet, stem_channels: 8, stage_channels: [16, 16, 32, 32], stage_depths: [1, 1, 1, 1]}
neck: {type: pan_fpn, depth: 1}
head: {type: decoupled, num_classes: 2}
"""


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """20 generated images (16 train / 4 val) of 2 shape classes, 96 px."""
    return synthesize(tmp_path_factory.mktemp("shapes"), images=20, classes=2, imgsz=96, seed=0)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.yaml"
    path.write_text(TINY_MODEL)
    return path


@pytest.fixture
def settings(tiny_data, tiny_model, tmp_path) -> dict:
    return {"model": str(tiny_model), "data": str(tiny_data), "epochs": 2, "imgsz": 64, "batch": 8, "workers": 0,
                "project": str(tmp_path / "runs"), "name": "t", "plots": False, "deterministic": True, "seed": 0,
                "warmup_epochs": 0.5}
