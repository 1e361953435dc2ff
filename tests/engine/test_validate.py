"""`detforge val` / `detforge.val`: metrics end to end on a generated dataset, run folder contents, errors.

An "oracle" model that boxes the red and the blue pixels of each image exactly must score
mAP50-95 = 1 through the whole path (loader letterbox → model → NMS → boxes mapped back →
COCO evaluation); swapping its classes must score 0.
"""

from __future__ import annotations

import json
import logging
from typing import ClassVar

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import detforge
from detforge.cli import main
from detforge.device import cpu_has_bf16
from detforge.errors import DataError

NAMES = ["red", "blue"]
COLORS = {0: (230, 20, 20), 1: (20, 20, 230)}  # RGB


class ColorOracle(nn.Module):
    """`[B, 3, H, W]` → `[B, 2, 4 + 2]`: the bounding box of all red pixels (class 0, score 0.9) and of all
    blue pixels (class 1, score 0.8); `swap` reports each under the other class."""

    names: ClassVar[list[str]] = NAMES
    strides: ClassVar[list[int]] = [8, 16, 32]
    num_classes = 2

    def __init__(self, swap: bool = False):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))
        self.swap = swap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 2, 6)
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        masks = (((r > 0.6) & (g < 0.3) & (b < 0.3)), ((b > 0.6) & (r < 0.3) & (g < 0.3)))
        for i in range(x.shape[0]):
            for cls, (mask, score) in enumerate(zip(masks, (0.9, 0.8))):
                ys, xs = mask[i].nonzero(as_tuple=True)
                if len(xs):
                    out[i, cls, :4] = torch.stack((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)).float()
                    out[i, cls, 4 + (1 - cls if self.swap else cls)] = score * self.gain
        return out


def boxes_for(i: int) -> dict[int, tuple[int, int, int, int]]:
    return {0: (4 + 6 * i, 6, 30 + 6 * i, 40), 1: (50, 10 + 3 * i, 90, 30 + 3 * i)}


