"""`detforge ablate`: train a grid of head variants on one dataset and compare them (engine/ablation.py)."""

from __future__ import annotations

import argparse
import json
import math

from detforge.commands.train import apply_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ablate",
        help="train head variants with the same schedule and seeds; table + plots",
        description="Train every combination of the --vary axes (each with every seed) one after another in one "
        "run folder, then write ablation.md/.csv/.json (params, head params, GFLOPs, latency, mAP50-95, mAP50, "
        "recall, epoch of best mAP, training minutes; mean ± std over seeds) and map_vs_epoch.png / "
        "map_vs_latency.png. Calling "
        "again with the same --project/--name continues the grid: finished variants are not retrained, a stopped "
        "one resumes. Axes: head=coupled,hybrid,decoupled,decoupled-obj; match=off,on (head.match_params); "
        "aux=off,on; or any training setting / model key (lr_mult.cls=1,2).",
    )
    p.add_argument("--data", required=True, help="data.yaml (YOLO), COCO json, or VOC folder")
    p.add_argument("--base", default="yolov8n", help="the model whose trunk every variant shares (default yolov8n)")
    p.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                   help="an axis of the grid (repeatable; default head=coupled,hybrid,decoupled,decoupled-obj)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, each variant trains once per seed (default 0)")
    p.add_argument("--epochs", type=int, help="epochs per variant")
    p.add_argument("--imgsz", type=int, help="training image size")
    p.add_argument("--batch", type=int, help="images per batch")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, help="data-loading processes")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a training setting or model key for every variant (repeatable), e.g. probe_every=20")
    p.add_argument("--split", help="score each variant's best weights on this split (e.g. test) instead of "
                   "reporting the best epoch's validation figures")
    p.add_argument("--project", default="runs/ablate", help="parent folder (default runs/ablate)")
    p.add_argument("--name", default="exp", help="grid folder name; an existing one is continued")
    p.add_argument("--json", action="store_true", help='print {"rows": [...]} (one row per variant) as JSON')
    p.set_defaults(run=run)


def common_settings(args: argparse.Namespace) -> dict:
    settings = {k: getattr(args, k) for k in ("epochs", "imgsz", "batch", "device", "workers")
                if getattr(args, k) is not None}
    return apply_overrides(settings, args.overrides)


def parse_seeds(text: str) -> list[int]:
    from detforge.errors import ConfigError

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text}: expected comma-separated whole numbers, e.g. 0,1,2") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text}: expected distinct whole numbers >= 0, e.g. 0,1,2")
    return seeds


def run(args: argparse.Namespace) -> int:
    from detforge.engine.ablation import ablate, parse_vary, table_markdown

    result = ablate(args.data, args.base, parse_vary(args.vary) or None, parse_seeds(args.seeds),
                    common_settings(args), args.project, args.name, split=args.split)
    if args.json:
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in result.rows]
        print(json.dumps({"rows": rows, "run_dir": str(result.run_dir)}))
        return 0
    print(table_markdown(result.rows))
    print(f"results in {result.run_dir} (ablation.md, ablation.csv, map_vs_epoch.png, map_vs_latency.png)")
    return 0
