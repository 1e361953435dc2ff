"""The Results API users bring from Ultralytics: indexing and iterating boxes, normalized forms, summary, show,
save with a default name, `save=True`, in-memory sources (numpy, PIL, tensors, mixed lists), several CLI
paths, a repeated path saved every time, and a clear error for `model("img.jpg")`."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from test_predict import BLUE, RED, ColorBlobDetector, picture, write_rgb

import detforge
from detforge.cli import main
from detforge.errors import SourceError
from detforge.infer.predictor import Predictor

RED_BOX, BLUE_BOX = (16, 32, 48, 64), (80, 16, 112, 48)


@pytest.fixture
def scene() -> np.ndarray:
    return picture(96, 128, [(*RED_BOX, RED), (*BLUE_BOX, BLUE)])


@pytest.fixture
def predictor():
    return Predictor(ColorBlobDetector(), imgsz=128, conf=0.5)


def test_boxes_index_slice_iterate_and_normalize(predictor, scene):
    (r,) = predictor.predict(scene)
    boxes = r.boxes
    assert len(boxes) == 32 and boxes.shape == (32, 6)
    first = boxes[0]
    assert first.data.shape == (1, 6) and first.xyxy.shape == (1, 4) and float(first.conf[0]) == float(boxes.conf[0])
    assert len(boxes[2:5]) == 3 and len(boxes[boxes.cls == 0]) == 16
    assert [float(b.conf[0]) for b in boxes] == boxes.conf.tolist()
    np.testing.assert_allclose(boxes.xyxyn.numpy(), (boxes.xyxy / torch.tensor([128, 96, 128, 96])).numpy())
    np.testing.assert_allclose(boxes.xywh[:, 2:].numpy(), 8.0)
    np.testing.assert_allclose(boxes.xywhn[:, 2:].numpy(), np.tile([8 / 128, 8 / 96], (32, 1)), rtol=1e-5)
    assert boxes.numpy().shape == (32, 6)
    top = r[:3]
    assert len(top) == 3 and top.path == r.path and top.orig_img is r.orig_img


def test_summary_plot_show_and_save(predictor, scene, tmp_path, monkeypatch):
    (r,) = predictor.predict(scene)
    rows = r.summary()
    assert len(rows) == 32 and set(rows[0]) == {"name", "class", "confidence", "box"}
    assert {row["name"] for row in rows} == {"red", "blue"} and set(rows[0]["box"]) == {"x1", "y1", "x2", "y2"}
    assert all(0 <= v <= 1 for row in r.summary(normalize=True) for v in row["box"].values())
    assert r.plot().shape == scene.shape

    shown = []
    monkeypatch.setattr(Image.Image, "show", lambda self, title=None: shown.append((self.size, title)))
    r.show()
    assert shown == [((128, 96), r.path)]

    monkeypatch.chdir(tmp_path)
    assert r.save().name == "results_image0.jpg" and (tmp_path / "results_image0.jpg").is_file()
    assert r.save(tmp_path / "x.png").is_file()


def test_in_memory_sources_numpy_pil_tensor_and_mixed(predictor, scene, tmp_path):
    reference = predictor.predict(scene)[0].boxes.data
    pil = Image.fromarray(scene)
    batch = torch.from_numpy(scene).permute(2, 0, 1).float().div(255)[None].repeat(2, 1, 1, 1)  # [2, 3, H, W]
    path = write_rgb(tmp_path / "a.png", scene)
    assert torch.equal(predictor.predict(pil)[0].boxes.data, reference)
    from_tensor = predictor.predict(batch)
    assert len(from_tensor) == 2 and all(torch.equal(r.boxes.data, reference) for r in from_tensor)
    assert torch.equal(predictor.predict(batch[0])[0].boxes.data, reference)  # [3, H, W]
    mixed = predictor.predict([scene, pil, str(path), batch[0]])
    assert len(mixed) == 4 and all(torch.equal(r.boxes.data, reference) for r in mixed)
    with pytest.raises(SourceError, match="float images must be in 0..1"):
        predictor.predict(batch * 255)
    with pytest.raises(SourceError, match=r"pass images as \[B, 3, H, W\]"):
        predictor.predict(torch.zeros(2, 1, 8, 8))


def test_model_predict_save_true_writes_a_run_folder(tmp_path, monkeypatch, tiny_detector):
    monkeypatch.chdir(tmp_path)
    image = write_rgb(tmp_path / "a.png", picture(64, 64))
    results = tiny_detector.predict(str(image), save=True, imgsz=64)
    assert len(results) == 1 and (tmp_path / "runs" / "predict" / "exp" / "a.png").is_file()
    tiny_detector.predict(str(image), save=True, imgsz=64)
    assert (tmp_path / "runs" / "predict" / "exp2" / "a.png").is_file()


def test_calling_the_model_on_a_path_points_at_predict(tiny_detector):
    with pytest.raises(SourceError, match=r"model.predict\('img.jpg'\)"):
        tiny_detector("img.jpg")
    with pytest.raises(SourceError, match="not ndarray"):
        tiny_detector(np.zeros((64, 64, 3), np.uint8))


def test_cli_several_sources_and_a_repeated_path_saves_every_result(tmp_path, scene, caplog):
    weights = tmp_path / "w.safetensors"
    detforge.save_weights(detforge.create_model("yolov8n", num_classes=2), weights)
    a, b = write_rgb(tmp_path / "a.jpg", scene), write_rgb(tmp_path / "b.jpg", scene)
    with caplog.at_level(logging.WARNING):
        assert main(["predict", "--weights", str(weights), "--source", str(a), str(b), str(a), "--imgsz", "64",
                     "--project", str(tmp_path / "runs"), "--save-txt"]) == 0
    out = tmp_path / "runs" / "exp"
    assert sorted(p.name for p in out.glob("*.jpg")) == ["a.jpg", "a_2.jpg", "b.jpg"]
    assert sorted(p.name for p in (out / "labels").glob("*.txt")) == ["a.txt", "a_2.txt", "b.txt"]
    assert "is in the source more than once" in caplog.text


@pytest.fixture(scope="module")
def tiny_detector():
    return detforge.create_model("yolov8n", num_classes=2).eval()
