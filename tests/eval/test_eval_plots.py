"""Plots are written as real, non-empty PNGs, also for many classes and for empty results."""

from __future__ import annotations

import numpy as np
from PIL import Image

from detforge.eval import evaluate, plot_confusion_matrix, plot_f1_curve, plot_pr_curves


def _result(num_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for i in range(12):
        xy = rng.uniform(0, 400, (6, 2))
        boxes = np.c_[xy, xy + rng.uniform(10, 200, (6, 2))]
        classes = rng.integers(num_classes, size=6)
        gts.append({"image_id": i, "width": 640, "height": 640, "boxes": boxes, "classes": classes})
        noisy = boxes + rng.normal(0, 6, boxes.shape)
        flip = rng.random(6) < 0.2
        preds.append({"image_id": i, "boxes": noisy, "scores": rng.uniform(0.05, 1, 6),
                      "classes": np.where(flip, rng.integers(num_classes, size=6), classes)})
    return evaluate(preds, gts, [f"class{c}" for c in range(num_classes)])


def _assert_png(path):
    assert path.stat().st_size > 10_000
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= 400
        # not a blank canvas: a real plot has many distinct colours
        assert len(np.unique(np.asarray(im.convert("L")))) > 20


def test_save_plots_writes_three_pngs(tmp_path):
    paths = _result(3).save_plots(tmp_path / "run")
    assert set(paths) == {"pr_curve", "f1_curve", "confusion_matrix"}
    for path in paths.values():
        assert path.parent == tmp_path / "run"
        _assert_png(path)


def test_plots_with_many_classes_and_no_curves(tmp_path):
    r = _result(40, seed=1)
    _assert_png(plot_confusion_matrix(r.confusion, r.names, tmp_path / "cm.png"))
    _assert_png(plot_pr_curves(r.coco.recall_points, r.coco.pr_curve, r.coco.ap50, r.names, tmp_path / "pr.png"))
    # no class has ground truth: axes only, still a valid file
    empty = np.full((2, 1000), np.nan)
    path = plot_f1_curve(np.linspace(0, 1, 1000), empty, ["a", "b"], tmp_path / "f1.png")
    assert path.stat().st_size > 0
