"""Shared test fixtures: keep torch on few threads so `pytest -n 2` does not oversubscribe 2 cores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = SHARED / "datasets"


@pytest.fixture
def bccd() -> Path:
    root = DATASETS / "bccd"
    if not (root / "data.yaml").exists():
        pytest.skip(f"BCCD dataset not found at {root} (../shared/datasets/bccd is provided beside the checkout)")
    return root


@pytest.fixture
def coco128() -> Path:
    root = DATASETS / "coco128"
    if not (root / "data.yaml").exists():
        pytest.skip(f"coco128 not found at {root} (../shared/datasets/coco128 is provided beside the checkout)")
    return root
