"""`detforge predict`: detect objects in images, folders, globs, videos or path lists and save what was found."""

from __future__ import annotations

import argparse

from detforge.runs import next_run_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="detect objects in images, folders, globs, videos or .txt path lists",
        description="Run a detector over SRC and write annotated images/videos to the run folder, plus YOLO "
        "txt labels (--save-txt) and one JSON file per image (--save-json). Unreadable images are "
        "skipped with a warning.",
    )
    parser.add_argument("--weights", required=True,
                        help="a .safetensors file, an Ultralytics .pt checkpoint, or an exported .onnx / OpenVINO .xml")
    parser.add_argument("--source", required=True, nargs="+",
                        help="image, folder, glob, video file, or .txt file with one path per line; several "
                        "may follow (--source a.jpg b.jpg, or a glob the shell expands)")
    parser.add_argument("--imgsz", type=int,
                        help="long side in pixels (default: the size the weights were trained at, else 640)")
    parser.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default 0.25)")
    parser.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    parser.add_argument("--max-det", type=int, default=300, help="boxes kept per image (default 300)")
    parser.add_argument("--classes", type=int, nargs="+", help="keep only these class indices, e.g. --classes 0 2")
    parser.add_argument("--agnostic-nms", action="store_true", help="suppress overlapping boxes across classes")
    parser.add_argument("--batch", type=int, default=1, help="frames per forward pass (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    parser.add_argument("--half", action="store_true",
                        help="half-precision inference: float16 on CUDA, bfloat16 on a CPU with native bf16 "
                        "(AVX512-BF16/AMX; 1.5-2x faster there, mAP about 0.4 points lower), float32 elsewhere")
    parser.add_argument("--slice", action="store_true", help="sliced inference: predict overlapping tiles and merge")
    parser.add_argument("--slice-size", type=int, default=640, help="tile side in original pixels (default 640)")
    parser.add_argument("--slice-overlap", type=float, default=0.2, help="tile overlap fraction (default 0.2)")
    parser.add_argument("--no-full-frame", action="store_true",
                        help="with --slice: do not merge in the whole-image pass")
    parser.add_argument("--save-txt", action="store_true", help="write YOLO labels (class xc yc w h) to labels/")
    parser.add_argument("--save-conf", action="store_true", help="with --save-txt: append the confidence")
    parser.add_argument("--save-json", action="store_true", help="write one JSON file per image to json/")
    parser.add_argument("--no-save", action="store_true", help="do not write annotated images/videos")
    parser.add_argument("--line-width", type=int, help="box line width in pixels (default: from the image size)")
    parser.add_argument("--project", default="runs/predict", help="parent folder of the run (default runs/predict)")
    parser.add_argument("--name", default="exp", help="run folder name; a number is added if it exists")
    parser.add_argument("--exist-ok", action="store_true", help="reuse the run folder if it exists")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from detforge.infer.outputs import ResultWriter
    from detforge.infer.predictor import Predictor
    from detforge.infer.sliced import SliceSettings
    from detforge.infer.sources import open_source
    from detforge.progress import progress_bar

    slicing = SliceSettings(args.slice_size, args.slice_overlap, not args.no_full_frame) if args.slice else None
    predictor = Predictor(args.weights, imgsz=args.imgsz, conf=args.conf, iou=args.iou, max_det=args.max_det,
                          classes=args.classes, agnostic=args.agnostic_nms, batch=args.batch, device=args.device,
                          half=args.half, slice=slicing)
    source = open_source(args.source[0] if len(args.source) == 1 else args.source)
    save_dir = next_run_dir(args.project, args.name, args.exist_ok)
    writer = ResultWriter(save_dir, save_images=not args.no_save, save_txt=args.save_txt, save_conf=args.save_conf,
                          save_json=args.save_json, line_width=args.line_width)
    with progress_bar(total=len(source), unit="img", desc="predicting") as bar:
        for _ in writer.write_all(predictor.stream(source)):
            bar.update(1)
    summary = writer.close()
    print(f"{summary['frames']} frames, {summary['boxes']} boxes, {summary['frames_per_second']:.1f} frames/s; "
          f"results in {save_dir}")
    return 0
