"""Predictor, sources and Results on images, folders, lists and videos.

Most tests use `ColorBlobDetector`, a stand-in whose detections follow from image content, so
they can assert where boxes must be; one test runs a real (random) YOLOv8n through the CLI.
"""

from __future__ import annotations

import json
import logging
import types
from typing import ClassVar

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import detforge
from detforge.cli import main
from detforge.device import cpu_has_bf16
from detforge.errors import SourceError
from detforge.infer.annotate import class_color
from detforge.infer.postprocess import non_max_suppression, scale_boxes_to_original
from detforge.infer.predictor import Predictor, batch_shape, letterbox_batch
from detforge.infer.sources import Frame, open_source, prefetch
from detforge.models.deploy import PackedConvAct

CELL = 8
RED = (230, 20, 20)  # RGB
BLUE = (20, 20, 230)


class ColorBlobDetector(nn.Module):
    """Input `[B, 3, H, W]` RGB in 0..1 → `[B, N, 4 + 2]` cell boxes (xyxy pixels) and class scores.

    Class 0 is "red", class 1 "blue". The input is cut into 8x8 cells; a cell's score for a class
    is the fraction of its pixels of that colour and its box is the cell. A patch of at least
    16x16 input pixels fills a whole cell (score 1); a patch shrunk to 3x3 pixels scores at most
    9/64, so downscaling makes small objects vanish.
    """

    names: ClassVar[list[str]] = ["red", "blue"]
    strides: ClassVar[list[int]] = [8, 16, 32]
    num_classes = 2

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))  # gives the module a dtype and device like a real model
        self.fused = False

    def fuse(self) -> ColorBlobDetector:
        self.fused = True
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        red = ((r > 0.6) & (g < 0.3) & (b < 0.3)).to(x.dtype)
        blue = ((b > 0.6) & (r < 0.3) & (g < 0.3)).to(x.dtype)
        scores = F.avg_pool2d(torch.stack((red, blue), 1), CELL) * self.gain  # [B, 2, H/8, W/8]
        batch, _, rows, cols = scores.shape
        ys, xs = torch.meshgrid(torch.arange(rows, dtype=x.dtype), torch.arange(cols, dtype=x.dtype), indexing="ij")
        boxes = torch.stack((xs, ys, xs + 1, ys + 1), -1).reshape(-1, 4) * CELL  # [N, 4]
        return torch.cat((boxes.expand(batch, -1, -1), scores.flatten(2).transpose(1, 2)), dim=2)


def picture(height: int, width: int, patches=()) -> np.ndarray:
    """Gray RGB image with colour patches given as (x1, y1, x2, y2, rgb)."""
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    for x1, y1, x2, y2, color in patches:
        image[y1:y2, x1:x2] = color
    return image


def write_rgb(path, image: np.ndarray):
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def inside(boxes: torch.Tensor, region) -> bool:
    """Every box lies within `region` (x1, y1, x2, y2), up to a pixel of rounding."""
    x1, y1, x2, y2 = region
    return bool(((boxes[:, 0] >= x1 - 1) & (boxes[:, 1] >= y1 - 1) & (boxes[:, 2] <= x2 + 1)
                 & (boxes[:, 3] <= y2 + 1)).all())


@pytest.fixture
def predictor():
    return Predictor(ColorBlobDetector(), imgsz=128, conf=0.5)


def test_single_image_results_api(tmp_path, predictor):
    red, blue = (16, 32, 48, 64), (80, 16, 112, 48)
    path = write_rgb(tmp_path / "one.png", picture(96, 128, [(*red, RED), (*blue, BLUE)]))
    (result,) = predictor.predict(path)

    assert result.path == str(path) and result.orig_shape == (96, 128) and result.names == ["red", "blue"]
    boxes = result.boxes
    assert isinstance(boxes.xyxy, torch.Tensor) and boxes.xyxy.shape == (len(boxes), 4)
    assert set(boxes.cls.tolist()) == {0.0, 1.0}
    assert inside(boxes.xyxy[boxes.cls == 0], red) and inside(boxes.xyxy[boxes.cls == 1], blue)
    assert (boxes.conf > 0.5).all() and (boxes.conf[:-1] >= boxes.conf[1:]).all()
    assert not boxes.data.is_inference()  # users may edit results in place
    # 32x32 patches on an 8-pixel grid: exactly 16 full cells each
    assert (boxes.cls == 0).sum() == 16 and (boxes.cls == 1).sum() == 16

    drawn = result.plot(line_width=2)
    assert drawn.shape == result.orig_img.shape and drawn.dtype == np.uint8
    changed = np.any(drawn != result.orig_img, axis=2)
    assert changed.any()
    # RGB output: the red class' outline is drawn in its palette colour in RGB order
    assert (drawn[changed] == class_color(0)).all(axis=1).any()

    payload = json.loads(result.to_json())
    assert payload["width"] == 128 and payload["height"] == 96 and len(payload["detections"]) == len(boxes)
    assert {d["name"] for d in payload["detections"]} == {"red", "blue"}

    lines = result.save_txt(tmp_path / "one.txt", save_conf=True).read_text().splitlines()
    values = np.array([[float(v) for v in line.split()] for line in lines])
    assert values.shape == (len(boxes), 6) and (values[:, 1:5] > 0).all() and (values[:, 1:5] <= 1).all()
    np.testing.assert_allclose(values[:, 3:5], [[8 / 128, 8 / 96]] * len(values), rtol=1e-4)


