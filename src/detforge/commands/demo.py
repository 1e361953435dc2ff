"""`detforge demo`: the main job on an embedded default (what `make demo` runs).

Generates the synthetic shapes dataset, trains a small detector on it, evaluates the best
weights, predicts on held-out images and writes them annotated — no outside files needed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

MAP50_TARGET = 0.8


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate data, train, evaluate and predict end to end on the CPU",
        description="End-to-end demo on built-in synthetic data: synthesize a shapes dataset, train a "
        "detector, evaluate it (COCO mAP, plots), and predict on held-out images. Everything goes to --out.",
    )
    parser.add_argument("--out", default=".demo", help="folder for the data, the run and the predictions")
    parser.add_argument("--model", default="yolov8n", help="model to train (default yolov8n)")
    parser.add_argument("--images", type=int, default=500, help="synthetic images to generate (20%% held out)")
    parser.add_argument("--classes", type=int, default=3, help="shape classes")
    parser.add_argument("--imgsz", type=int, default=256, help="image size for data, training and prediction")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from detforge.data.synthetic import synthesize
    from detforge.engine.train_config import make_train_config
    from detforge.engine.trainer import Trainer
    from detforge.infer.predictor import Predictor

    start = time.perf_counter()
    out = Path(args.out)
    data = out / "data" / "data.yaml"
    if not data.is_file():
        print(f"[1/4] generating {args.images} synthetic images of {args.classes} shape classes in {data.parent}",
              flush=True)
        synthesize(data.parent, images=args.images, classes=args.classes, imgsz=args.imgsz, seed=args.seed,
                   progress=True)
    else:
        print(f"[1/4] reusing the synthetic dataset in {data.parent}", flush=True)

    print(f"[2/4] training {args.model} for {args.epochs} epochs at {args.imgsz} px", flush=True)
    config = make_train_config({
        "model": args.model, "data": str(data), "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
        "workers": args.workers, "project": str(out / "runs"), "name": "demo", "exist_ok": True,
        "seed": args.seed, "device": "auto", "patience": 0,
    }, "demo")
    result = Trainer(config).train()

    print("[3/4] evaluated the best weights on the held-out split (table above)", flush=True)
    metrics = result.metrics

    print("[4/4] predicting on held-out images", flush=True)
    predict_dir = out / "predict"
    held_out = sorted((data.parent / "images" / "val").glob("*.jpg"))[:8]
    predictor = Predictor(result.best, imgsz=args.imgsz, conf=0.25, batch=8)
    annotated = [r.save(predict_dir / f"{Path(r.path).stem}.png") for r in predictor.predict(held_out)]

    map50 = metrics.get("mAP50", 0.0)
    verdict = "reached" if map50 >= MAP50_TARGET else "NOT reached"
    print("\n".join([
        "",
        f"Demo finished in {time.perf_counter() - start:.0f} s",
        f"  mAP50 {map50:.3f} (target {MAP50_TARGET}: {verdict})   mAP50-95 {metrics.get('mAP50-95', 0.0):.3f}",
        f"  data               {data}",
        f"  best weights       {result.best}",
        f"  curves and plots   {result.run_dir} (results.png, PR_curve.png, F1_curve.png, confusion matrix)",
        f"  training batch     {result.run_dir / 'train_batch0.png'}",
        f"  predictions        {len(annotated)} annotated images in {predict_dir}",
        *(f"  {'try next' if i == 0 else '':<18} {command}" for i, command in enumerate(try_next(result.best, data))),
    ]))
    return 0


def try_next(best: Path, data: Path) -> list[str]:
    """Commands that run as printed: the weights remember the training image size, so none needs --imgsz."""
    return [
        f"detforge val --weights {best} --data {data}",
        f"detforge predict --weights {best} --source {data.parent / 'images' / 'val'}",
        f"detforge train --model {best} --data {data} --epochs 5   # fine-tune further",
    ]
