"""`detforge export`: write the deployed model as ONNX, an OpenVINO IR or TorchScript (optionally INT8)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export weights to ONNX, OpenVINO IR or TorchScript (NMS in the graph, fp16, INT8)",
        description="Export the deployed model (fused, training-only parts removed). ONNX maps images "
        "[B,3,H,W] (RGB 0..1) to [B,N,4+C] (xyxy pixels + class scores), or with --nms to [B,max_det,6] "
        "(x1,y1,x2,y2,score,class). Class names, strides, input size and the model config are stored in "
        "the file; `detforge predict/val --weights FILE` run it. See docs/deploy.md.",
    )
    parser.add_argument("--weights", required=True, help="a .safetensors file (or an Ultralytics .pt checkpoint)")
    parser.add_argument("--format", default="onnx", help="onnx (default), openvino or torchscript")
    parser.add_argument("--output", help="output file (default: beside the weights, e.g. W.onnx, W_openvino/W.xml)")
    parser.add_argument("--imgsz", type=int, nargs="+", metavar="SIZE",
                        help="input size: one side or HEIGHT WIDTH, multiples of the stride (default: the size the "
                        "weights were trained at, else 640)")
    parser.add_argument("--batch", type=int, default=1, help="batch size of a fixed-shape export (default 1)")
    parser.add_argument("--dynamic", action="store_true", help="free batch, height and width axes")
    parser.add_argument("--nms", action="store_true", help="NonMaxSuppression in the graph: output [B, max_det, 6]")
    parser.add_argument("--conf", type=float, default=0.25, help="with --nms: score threshold (default 0.25)")
    parser.add_argument("--iou", type=float, default=0.7, help="with --nms: IoU threshold (default 0.7)")
    parser.add_argument("--max-det", type=int, default=300, help="with --nms: detections per image (default 300)")
    parser.add_argument("--agnostic-nms", action="store_true", help="with --nms: suppress across classes")
    parser.add_argument("--half", action="store_true", help="store weights as float16 (half the file size)")
    parser.add_argument("--int8", action="store_true", help="INT8 post-training quantization (needs --data)")
    parser.add_argument("--data", help="with --int8: dataset whose train split gives the calibration images")
    parser.add_argument("--calib-images", type=int, default=64, help="with --int8: calibration images (default 64)")
    parser.add_argument("--keep-fp32", choices=("head", "none"), default="head",
                        help="with --int8: keep the heads' last convs and the decode in float32 (default head)")
    parser.add_argument("--no-check", action="store_true",
                        help="with --int8: skip scoring float vs INT8 on the dataset's val split")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the newest supported here)")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxslim simplification")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from detforge.errors import ExportError
    from detforge.export import FORMATS, export
    from detforge.io.convert import load_detector

    if args.format.lower() not in FORMATS:  # before loading anything
        raise ExportError(f"unknown export format {args.format!r}; choose one of {', '.join(FORMATS)}")
    if args.int8 and not args.data:
        raise ExportError("--int8 needs calibration images: pass --data DATA (a data.yaml, COCO json or VOC folder)")
    if args.imgsz and len(args.imgsz) > 2:
        raise ExportError(f"--imgsz takes one size or HEIGHT WIDTH, not {len(args.imgsz)} numbers")
    model = load_detector(args.weights)
    imgsz = None if not args.imgsz else args.imgsz[0] if len(args.imgsz) == 1 else tuple(args.imgsz)
    path = export(model, args.format, output=args.output, imgsz=imgsz, batch=args.batch, dynamic=args.dynamic,
                  nms=args.nms, half=args.half, int8=args.int8, data=args.data, opset=args.opset,
                  simplify=not args.no_simplify, conf=args.conf, iou=args.iou, max_det=args.max_det,
                  agnostic=args.agnostic_nms, calibration_images=args.calib_images, keep_fp32=args.keep_fp32,
                  check=not args.no_check,
                  source=str(args.weights), weights=args.weights)
    print(f"exported {path}")
    return 0