def write_yolo_dataset(root, count: int = 4, size=(96, 64)):
    width, height = size
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for i in range(count):
        image = np.full((height, width, 3), 128, np.uint8)
        lines = []
        for cls, (x1, y1, x2, y2) in boxes_for(i).items():
            image[y1:y2, x1:x2] = COLORS[cls]
            lines.append(f"{cls} {(x1 + x2) / 2 / width} {(y1 + y2) / 2 / height} {(x2 - x1) / width} "
                         f"{(y2 - y1) / height}")
        cv2.imwrite(str(root / "images" / "val" / f"{100 + i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        (root / "labels" / "val" / f"{100 + i}.txt").write_text("\n".join(lines) + "\n")
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/val\nval: images/val\nnames:\n  0: red\n  1: blue\n")
    return data


def write_coco_json(root, count: int = 4, size=(96, 64)):
    """Same images described by a COCO json with image ids 7, 14, ... and category ids 3 (red) and 5 (blue)."""
    width, height = size
    images, annotations = [], []
    for i in range(count):
        images.append({"id": 7 * (i + 1), "file_name": f"{100 + i}.png", "width": width, "height": height})
        for cls, (x1, y1, x2, y2) in boxes_for(i).items():
            annotations.append({"id": len(annotations) + 1, "image_id": 7 * (i + 1), "category_id": (3, 5)[cls],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    (root / "annotations").mkdir()
    path = root / "annotations" / "instances_val.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 3, "name": "red"}, {"id": 5, "name": "blue"}]}))
    return path


@pytest.fixture
def dataset(tmp_path):
    return write_yolo_dataset(tmp_path / "colors")


def test_exact_boxes_score_one_and_swapped_classes_zero(dataset, tmp_path):
    result = detforge.val(ColorOracle(), dataset, imgsz=96, workers=0, progress=False, save_dir=tmp_path / "run")
    assert result.map50_95 == pytest.approx(1.0) and result.map50 == pytest.approx(1.0)
    summary = result.summary()
    assert summary["precision"] == pytest.approx(1.0) and summary["recall"] == pytest.approx(1.0)
    assert summary["images"] == 4 and summary["instances"] == 8
    for name in ("PR_curve.png", "F1_curve.png", "confusion_matrix_normalized.png", "metrics.json"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    assert not (tmp_path / "run" / "predictions.json").exists()

    swapped = detforge.val(ColorOracle(swap=True), dataset, imgsz=96, workers=0, progress=False)
    assert swapped.map50_95 == 0.0


def test_boxes_map_back_through_a_downscaled_letterbox(dataset):
    """At imgsz 64 the 96x64 images are shrunk by 2/3 and padded; boxes mapped back still match at IoU 0.5+."""
    result = detforge.val(ColorOracle(), dataset, imgsz=64, workers=0, progress=False)
    assert result.map50 == pytest.approx(1.0)
    assert result.map50_95 > 0.6


def test_half_on_a_model_that_is_not_a_detector_runs_it_as_given_and_says_so(dataset, caplog):
    """An exported model (ONNX Runtime, OpenVINO) has the precision it was exported with; `--half` cannot change it."""
    with caplog.at_level(logging.WARNING):
        result = detforge.val(ColorOracle(), dataset, imgsz=96, workers=0, progress=False, plots=False, half=True)
    assert result.map50_95 == pytest.approx(1.0)
    assert "runs in the precision it was exported with" in caplog.text


def test_coco_results_use_the_dataset_ids(dataset, tmp_path):
    yolo = detforge.val(ColorOracle(), dataset, imgsz=96, workers=0, progress=False, save_dir=tmp_path / "yolo",
                        save_json=True, plots=False)
    rows = json.loads((tmp_path / "yolo" / "predictions.json").read_text())
    assert {r["image_id"] for r in rows} == {100, 101, 102, 103}  # numeric file stems
    assert {r["category_id"] for r in rows} == {1, 2}
    assert len(rows) == 8 and yolo.map50_95 == pytest.approx(1.0)

    coco = write_coco_json(dataset.parent)
    detforge.val(ColorOracle(), coco, imgsz=96, workers=0, progress=False, save_dir=tmp_path / "coco",
                 save_json=True, plots=False)
    rows = json.loads((tmp_path / "coco" / "predictions.json").read_text())
    assert {r["image_id"] for r in rows} == {7, 14, 21, 28}
    by_image = {(r["image_id"], r["category_id"]): r["bbox"] for r in rows}
    x1, y1, x2, y2 = boxes_for(2)[1]
    assert by_image[(21, 5)] == pytest.approx([x1, y1, x2 - x1, y2 - y1])


def test_model_and_dataset_class_counts_must_match(dataset):
    model = detforge.create_model("yolov8n", num_classes=3)
    with pytest.raises(DataError, match="3") as info:
        detforge.val(model, dataset, imgsz=64, workers=0, progress=False)
    assert "\n" not in str(info.value)


def test_cli_val_json_prints_one_object_and_writes_the_run(dataset, tmp_path, capsys):
    weights = tmp_path / "tiny.safetensors"
    detforge.save_weights(detforge.create_model("yolov8n", names=NAMES), weights)
    args = ["val", "--weights", str(weights), "--data", str(dataset), "--imgsz", "64", "--workers", "0",
            "--project", str(tmp_path / "runs"), "--name", "v", "--save-json"]
    assert main([*args, "--json"]) == 0
    out = capsys.readouterr().out.strip()
    payload = json.loads(out)
    assert "\n" not in out and payload["images"] == 4 and payload["instances"] == 8
    assert {"mAP50-95", "mAP50", "mAP75", "mAP_small", "precision", "recall", "f1", "AP50-95/blue"} <= set(payload)
    run = tmp_path / "runs" / "v"
    assert payload["save_dir"] == str(run)
    assert (run / "predictions.json").is_file() and (run / "PR_curve.png").is_file()

    assert main(args) == 0  # the table form, into a new run folder
    text = capsys.readouterr().out
    assert "AP50-95" in text and "red" in text and "blue" in text and "mAP50-95" in text
    assert (tmp_path / "runs" / "v2" / "metrics.json").is_file()


def test_cli_val_missing_weights_is_one_line(dataset, tmp_path, capsys):
    code = main(["val", "--weights", str(tmp_path / "none.safetensors"), "--data", str(dataset),
                 "--project", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "none.safetensors" in err and "\n" not in err


class AsGiven(nn.Module):
    """Wraps a detector so that validation runs it eagerly, as given (it deploys only `Detector`s)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_validation_runs_a_deployed_copy_and_leaves_the_model_as_it_was(tiny_data, tiny_model):
    """The trainer validates its EMA model every epoch and goes on updating it: validation must neither fold
    nor pack it, and the folded copy must score the boxes the eager model gives (up to float rounding)."""
    from detforge.data import build_dataloader, load_dataset_spec
    from detforge.engine.validate import run_validation

    torch.manual_seed(0)
    model = detforge.create_model(str(tiny_model))
    spec = load_dataset_spec(tiny_data)
    loader = build_dataloader(spec, split="val", imgsz=96, batch_size=4, augment=False, workers=0, shuffle=False,
                              rect=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    layers = [type(m) for m in model.modules()]
    deployed = run_validation(model, loader, spec.names, torch.device("cpu"), progress=False)
    assert [type(m) for m in model.modules()] == layers
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    eager = run_validation(AsGiven(model), loader, spec.names, torch.device("cpu"), progress=False)
    assert len(deployed.records) == len(eager.records) == 4
    for ours, reference in zip(deployed.records, eager.records, strict=True):
        assert len(ours.scores) > 0
        top = min(20, len(ours.scores), len(reference.scores))
        np.testing.assert_allclose(np.sort(ours.scores)[::-1][:top], np.sort(reference.scores)[::-1][:top],
                                   atol=1e-4)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bfloat16")
def test_half_validation_scores_a_bfloat16_copy_close_to_float32(tiny_data, tiny_model, monkeypatch):
    """`val --half` scores what `predict --half` runs: a bfloat16 deployed copy; the caller's model stays float32."""
    from detforge.data import build_dataloader, load_dataset_spec
    from detforge.engine import validate

    torch.manual_seed(0)
    model = detforge.create_model(str(tiny_model))
    spec = load_dataset_spec(tiny_data)
    loader = build_dataloader(spec, split="val", imgsz=96, batch_size=4, augment=False, workers=0, shuffle=False,
                              rect=True)
    deployed = []
    real_deploy = validate.deploy_model
    monkeypatch.setattr(validate, "deploy_model", lambda m, **kw: deployed.append(real_deploy(m, **kw)) or deployed[-1])
    half = validate.run_validation(model, loader, spec.names, torch.device("cpu"), progress=False, half=True)
    full = validate.run_validation(model, loader, spec.names, torch.device("cpu"), progress=False)
    assert [next(m.parameters()).dtype for m in deployed] == [torch.bfloat16, torch.float32]
    assert next(model.parameters()).dtype == torch.float32
    for ours, reference in zip(half.records, full.records, strict=True):
        top = min(20, len(ours.scores), len(reference.scores))
        assert top > 0
        np.testing.assert_allclose(np.sort(ours.scores)[::-1][:top], np.sort(reference.scores)[::-1][:top],
                                   atol=2e-2)
