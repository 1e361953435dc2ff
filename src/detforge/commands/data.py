"""`detforge data check | convert | synth`: look at a dataset, change its format, make one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from detforge.data.formats import FORMAT_NAMES, format_module
from detforge.data.problems import UNKNOWN_CLASS, ProblemReport
from detforge.data.scan import load_split
from detforge.data.spec import load_dataset_spec
from detforge.data.stats import split_stats
from detforge.errors import DataError

WIDE_TABLE_CLASSES = 8
DATA_HELP = "a YOLO data.yaml (or its folder), a COCO instances_*.json, or a Pascal VOC folder"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="check, convert or synthesize datasets")
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    check = commands.add_parser("check", help="count images/boxes per split and report every problem")
    check.add_argument("data", type=Path, help=DATA_HELP)
    check.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    check.add_argument("--problems", type=Path, default=None,
                       help="file for the full problem list (default: beside the label cache)")
    check.add_argument("--show", type=int, default=20, help="problems shown on screen (default 20)")
    check.add_argument("--no-cache", action="store_true", help="re-read every file instead of the label cache")
    check.set_defaults(run=run_check)

    convert = commands.add_parser("convert", help="rewrite a dataset as YOLO, COCO or VOC")
    convert.add_argument("src", type=Path, help=DATA_HELP)
    convert.add_argument("dst", type=Path, help="new output folder")
    convert.add_argument("--to", required=True, choices=FORMAT_NAMES, help="output format")
    convert.set_defaults(run=run_convert)

    synth = commands.add_parser("synth", help="write a synthetic shapes dataset (YOLO layout)")
    synth.add_argument("out", type=Path, help="output folder")
    synth.add_argument("--images", type=int, default=200, help="number of images (default 200)")
    synth.add_argument("--classes", type=int, default=3, help="number of shape classes, 1-8 (default 3)")
    synth.add_argument("--imgsz", type=int, default=256, help="image side in pixels (default 256)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--val-fraction", type=float, default=0.2, help="share of images in val (default 0.2)")
    synth.add_argument("--test-fraction", type=float, default=0.0,
                       help="share of images in a held-out test split (default 0: none)")
    synth.set_defaults(run=run_synth)


def run_check(args: argparse.Namespace) -> int:
    spec = load_dataset_spec(args.data)
    everything = ProblemReport(list(spec.problems), root=spec.root)
    stats, cache_dir = {}, None
    for split in spec.splits:
        labels = load_split(spec, split, use_cache=not args.no_cache, progress=not args.json)
        stats[split] = split_stats(labels, spec.names)
        everything.extend(labels.problems)
        cache_dir = cache_dir or labels.cache_file.parent
    problems_file = None
    if len(everything):
        problems_file = everything.write(args.problems or cache_dir / "data-check-problems.txt")
    failed = [s for s, st in stats.items() if st["images"] == 0] + (
        ["unknown class ids"] if everything.count(kind=UNKNOWN_CLASS) else [])
    if args.json:
        print(json.dumps({
            "data": str(spec.path), "format": spec.format, "names": spec.names, "splits": stats,
            "summary": everything.summary(), "problems": everything.to_dicts(),
            "problems_file": str(problems_file) if problems_file else None,
        }, indent=2))
    else:
        _print_check(spec, stats, everything, problems_file, args.show)
    return 1 if failed else 0


def _print_check(spec, stats: dict, report: ProblemReport, problems_file: Path | None, show: int) -> None:
    print(f"{spec.path}  ({spec.format}, {spec.nc} classes)")
    wide = spec.nc <= WIDE_TABLE_CLASSES  # few classes: one column each; many: one row each
    columns = ["split", "images", "skipped", "no boxes", "boxes", *(spec.names if wide else [])]
    _table(columns, [[s, st["images"], st["skipped"], st["without_boxes"], st["boxes"],
                      *(st["per_class"].values() if wide else [])] for s, st in stats.items()])
    if not wide:
        print("boxes per class:")
        _table(["class", *stats], [[name, *(st["per_class"][name] for st in stats.values())]
                                   for name in spec.names])
    print("box sizes (pixels of the original images):")
    for split, st in stats.items():
        size = st["box_size"]
        if size:
            print(f"  {split}: width {size['width']['min']}/{size['width']['median']}/{size['width']['max']}, "
                  f"height {size['height']['min']}/{size['height']['median']}/{size['height']['max']} "
                  f"(min/median/max); small {size['small']}, medium {size['medium']}, large {size['large']}")
    print(f"problems: {report.summary()}")
    for line in report.head(show):
        print(f"  {line}")
    if problems_file is not None:
        more = f"{len(report) - show} more; " if len(report) > show else ""
        print(f"  ({more}full list: {problems_file})")


def _table(columns: list[str], rows: list[list]) -> None:
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
    for row in [columns, *rows]:
        print("  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(row, widths))))


def run_convert(args: argparse.Namespace) -> int:
    if args.dst.exists() and any(args.dst.iterdir()):
        raise DataError(f"{args.dst}: exists and is not empty; choose a new output folder")
    spec = load_dataset_spec(args.src)
    report = ProblemReport(list(spec.problems))
    splits = {}
    for split in spec.splits:
        labels = load_split(spec, split, progress=True)
        report.extend(labels.problems)
        splits[split] = list(labels.store)
    written = format_module(args.to).write(args.dst, spec.names, splits)
    images = sum(len(r) for r in splits.values())
    boxes = sum(len(rec.classes) for recs in splits.values() for rec in recs)
    print(f"wrote {images} images, {boxes} boxes ({', '.join(splits)}) as {args.to}: {written}")
    if len(report):
        path = report.write(args.dst / "conversion-problems.txt")
        print(f"while reading: {report.summary()}; full list: {path}")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from detforge.data.synthetic import synthesize

    if args.out.exists() and any(args.out.iterdir()):
        raise DataError(f"{args.out}: exists and is not empty; choose a new output folder")
    path = synthesize(args.out, images=args.images, classes=args.classes, imgsz=args.imgsz, seed=args.seed,
                      val_fraction=args.val_fraction, test_fraction=args.test_fraction, progress=True)
    print(f"wrote {args.images} images of {args.classes} classes: {path}")
    return 0