def centers_inside(boxes: torch.Tensor, region) -> bool:
    x1, y1, x2, y2 = region
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return bool(((cx >= x1 - 1) & (cx <= x2 + 1) & (cy >= y1 - 1) & (cy <= y2 + 1)).all())


def test_arrays_in_mixed_batch_map_back_to_each_image():
    """Differently sized images share one letterboxed batch; boxes land on each image's patch.

    A cell scoring above 0.55 has its centre on the patch, wherever the letterbox put the image."""
    shapes = [(96, 128), (200, 60), (64, 64)]
    patch = (8, 16, 56, 64)
    images = [picture(h, w, [(*patch, RED)]) for h, w in shapes]
    for batch in (1, 3):
        results = Predictor(ColorBlobDetector(), imgsz=64, conf=0.55, batch=batch).predict(images)
        for result, shape in zip(results, shapes):
            assert result.orig_shape == shape and len(result) > 0
            assert centers_inside(result.boxes.xyxy, patch)


def test_letterbox_batch_shape_is_stride_multiple_holding_every_image():
    assert batch_shape([(480, 640)], 640, 32) == (480, 640)
    assert batch_shape([(480, 640), (640, 480)], 640, 32) == (640, 640)
    assert batch_shape([(100, 1000)], 640, 32) == (64, 640)
    batch, placements = letterbox_batch([picture(480, 640), picture(100, 1000)], 320, 32)
    assert batch.shape == (2, 3, 256, 320) and batch.dtype == torch.uint8
    (r0, pad0), (r1, pad1) = placements
    assert r0 == pytest.approx(0.5) and pad0 == (0, 8)
    assert r1 == pytest.approx(0.32) and pad1 == (0, 112)


def test_classes_filter_and_max_det(tmp_path):
    image = picture(64, 64, [(0, 0, 16, 16, RED), (32, 32, 64, 64, BLUE)])
    (only_blue,) = Predictor(ColorBlobDetector(), imgsz=64, conf=0.5, classes=[1]).predict(image)
    assert len(only_blue) == 16 and set(only_blue.boxes.cls.tolist()) == {1.0}
    (capped,) = Predictor(ColorBlobDetector(), imgsz=64, conf=0.5, max_det=3).predict(image)
    assert len(capped) == 3


def test_folder_skips_unreadable_image_with_warning(tmp_path, predictor, caplog):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        write_rgb(folder / f"img{i}.jpg", picture(64, 96, [(8 * i, 8, 8 * i + 24, 32, RED)]))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.md").write_text("ignored: not an image")
    with caplog.at_level(logging.WARNING):
        results = predictor.predict(folder)
    assert [r.path for r in results] == [str(folder / f"img{i}.jpg") for i in range(3)]
    assert all(len(r) > 0 for r in results)
    assert any("broken.jpg" in message and "skipped" in message for message in caplog.messages)


def test_glob_and_txt_list_sources(tmp_path, predictor):
    for name in ("a.png", "b.png", "c.png"):
        write_rgb(tmp_path / name, picture(32, 32, [(0, 0, 16, 16, RED)]))
    assert [r.path for r in predictor.predict(str(tmp_path / "[ab].png"))] == [
        str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    listing = tmp_path / "list.txt"
    listing.write_text("c.png\n\n# a comment\nmissing.png\n" + str(tmp_path / "a.png") + "\n")
    assert [r.path for r in predictor.predict(listing)] == [str(tmp_path / "c.png"), str(tmp_path / "a.png")]


def test_missing_or_empty_sources_raise_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "data.csv").write_text("x")
    for source, phrase in [(tmp_path / "nope.jpg", "no such file"), (tmp_path / "empty", "holds no image"),
                           (str(tmp_path / "*.png"), "matches no image"), (tmp_path / "data.csv", "not an image")]:
        with pytest.raises(SourceError, match=phrase) as info:
            open_source(source)
        assert "\n" not in str(info.value)


