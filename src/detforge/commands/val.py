"""`detforge val`: score weights on a dataset split with COCO metrics, write plots and a COCO results json.

The command prints what `detforge.val` (in `detforge.engine.validate`) returns.
"""

from __future__ import annotations

import argparse
import json

from detforge.data.preprocess import PREPROCESS
from detforge.engine.validate import val
from detforge.runs import next_run_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "val",
        help="score weights on a dataset split (COCO mAP, per-class AP, P/R/F1, plots)",
        description="Predict every image of a dataset split and score the boxes with COCO metrics "
        "(faster-coco-eval): mAP50-95, mAP50, mAP75, small/medium/large, per-class AP, and precision/"
        "recall/F1 at the best-F1 confidence. Writes PR, F1 and confusion-matrix plots to the run folder.",
    )
    parser.add_argument("--weights", required=True,
                        help="a .safetensors file, an Ultralytics .pt checkpoint, or an exported .onnx / OpenVINO .xml")
    parser.add_argument("--data", required=True, help="data.yaml, COCO instances json, or VOC folder")
    parser.add_argument("--split", default="val", help="split to score (default val)")
    parser.add_argument("--imgsz", type=int,
                        help="long side in pixels (default: the size the weights were trained at, else 640)")
    parser.add_argument("--batch", type=int, help="images per batch (default: as the training run validated, "
                        "else 16)")
    parser.add_argument("--conf", type=float, help="confidence threshold (default: the training run's val_conf, "
                        "else 0.001)")
    parser.add_argument("--iou", type=float, help="NMS IoU threshold (default: the training run's val_iou, else 0.7)")
    parser.add_argument("--max-det", type=int, help="boxes kept per image (default: the training run's, else 300)")
    parser.add_argument("--coco-max-dets", type=int, default=100,
                        help="COCO's per-image cap when scoring (default 100, the COCO protocol)")
    parser.add_argument("--preprocess", choices=sorted(PREPROCESS), default="detforge",
                        help="how images become the network's input: detforge (default) or reference "
                        "(Ultralytics val's input exactly, to compare a converted checkpoint's mAP with its own)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    parser.add_argument("--half", action="store_true",
                        help="score in half precision, as `predict --half` runs: float16 on CUDA, bfloat16 on a CPU "
                        "with native bf16, float32 elsewhere")
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
                 progress=not args.json, preprocess=args.preprocess, half=args.half)
    summary = result.summary()
    from detforge.export.report import quantization_note

    note = quantization_note(args.weights, summary["mAP50-95"])  # an INT8 file: its mAP next to float32's
    if args.json:
        print(json.dumps({**summary, "save_dir": str(save_dir), **({"int8_note": note} if note else {})}))
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
    if note:
        print(note)
    print(f"results in {save_dir}")
    return 0
