"""bench/train_profile.py's phase clock (nested phases count exclusively, steps close with the rest as
"other") and its rows per detforge precision, and bench/large_photos.py's stand-in (crops, box
bookkeeping, sizes), on tiny inputs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="module")
def profile(bench_script):
    return bench_script("train_profile")


@pytest.fixture(scope="module")
def photos(bench_script):
    return bench_script("large_photos")


def busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_nested_phases_count_exclusively_and_the_rest_is_other(profile) -> None:
    clock = profile.PhaseClock()
    assigner = clock.wrap("assigner", lambda: busy(0.02))

    def loss_body():
        busy(0.01)
        assigner()

    loss = clock.wrap("loss", loss_body)
    clock.step()
    loss()
    busy(0.01)  # untimed work of the step
    clock.step()
    (step,) = clock.steps
    cpu = step["cpu_ms"]
    assert cpu["assigner"] == pytest.approx(20, abs=6)
    assert cpu["loss"] == pytest.approx(10, abs=6)  # without the assigner inside it
    assert cpu["other"] == pytest.approx(10, abs=6)
    assert sum(cpu.values()) == pytest.approx(step["step_cpu_ms"])
    assert set(cpu) == set(profile.PHASES)


def test_optimizer_rows_come_from_the_steps_that_ran_one(profile) -> None:
    def step(optimizer: float) -> dict:
        ms = dict.fromkeys(profile.PHASES, 1.0) | {"optimizer": optimizer, "EMA": optimizer / 2}
        return {"wall_ms": ms, "cpu_ms": ms, "step_wall_ms": 9.0, "step_cpu_ms": 8.0}

    steps = [step(0.0), step(40.0), step(0.0)]
    assert profile.phase_values(steps, "wall_ms", "optimizer") == [40.0]
    assert profile.phase_values(steps, "cpu_ms", "EMA") == [20.0]
    assert profile.phase_values(steps, "wall_ms", "forward") == [1.0] * 3
    assert profile.phase_values(steps, "cpu_ms", "step") == [8.0] * 3


def test_crops_keep_boxes_mostly_inside(photos) -> None:
    assert photos.crop_window(640, 480, "wide") == (0, 133, 640, 346)
    assert photos.crop_window(640, 480, "tall") == (240, 0, 400, 480)
    assert photos.crop_window(640, 480, "plain") == (0, 0, 640, 480)
    boxes = np.array([[0, 10, 140, 50, 180], [1, 10, 100, 50, 180], [2, 10, 10, 50, 50]], dtype=float)
    kept = photos.crop_boxes(boxes, (0, 133, 640, 346))
    np.testing.assert_allclose(kept, [[0, 10, 7, 50, 47]])  # the 2nd keeps 47 of its 80 rows (59%): dropped
    np.testing.assert_allclose(photos.crop_boxes(boxes, (0, 133, 640, 346), keep=0.5)[:, 0], [0, 1])


def test_standin_set_is_large_and_extreme(tmp_path: Path, photos) -> None:
    src = tmp_path / "src"
    for split in ("train", "val"):
        (src / "images" / split).mkdir(parents=True)
        (src / "labels" / split).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(src / "images" / split / f"im{i}.jpg"), np.full((48, 64, 3), 100 + 40 * i, np.uint8))
            (src / "labels" / split / f"im{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (src / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: thing\n")
    data = photos.make_large_photos(tmp_path / "out", src, train=2, seed=0, grain=3.0)
    assert data.exists()
    shapes = [cv2.imread(str(p)).shape[:2] for p in sorted((tmp_path / "out" / "images" / "val").glob("*.jpg"))]
    assert len(shapes) == 3 and len(list((tmp_path / "out" / "images" / "train").glob("*.jpg"))) == 2
    assert all(1500 <= max(s) <= 2000 for s in shapes)
    aspects = sorted(round(w / h, 1) for h, w in shapes)
    assert aspects == [0.3, 1.3, 3.0]
    for label in (tmp_path / "out" / "labels" / "val").glob("*.txt"):
        _, x, y, w, h = map(float, label.read_text().split())
        assert (x, y) == pytest.approx((0.5, 0.5), abs=0.03)  # centred crops, whole pixels
        assert 0 < w <= 1 and 0 < h <= 1


@pytest.mark.parametrize("native_bf16", [True, False])
def test_each_detforge_precision_is_profiled_against_the_same_reference_steps(profile, monkeypatch, tmp_path,
                                                                               native_bf16) -> None:
    """bf16 rows (detforge's CPU default) sit beside the float32 ones, both against one reference
    measurement per size; a CPU without native bf16 gets float32 rows only."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "data.yaml").write_text("train: images\n")
    measured = []

    def fake_measure(framework, args, imgsz, out):
        measured.append((framework, imgsz))
        ms = dict.fromkeys(profile.PHASES, {"ultralytics": 9.0, "detforge": 3.0, "detforge-bf16": 2.0}[framework])
        return [{"wall_ms": ms, "cpu_ms": ms, "step_wall_ms": 30.0, "step_cpu_ms": 30.0}]

    monkeypatch.setattr(profile, "measure", fake_measure)
    monkeypatch.setattr(profile, "private_copy", lambda source, tmp: source)
    monkeypatch.setattr("detforge.device.cpu_has_bf16", lambda: native_bf16)
    monkeypatch.setattr(sys, "argv", ["train_profile", "--data", str(tmp_path / "data"), "--sizes", "320",
                                      "--json", str(tmp_path / "profile.json")])
    assert profile.main() == 0
    section = json.loads((tmp_path / "profile.json").read_text())
    rows = {(r["key"]["detforge precision"], r["key"]["phase"]): r["samples"]["wall ms"] for r in section["rows"]}
    precisions = ["float32", "bf16"] if native_bf16 else ["float32"]
    assert measured == [("ultralytics", 320), *((profile.PRECISIONS[p], 320) for p in precisions)]
    assert rows[("float32", "forward")] == {"detforge": [3.0], "reference": [9.0]}
    assert (rows.get(("bf16", "forward")) == {"detforge": [2.0], "reference": [9.0]}) is native_bf16
