"""Converted-model agreement on large photos: where detforge's validation input differs from the reference's.

A YOLOv8n trained with Ultralytics' own loss for a few hundred steps (the helpers of
tests/engine/test_val_agreement.py) on the large-photo stand-in (bench/large_photos.py: BCCD cropped to
3:1 / 1:3, 1500-2000 px, photo grain) is scored twice per row, at 160 px, conf 0.001, NMS IoU 0.7,
300 boxes per image, rectangular batches of 16:
  - "printed": `detforge val` (converted weights) next to Ultralytics' own `val` figure;
  - "predictions.json": each side's saved boxes scored against the file labels with one scorer
    (faster-coco-eval through detforge.eval), which is the protocol of the issue's comparison.
The training images are shrunk from a full decode with bilinear interpolation by default, as
Ultralytics' loader does (`--train-resize area`: the agreement test's smoother INTER_AREA), so the
model is used to the reference's input the way a checkpoint trained by Ultralytics is.
The rows switch detforge's preprocessing towards the reference's one difference at a time
(data/preprocess.py), then all together (`--preprocess reference`, the reference's input exactly).

    python bench/converted_agreement.py [--steps 200] [--json PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
from pathlib import Path

from large_photos import DEFAULT_SRC, make_large_photos
from report import add_row, new_section, publish

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "engine"))  # the trained-reference helpers live with their test

ROWS = {  # label -> changes to detforge's preprocessing
    "detforge": {},
    "+ full JPEG decode": {"reduced_decode": False},
    "+ sizes rounded up": {"ceil_size": True},
    "+ half-stride rect pad": {"rect_pad": 0.5},
    "reference (all three)": {"reduced_decode": False, "ceil_size": True, "rect_pad": 0.5},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="BCCD, the stand-in's source")
    parser.add_argument("--steps", type=int, default=200, help="reference training steps (batch 8)")
    parser.add_argument("--train-resize", choices=("linear", "area"), default="linear",
                        help="how training images are shrunk: linear (full decode + bilinear, what Ultralytics' "
                        "loader feeds its model) or area")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path, help="write the figures here for bench/report.py")
    args = parser.parse_args()
    if not (args.src / "data.yaml").exists():
        print(f"skipped: {args.src / 'data.yaml'} not found (BCCD is expected in ../shared/datasets/bccd)",
              file=sys.stderr)
        return 0
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    logging.disable(logging.WARNING)
    import cv2
    import test_val_agreement as helpers
    import torch

    # one thread, as the agreement test runs: on shared cores two threads made each training step ~15x
    # costlier in CPU time (threads spinning at barriers while the other is descheduled)
    torch.set_num_threads(args.threads)

    from detforge import val
    from detforge.data.preprocess import PREPROCESS
    from detforge.io.convert import convert

    helpers.STEPS = args.steps
    section = new_section(
        "converted", "Converted-model agreement on large photos", "python bench/converted_agreement.py",
        f"YOLOv8n trained {args.steps} steps with Ultralytics' loss on the large-photo stand-in "
        "(bench/large_photos.py; "
        f"training images shrunk with {args.train_resize} interpolation), "
        f"converted; val split at {helpers.IMGSZ} px, conf 0.001, IoU 0.7, 300 boxes, rect batches of 16; "
        "mAP50-95 in points; the reference column is the same in every row.",
        ["detforge preprocessing"], {"printed mAP50-95": True, "predictions.json mAP50-95": True})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_large_photos(root / "large", args.src, train=helpers.TRAIN_IMAGES)
        shrink = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}[args.train_resize]
        checkpoint = helpers.train_reference(root / "large", root / "last.pt", interpolation=shrink)
        reference = helpers.ultralytics_val(checkpoint, data, root / "runs", "ultralytics", save_json=True)
        theirs_printed = 100 * reference.box.map
        theirs_json = 100 * helpers.score_predictions_json(root / "runs" / "ultralytics" / "predictions.json",
                                                           root / "large")
        weights = root / "converted.safetensors"
        convert(checkpoint, weights)
        for label, changes in ROWS.items():
            preprocess = dataclasses.replace(PREPROCESS["detforge"], name=label, **changes)
            out = root / "runs" / f"detforge{len(section['rows'])}"
            ours = val(weights, data, workers=0, coco_max_dets=300, progress=False, save_dir=out, plots=False,
                       save_json=True, preprocess=preprocess, **helpers.SETTINGS)
            ours_json = 100 * helpers.score_predictions_json(out / "predictions.json", root / "large")
            add_row(section, {"detforge preprocessing": label}, {
                "printed mAP50-95": {"detforge": [100 * ours.map50_95], "reference": [theirs_printed]},
                "predictions.json mAP50-95": {"detforge": [ours_json], "reference": [theirs_json]},
            })
            print(f"{label}: detforge val {100 * ours.map50_95:.2f}, its predictions.json {ours_json:.2f}; "
                  f"reference printed {theirs_printed:.2f}, its predictions.json {theirs_json:.2f}",
                  file=sys.stderr, flush=True)
    publish(section, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
