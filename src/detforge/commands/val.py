"""`detforge val`: score weights on a dataset split with COCO metrics, write plots and a COCO results json.

`val(...)` is the Python form (`detforge.val`); the command prints what it returns. Prediction
and matching run through the training loop's `detforge.engine.validate.validate`, so the numbers
are exactly the ones a training run reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from detforge.errors import DataError

logger = logging.getLogger(__name__)


def next_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """`project/name`, or `name2`, `name3`... when it exists (unless `exist_ok`)."""
    base = Path(project) / name
    if exist_ok or not base.exists():
        return base
    n = 2
    while base.with_name(f"{base.name}{n}").exists():
        n += 1
    return base.with_name(f"{base.name}{n}")


def val(model, data, split: str = "val", imgsz: int = 640, batch: int = 16, conf: float = 0.001,
        iou: float = 0.7, max_det: int = 300, coco_max_dets: int = 100, device: str = "cpu", workers: int = 2,
        save_dir: str | Path | None = None, plots: bool = True, save_json: bool = False, progress: bool = True):
    """Evaluate `model` (a `Detector` or a weights path) on `split` of `data` (a data.yaml, COCO json,
    VOC folder); returns an `EvalResult`.

    conf / iou / max_det: NMS settings (the defaults are the usual mAP protocol). coco_max_dets:
    COCO's per-image cap when scoring (100 is the COCO protocol; 300 scores every kept box, as
    Ultralytics does). save_dir: where plots (`plots=True`) and `predictions.json` (`save_json=True`,
    COCO results with the dataset's image and category ids) go.
    """
    import torch

    from detforge.data import build_dataloader, load_dataset_spec
    from detforge.engine.validate import validate
    from detforge.eval import evaluate
    from detforge.infer.predictor import resolve_model, select_device

    detector = resolve_model(model)
    spec = load_dataset_spec(data)
    if detector.num_classes != spec.nc:
        raise DataError(
            f"{spec.path}: the dataset has {spec.nc} classes but the model predicts {detector.num_classes}; "
            "evaluate on the dataset the model was trained for"
        )
    device = select_device(device)
    stride = max(int(s) for s in detector.strides)
    loader = build_dataloader(spec, split=split, imgsz=imgsz, batch_size=batch, augment=False, rect=True,
                              workers=workers, shuffle=False, stride=stride, progress=progress)
    net = detector.to(device)
    with torch.inference_mode():
        result = validate(net, loader, spec.names, device, conf, iou, max_det, progress=progress)
    dataset = loader.dataset
    paths = [dataset.store.path(int(dataset.order[i])) for i in range(len(dataset))]
    image_ids, category_ids = _dataset_ids(spec, split, paths)
    records = [dataclasses.replace(r, image_id=image_ids[r.image_id]) for r in result.records]
    if coco_max_dets != 100:
        result = _rescore(records, spec.names, coco_max_dets, evaluate)
    else:
        result = dataclasses.replace(result, records=records)
    if save_dir is not None:
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        if plots:
            result.save_plots(save_dir)
        if save_json:
            result.to_coco_results(save_dir / "predictions.json", category_ids)
        (save_dir / "metrics.json").write_text(json.dumps(result.summary(), indent=2))
    return result


def _rescore(records, names, max_dets, evaluate):
    """Evaluate the same boxes again with another COCO per-image cap."""
    predictions = [{"image_id": r.image_id, "boxes": r.boxes, "scores": r.scores, "classes": r.classes}
                   for r in records]
    truths = [{"image_id": r.image_id, "width": r.width, "height": r.height, "boxes": r.gt_boxes,
               "classes": r.gt_classes} for r in records]
    return evaluate(predictions, truths, names, max_dets=max_dets)


def _dataset_ids(spec, split: str, paths: list[str]) -> tuple[list, list[int] | None]:
    """Per loader position the dataset's image id, and per class its category id.

    A COCO dataset keeps its json's ids; otherwise an image's id is its file stem (an int when it
    is numeric) and class c is category c + 1.
    """
    if spec.format == "coco":
        (json_path,) = spec.require_split(split)
        data = json.loads(Path(json_path).read_text(encoding="utf-8"))
        by_name = {Path(im["file_name"]).name: im["id"] for im in data["images"]}
        categories = sorted(int(c["id"]) for c in data["categories"])
        return [by_name.get(Path(p).name, Path(p).stem) for p in paths], categories
    stems = [Path(p).stem for p in paths]
    return [int(s) if s.isnumeric() else s for s in stems], None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "val",
        help="score weights on a dataset split (COCO mAP, per-class AP, P/R/F1, plots)",
        description="Predict every image of a dataset split and score the boxes with COCO metrics "
        "(faster-coco-eval): mAP50-95, mAP50, mAP75, small/medium/large, per-class AP, and precision/"
        "recall/F1 at the best-F1 confidence. Writes PR, F1 and confusion-matrix plots to the run folder.",
    )
    parser.add_argument("--weights", required=True, help="a .safetensors file (or an Ultralytics .pt checkpoint)")
    parser.add_argument("--data", required=True, help="data.yaml, COCO instances json, or VOC folder")
    parser.add_argument("--split", default="val", help="split to score (default val)")
    parser.add_argument("--imgsz", type=int, default=640, help="long side in pixels (default 640)")
    parser.add_argument("--batch", type=int, default=16, help="images per batch (default 16)")
    parser.add_argument("--conf", type=float, default=0.001, help="confidence threshold (default 0.001)")
    parser.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    parser.add_argument("--max-det", type=int, default=300, help="boxes kept per image (default 300)")
    parser.add_argument("--coco-max-dets", type=int, default=100,
                        help="COCO's per-image cap when scoring (default 100, the COCO protocol)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    parser.add_argument("--workers", type=int, default=2, help="data loader processes (default 2)")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.add_argument("--save-json", action="store_true", help="write predictions.json (COCO results format)")
    parser.add_argument("--no-plots", action="store_true", help="do not write the PR/F1/confusion plots")
    parser.add_argument("--project", default="runs/val", help="parent folder of the run (default runs/val)")
    parser.add_argument("--name", default="exp", help="run folder name; a number is added if it exists")
    parser.add_argument("--exist-ok", action="store_true", help="reuse the run folder if it exists")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    save_dir = next_run_dir(args.project, args.name, args.exist_ok)
    result = val(args.weights, args.data, split=args.split, imgsz=args.imgsz, batch=args.batch, conf=args.conf,
                 iou=args.iou, max_det=args.max_det, coco_max_dets=args.coco_max_dets, device=args.device,
                 workers=args.workers, save_dir=save_dir, plots=not args.no_plots, save_json=args.save_json,
                 progress=not args.json)
    summary = result.summary()
    if args.json:
        print(json.dumps({**summary, "save_dir": str(save_dir)}))
        return 0
    print(result.per_class_table())

    def fmt(value):
        return "n/a" if value is None else f"{value:.4f}"

    print(
        f"mAP50-95 {fmt(summary['mAP50-95'])}  mAP50 {fmt(summary['mAP50'])}  mAP75 {fmt(summary['mAP75'])}  "
        f"small {fmt(summary['mAP_small'])}  medium {fmt(summary['mAP_medium'])}  large {fmt(summary['mAP_large'])}"
    )
    print(
        f"P {summary['precision']:.3f}  R {summary['recall']:.3f}  F1 {summary['f1']:.3f} "
        f"at conf {fmt(summary['best_f1_conf'])}"
    )
    print(f"results in {save_dir}")
    return 0
