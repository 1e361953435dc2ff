"""`detforge predict`: detect objects in images, folders, globs, videos or path lists and save what was found."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from detforge.runs import next_run_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="detect objects in images, folders, globs, videos or .txt path lists",
        description="Run a detector over SRC and write annotated images/videos to the run folder, plus YOLO "
        "txt labels (--save-txt) and one JSON file per image (--save-json). Unreadable images are "
        "skipped with a warning.",
    )
    parser.add_argument("--weights", required=True, help="a .safetensors file (or an Ultralytics .pt checkpoint)")
    parser.add_argument("--source", required=True,
                        help="image, folder, glob (quote it), video file, or .txt file with one path per line")
    parser.add_argument("--imgsz", type=int, default=640, help="long side in pixels (default 640)")
    parser.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default 0.25)")
    parser.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    parser.add_argument("--max-det", type=int, default=300, help="boxes kept per image (default 300)")
    parser.add_argument("--classes", type=int, nargs="+", help="keep only these class indices, e.g. --classes 0 2")
    parser.add_argument("--agnostic-nms", action="store_true", help="suppress overlapping boxes across classes")
    parser.add_argument("--batch", type=int, default=1, help="frames per forward pass (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    parser.add_argument("--half", action="store_true", help="float16 inference (CUDA only)")
    parser.add_argument("--slice", action="store_true", help="sliced inference: predict overlapping tiles and merge")
    parser.add_argument("--slice-size", type=int, default=640, help="tile side in original pixels (default 640)")
    parser.add_argument("--slice-overlap", type=float, default=0.2, help="tile overlap fraction (default 0.2)")
    parser.add_argument("--no-full-frame", action="store_true", help="with --slice: do not merge in the whole-image pass")
    parser.add_argument("--save-txt", action="store_true", help="write YOLO labels (class xc yc w h) to labels/")
    parser.add_argument("--save-conf", action="store_true", help="with --save-txt: append the confidence")
    parser.add_argument("--save-json", action="store_true", help="write one JSON file per image to json/")
    parser.add_argument("--no-save", action="store_true", help="do not write annotated images/videos")
    parser.add_argument("--line-width", type=int, help="box line width in pixels (default: from the image size)")
    parser.add_argument("--project", default="runs/predict", help="parent folder of the run (default runs/predict)")
    parser.add_argument("--name", default="exp", help="run folder name; a number is added if it exists")
    parser.add_argument("--exist-ok", action="store_true", help="reuse the run folder if it exists")
    parser.set_defaults(run=run)


class Outputs:
    """Writes each result where it belongs: annotated image or a frame of an annotated video,
    `labels/<stem>.txt`, `json/<stem>.json` (video frames get `_<frame>` appended to the stem)."""

    def __init__(self, save_dir: Path, args: argparse.Namespace):
        self.save_dir = save_dir
        self.args = args
        self.stems: dict[tuple[str, int | None], str] = {}
        self.used: set[str] = set()
        self.writers: dict[str, object] = {}

    def stem(self, path: str, frame: int | None) -> str:
        """A unique file stem per source file (two `a.jpg` in different folders become `a` and `a_2`)."""
        key = (path, None)
        if key not in self.stems:
            base = Path(path).stem
            stem, n = base, 2
            while stem in self.used:
                stem, n = f"{base}_{n}", n + 1
            self.used.add(stem)
            self.stems[key] = stem
        stem = self.stems[key]
        return stem if frame is None else f"{stem}_{frame}"

    def write(self, result) -> None:
        args = self.args
        stem = self.stem(result.path, result.frame)
        if not args.no_save:
            image = result.plot(line_width=args.line_width)
            if result.frame is None:
                from detforge.infer.annotate import save_rgb

                save_rgb(image, self.save_dir / f"{stem}{Path(result.path).suffix.lower() or '.jpg'}")
            else:
                self._video_frame(result.path, image)
        if args.save_txt:
            result.save_txt(self.save_dir / "labels" / f"{stem}.txt", save_conf=args.save_conf)
        if args.save_json:
            path = self.save_dir / "json" / f"{stem}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(result.to_json(indent=2))

    def _video_frame(self, source: str, image) -> None:
        import cv2

        writer = self.writers.get(source)
        if writer is None:
            for other in self.writers.values():  # videos are read one after another
                other.release()
            self.writers.clear()
            path = self.save_dir / f"{self.stem(source, None)}.mp4"
            height, width = image.shape[:2]
            capture = cv2.VideoCapture(source)
            fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
            capture.release()
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            self.writers[source] = writer
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        for writer in self.writers.values():
            writer.release()
        self.writers.clear()


def run(args: argparse.Namespace) -> int:
    from detforge.infer.predictor import Predictor
    from detforge.infer.sliced import SliceSettings
    from detforge.infer.sources import open_source
    from detforge.progress import progress_bar

    slicing = SliceSettings(args.slice_size, args.slice_overlap, not args.no_full_frame) if args.slice else None
    predictor = Predictor(args.weights, imgsz=args.imgsz, conf=args.conf, iou=args.iou, max_det=args.max_det,
                          classes=args.classes, agnostic=args.agnostic_nms, batch=args.batch, device=args.device,
                          half=args.half, slice=slicing)
    source = open_source(args.source)
    save_dir = next_run_dir(args.project, args.name, args.exist_ok)
    save_dir.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(save_dir, args)
    frames, boxes = 0, 0
    start = time.perf_counter()
    try:
        with progress_bar(total=len(source), unit="img", desc="predicting") as bar:
            for result in predictor.stream(source):
                outputs.write(result)
                frames += 1
                boxes += len(result)
                bar.update(1)
    finally:
        outputs.close()
    elapsed = time.perf_counter() - start
    rate = frames / elapsed if elapsed > 0 else 0.0
    summary = {"frames": frames, "boxes": boxes, "seconds": round(elapsed, 2), "frames_per_second": round(rate, 2),
               "save_dir": str(save_dir)}
    (save_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{frames} frames, {boxes} boxes, {rate:.1f} frames/s; results in {save_dir}")
    return 0

