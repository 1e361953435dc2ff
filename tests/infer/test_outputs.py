"""Saving predictions is library code: `model.predict(source, save_dir=...)` writes what the CLI writes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import torch

import detforge
from detforge.cli import main
from detforge.infer.outputs import ResultWriter
from detforge.infer.results import Results


def tiny_weights(path):
    detforge.save_weights(detforge.create_model("yolov8n", num_classes=2, names=["cat", "dog"]), path)
    return path


def make_source(folder):
    folder.mkdir()
    image = np.full((48, 64, 3), 128, np.uint8)
    image[8:32, 8:32] = (230, 20, 20)
    cv2.imwrite(str(folder / "a.jpg"), image)
    cv2.imwrite(str(folder / "b.png"), np.full((64, 48, 3), 90, np.uint8))
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(3):
        frame = np.full((48, 64, 3), 100, np.uint8)
        frame[10:26, 4 + 4 * i:20 + 4 * i] = (20, 20, 230)
        writer.write(frame)
    writer.release()
    return folder


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_python_save_dir_writes_the_files_the_cli_writes(tmp_path):
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    source = make_source(tmp_path / "src")
    settings = {"imgsz": 64, "conf": 0.0, "max_det": 5, "batch": 2}
    assert main(["predict", "--weights", str(weights), "--source", str(source), "--imgsz", "64", "--conf", "0.0",
                 "--max-det", "5", "--batch", "2", "--save-txt", "--save-conf", "--save-json",
                 "--project", str(tmp_path), "--name", "cli"]) == 0
    cli = tmp_path / "cli"

    model = detforge.load(weights)
    results = model.predict(source, save_dir=tmp_path / "py", save_txt=True, save_conf=True, save_json=True,
                            **settings)
    py = tmp_path / "py"
    assert len(results) == 5
    assert files(py) == files(cli)
    assert "clip.mp4" in files(py) and "labels/clip_2.txt" in files(py) and "json/a.json" in files(py)
    for name in files(cli):
        if name.endswith((".txt", ".json")) and name != "summary.json":
            assert (py / name).read_text() == (cli / name).read_text(), name
    for name in ("a.jpg", "b.png"):
        assert np.array_equal(cv2.imread(str(py / name)), cv2.imread(str(cli / name)))
    summaries = [json.loads((run / "summary.json").read_text()) for run in (py, cli)]
    assert [(s["frames"], s["boxes"]) for s in summaries] == [(5, 25)] * 2

    # the package-level one-call path, streaming, labels only
    stream = detforge.predict(weights, source / "a.jpg", stream=True, save_dir=tmp_path / "one",
                              save_images=False, save_txt=True, **settings)
    assert len(list(stream)) == 1
    assert files(tmp_path / "one") == ["labels/a.txt", "summary.json"]


def test_writer_gives_same_named_files_distinct_stems(tmp_path):
    image = np.zeros((16, 16, 3), np.uint8)
    empty = np.zeros((0, 6), np.float32)
    with ResultWriter(tmp_path / "out", save_txt=True) as writer:
        for path in ("x/a.jpg", "y/a.jpg", "x/a.jpg"):
            writer.write(Results(image, path, ["c"], torch.from_numpy(empty)))
    # x/a.jpg listed twice is saved twice (issue 15: a repeated path writes every result)
    assert files(tmp_path / "out") == ["a.jpg", "a_2.jpg", "a_3.jpg", "labels/a.txt", "labels/a_2.txt",
                                       "labels/a_3.txt", "summary.json"]