def write_video(path, frames: int, size=(96, 64), step=4):
    """A red 16x16 square moving `step` pixels right per frame; returns its x1 per frame."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    xs = []
    for i in range(frames):
        x = 4 + step * i
        writer.write(cv2.cvtColor(picture(height, width, [(x, 24, x + 16, 40, RED)]), cv2.COLOR_RGB2BGR))
        xs.append(x)
    writer.release()
    return xs


def test_video_frames_stream_in_order(tmp_path):
    video = tmp_path / "clip.avi"
    xs = write_video(video, 12)
    predictor = Predictor(ColorBlobDetector(), imgsz=96, conf=0.5, batch=4)
    assert len(open_source(video)) == 12
    stream = predictor.predict(video, stream=True)
    assert isinstance(stream, types.GeneratorType)
    results = list(stream)
    assert [r.frame for r in results] == list(range(12)) and {r.path for r in results} == {str(video)}
    for result, x in zip(results, xs):
        assert len(result) > 0 and inside(result.boxes.xyxy, (x, 24, x + 16, 40))


def test_streaming_holds_a_bounded_number_of_frames():
    """Each yielded result has pulled at most one batch plus the prefetch queue from the source."""
    decoded = []

    def frames():
        for i in range(200):
            decoded.append(i)
            yield Frame(picture(48, 48, [(8, 8, 24, 24, RED)]), "synthetic.mp4", i)

    batch = 4
    predictor = Predictor(ColorBlobDetector(), imgsz=64, conf=0.5, batch=batch)
    bound = batch + 2 * batch + 2  # one batch in the model, the queue, one frame in the worker's hand
    for n, result in enumerate(predictor.stream(frames()), 1):
        assert result.frame == n - 1
        assert len(decoded) <= n + bound
    assert n == 200


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_getaffinity"), reason="needs /proc (Linux)")
def test_streaming_memory_stays_flat_on_a_long_video():
    """300 large frames (2.7 MB each, 800 MB in all) pass through with RSS growing far less than that."""
    def frames():
        for i in range(300):
            yield Frame(np.full((720, 1280, 3), i % 200, dtype=np.uint8), "long.mp4", i)

    predictor = Predictor(ColorBlobDetector(), imgsz=64, conf=0.5, batch=4)
    stream = predictor.stream(frames())
    for _ in range(20):
        next(stream)
    start = rss_bytes()
    for _ in stream:
        pass
    assert rss_bytes() - start < 150 * 2**20


def test_prefetch_reraises_and_stops_early():
    def failing():
        yield 1
        raise ValueError("decode failed")

    with pytest.raises(ValueError, match="decode failed"):
        list(prefetch(failing()))
    pulled = []

    def endless():
        i = 0
        while True:
            pulled.append(i)
            yield i
            i += 1

    stream = prefetch(endless(), depth=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    count = len(pulled)
    assert count <= 3 + 2 + 2
    assert len(pulled) == count  # the worker thread has stopped


def test_user_model_is_not_fused_in_place():
    model = ColorBlobDetector()
    predictor = Predictor(model, imgsz=64)
    assert predictor.model.fused and not model.fused


def varied_yolov8n():
    """A yolov8n whose weights and BN statistics are not the init's (so its outputs vary with the input)."""
    torch.manual_seed(0)
    model = detforge.create_model("yolov8n", num_classes=3).eval()
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.05)
    return model


