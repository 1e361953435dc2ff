"""Our in-memory COCO adapter against faster-coco-eval's own file-based path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from faster_coco_eval import COCO, COCOeval_faster

from detforge.eval import evaluate


def _reference_stats(coco_gt: COCO, results: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The pycocotools recipe: loadRes, COCOeval(bbox), run. Returns stats[:6] and per-class AP50-95."""
    coco_dt = coco_gt.loadRes(results)
    ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=lambda *a, **k: None)
    ev.run()
    precision = ev.eval["precision"][:, :, :, 0, -1]
    per_class = np.array([precision[:, :, k][precision[:, :, k] > -1].mean() for k in range(precision.shape[2])])
    return np.asarray(ev.stats[:6]), per_class


def _random_predictions(gts: list[dict], nc: int, rng: np.random.Generator) -> list[dict]:
    """Noisy copies of most ground-truth boxes, some with the wrong class, plus random clutter."""
    preds = []
    for g in gts:
        boxes, classes = [], []
        for box, cls in zip(g["boxes"], g["classes"]):
            if rng.random() < 0.8:
                wh = box[2:] - box[:2]
                boxes.append(box + rng.normal(0, 0.08, 4) * np.r_[wh, wh])
                classes.append(cls if rng.random() < 0.9 else rng.integers(nc))
        for _ in range(rng.integers(0, 6)):
            xy = rng.uniform(0, [g["width"] - 20, g["height"] - 20])
            boxes.append(np.r_[xy, xy + rng.uniform(8, 150, 2)])
            classes.append(rng.integers(nc))
        boxes = np.array(boxes).reshape(-1, 4)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, g["width"])
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, g["height"])
        preds.append(
            {"image_id": g["image_id"], "boxes": boxes, "scores": rng.random(len(boxes)), "classes": classes}
        )
    return preds


def _read_coco_json(path) -> tuple[list[dict], list[str], list[int]]:
    data = json.loads(path.read_text())
    cats = sorted(data["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(cats)}
    per_image = {im["id"]: ([], []) for im in data["images"]}
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        per_image[ann["image_id"]][0].append([x, y, x + w, y + h])
        per_image[ann["image_id"]][1].append(index[ann["category_id"]])
    gts = [
        {
            "image_id": im["id"],
            "width": im["width"],
            "height": im["height"],
            "boxes": np.array(per_image[im["id"]][0], float).reshape(-1, 4),
            "classes": per_image[im["id"]][1],
        }
        for im in data["images"]
    ]
    return gts, [c["name"] for c in cats], [c["id"] for c in cats]


def test_matches_faster_coco_eval_on_bccd_val(bccd, tmp_path):
    ann_file = bccd / "annotations" / "instances_val.json"
    gts, names, cat_ids = _read_coco_json(ann_file)
    preds = _random_predictions(gts, len(names), np.random.default_rng(0))
    r = evaluate(preds, gts, names)

    results_file = r.to_coco_results(tmp_path / "predictions.json", cat_ids)
    ref_stats, ref_per_class = _reference_stats(COCO(str(ann_file)), json.loads(results_file.read_text()))
    ours = [r.coco.map50_95, r.coco.map50, r.coco.map75, r.coco.map_small, r.coco.map_medium, r.coco.map_large]
    ours = np.nan_to_num(ours, nan=-1.0)
    assert 0.2 < r.map50_95 < 0.9  # a set with both hits and misses, so agreement means something
    np.testing.assert_allclose(ours, ref_stats, atol=1e-6)
    np.testing.assert_allclose(r.coco.ap50_95, ref_per_class, atol=1e-6)


def test_best_f1_matches_faster_coco_eval_extended_metrics(bccd):
    """faster-coco-eval's own sweep (COCO matching, exact thresholds) gives the same operating point."""
    gts, names, _ = _read_coco_json(bccd / "annotations" / "instances_val.json")
    gts = gts[:30]
    r = evaluate(_random_predictions(gts, len(names), np.random.default_rng(1)), gts, names)
    from detforge.eval.coco import coco_datasets

    gt_json, dt_json = coco_datasets(r.records, names)
    coco_gt = COCO(gt_json)
    ev = COCOeval_faster(coco_gt, coco_gt.loadRes(dt_json["annotations"]), iouType="bbox", extra_calc=True,
                         print_function=lambda *a, **k: None)
    ev.run()
    ext = ev.extended_metrics
    assert r.conf.precision == pytest.approx(ext["precision"], abs=1e-9)
    assert r.conf.recall == pytest.approx(ext["recall"], abs=1e-9)


def test_results_json_round_trips_through_load_res(tmp_path):
    # ids as an external dataset would have them: sparse image ids, category ids 7 and 3
    gts = [
        {"image_id": 42, "width": 320, "height": 240, "boxes": np.array([[10.5, 20, 110, 90.5]]), "classes": [0]},
        {"image_id": 7, "width": 320, "height": 240, "boxes": np.array([[50, 50, 80, 200], [0, 0, 30, 30.0]]),
         "classes": [1, 0]},
    ]
    preds = [
        {"image_id": 42, "boxes": np.array([[12.5, 22, 110, 92.5], [200, 10, 260, 60]]), "scores": [0.9, 0.4],
         "classes": [0, 1]},
        {"image_id": 7, "boxes": np.array([[52, 60, 80, 200.25]]), "scores": [0.75], "classes": [1]},
    ]
    names, cat_ids = ["a", "b"], [7, 3]
    r = evaluate(preds, gts, names)
    path = r.to_coco_results(tmp_path / "res.json", cat_ids)

    rows = json.loads(path.read_text())
    assert {(d["image_id"], d["category_id"]) for d in rows} == {(42, 7), (42, 3), (7, 3)}
    assert rows[0]["bbox"] == [12.5, 22.0, 97.5, 70.5]  # xywh
    gt_json = {
        "images": [{"id": g["image_id"], "width": g["width"], "height": g["height"]} for g in gts],
        "categories": [{"id": cid, "name": n} for cid, n in zip(cat_ids, names)],
        "annotations": [
            {"id": len(gts) * 10 + i * 5 + j + 1, "image_id": g["image_id"], "category_id": cat_ids[c],
             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": float((b[2] - b[0]) * (b[3] - b[1])),
             "iscrowd": 0}
            for i, g in enumerate(gts) for j, (b, c) in enumerate(zip(g["boxes"].tolist(), g["classes"]))
        ],
    }
    coco_gt = COCO(gt_json)
    ev = COCOeval_faster(coco_gt, coco_gt.loadRes(str(path)), iouType="bbox", print_function=lambda *a, **k: None)
    ev.run()
    ours = np.nan_to_num([r.coco.map50_95, r.coco.map50, r.coco.map75], nan=-1.0)
    np.testing.assert_allclose(ours, ev.stats[:3], atol=1e-12)
    assert 0 < r.map50_95 < 1