def test_speed_tricks_leave_detections_unchanged():
    """The fused, channels-last, oneDNN-packed copy gives the plain model's boxes; the user's model is untouched."""
    model = varied_yolov8n()
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    batch, ((ratio, pad),) = letterbox_batch([image], 128, 32)
    x = batch.float() / 255
    with torch.no_grad():
        raw = model(x)
    conf = float(raw[0, :, 4:].max(dim=1).values.sort(descending=True).values[40])  # about 40 candidates
    predictor = Predictor(model, imgsz=128, conf=conf, max_det=50)
    with torch.no_grad():
        torch.testing.assert_close(predictor.model(x.contiguous(memory_format=torch.channels_last)), raw,
                                   atol=1e-3, rtol=1e-3)
        (plain,) = non_max_suppression(raw, conf, 0.7, 50)
    plain[:, :4] = scale_boxes_to_original(plain[:, :4], ratio, pad, image.shape[:2])
    (fast,) = predictor.detect([image])
    assert len(fast) > 5 and len(fast) == len(plain)
    torch.testing.assert_close(fast, plain, atol=1e-2, rtol=1e-3)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert any(isinstance(m, PackedConvAct) for m in predictor.model.modules())


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bfloat16")
def test_half_on_a_bf16_cpu_runs_packed_bfloat16_close_to_float32():
    model = varied_yolov8n()
    full, half = Predictor(model, imgsz=128), Predictor(model, imgsz=128, half=True)
    assert half.dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.float32
    assert any(isinstance(m, PackedConvAct) for m in half.model.modules())
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    x = (letterbox_batch([image], 128, 32)[0].float() / 255).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected, got = full.model(x), half.model(x.to(torch.bfloat16))
    assert got.dtype == torch.bfloat16
    box_error = (got[..., :4].float() - expected[..., :4]).abs()
    assert box_error.max() < 4 and box_error.mean() < 0.5  # pixels, on a 128-pixel input
    torch.testing.assert_close(got[..., 4:].float(), expected[..., 4:], atol=1e-3, rtol=2e-2)
    assert full.detect([image])[0].dtype == half.detect([image])[0].dtype == torch.float32


def test_half_on_a_cpu_without_native_bf16_runs_float32_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with caplog.at_level(logging.WARNING):
        predictor = Predictor(detforge.create_model("yolov8n", num_classes=3), imgsz=64, half=True)
    assert predictor.dtype == torch.float32
    assert next(p for p in predictor.model.parameters()).dtype == torch.float32
    assert "no native half precision" in caplog.text


def save_tiny_weights(path):
    model = detforge.create_model("yolov8n", num_classes=2, names=["cat", "dog"])
    detforge.save_weights(model, path)
    return path


def test_cli_predict_writes_images_video_txt_and_json(tmp_path, capsys):
    weights = save_tiny_weights(tmp_path / "tiny.safetensors")
    source = tmp_path / "src"
    source.mkdir()
    write_rgb(source / "a.jpg", picture(48, 64, [(8, 8, 32, 32, RED)]))
    write_rgb(source / "b.png", picture(64, 48))
    write_video(source / "clip.avi", 5)
    (source / "bad.jpg").write_bytes(b"garbage")
    code = main(["predict", "--weights", str(weights), "--source", str(source), "--imgsz", "64", "--conf", "0.0",
                 "--max-det", "5", "--batch", "2", "--save-txt", "--save-json", "--project", str(tmp_path / "runs"),
                 "--name", "p"])
    assert code == 0
    run = tmp_path / "runs" / "p"
    assert (run / "a.jpg").is_file() and (run / "b.png").is_file()
    capture = cv2.VideoCapture(str(run / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    capture.release()
    labels = sorted(p.name for p in (run / "labels").iterdir())
    assert labels == ["a.txt", "b.txt"] + [f"clip_{i}.txt" for i in range(5)]
    rows = [line.split() for line in (run / "labels" / "a.txt").read_text().splitlines()]
    assert len(rows) == 5 and all(len(row) == 5 and row[0] in ("0", "1") for row in rows)
    payload = json.loads((run / "json" / "clip_3.json").read_text())
    assert payload["frame"] == 3 and len(payload["detections"]) == 5
    assert {d["name"] for d in payload["detections"]} <= {"cat", "dog"}
    assert "7 frames" in capsys.readouterr().out


def test_cli_missing_weights_or_source_fail_with_one_line(tmp_path, capsys):
    weights = save_tiny_weights(tmp_path / "tiny.safetensors")
    image = write_rgb(tmp_path / "a.jpg", picture(32, 32))
    for args in (["--weights", str(tmp_path / "missing.safetensors"), "--source", str(image)],
                 ["--weights", str(weights), "--source", str(tmp_path / "missing.jpg")]):
        assert main(["predict", *args, "--project", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "missing" in err and "\n" not in err
    assert not (tmp_path / "runs").exists()


def test_predictor_deploys_its_copy_without_training_parts():
    """The predictor runs `deploy()` on its private copy: auxiliary heads gone there, kept on the user's model."""
    model = detforge.create_model("yolov8n", num_classes=2).eval()
    model.aux = nn.Conv2d(3, 3, 1)
    predictor = Predictor(model, imgsz=64)
    assert predictor.model.aux is None and isinstance(model.aux, nn.Conv2d)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in predictor.model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
