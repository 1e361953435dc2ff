"""Accuracy race: yolov8n from scratch, detforge vs Ultralytics, identical recipe, several seeds.

Each (dataset, seed, framework) trains in its own subprocess on a private copy of the dataset (BCCD
from ../shared, or `shapes`, generated here by detforge's synthesizer with a held-out test split)
with the same settings (320 px, batch 16, 40 epochs, default augmentation and optimizer rule,
2 loader workers, the same torch thread count, CPU, AMP off) and reports its wall time, training
images/s and peak RSS. Each framework's best weights are then scored twice on the held-out split:

- by detforge's evaluator on both models (the Ultralytics checkpoint imported with the
  restricted unpickler), so one protocol scores both;
- by the pycocotools protocol (faster-coco-eval's COCOeval) on each framework's OWN saved
  predictions (`detforge val --save-json`, Ultralytics `val(save_json=True)`), against the
  dataset's COCO json, so neither side's evaluator decides alone.

Threads: Ultralytics sets torch to cpu_count - 1 threads when it selects the CPU (1 on 2 cores) and
OMP_NUM_THREADS=1 in the environment of the process that imports it; the children start from the
environment this script was started with (bench/children.py), and `--threads N` (default: every
core) gives both sides N threads (`--threads 0`: each its own default).

`--bf16` adds a third arm: detforge with bfloat16 autocast (its default on a CPU with native
bfloat16), scored against the same reference runs in a row of its own: the evidence behind bf16 as
the CPU training default. The float32 arm trains with `amp=False` on both sides.

Accuracy is reported as mean ± std over the seeds (one run on a small set swings by points).
With `--runs DIR` each finished run is kept there and reused by the next invocation of the same
recipe, so the ~2.5 h race can be completed over several sittings.

    python bench/accuracy_race.py [--datasets bccd shapes coco128] [--seeds 0 1 2] [--epochs 40] [--bf16] [--runs DIR]
                                  [--json PATH]
    python bench/accuracy_race.py --quick      # 3 epochs, one seed: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from children import run_json_child
from data_throughput import private_copy
from report import add_row, cpu_clock, machine_info, new_section, others_share, publish

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"  # override with --datasets-root
# dataset -> (held-out split, its COCO json under annotations/)
DATASETS = {"bccd": ("test", "instances_test.json"), "shapes": ("test", "instances_test.json"),
            "coco128": ("val", "instances_train2017.json")}
# Datasets the race writes itself with detforge's synthesizer, so a second race set needs no download and
# still learns within 40 epochs (coco128 from scratch reaches ~10 mAP50-95 there): 8 shape classes, 200
# training images (BCCD has 205) at the race's size, and held-out val (best-model selection) and test splits.
GENERATED = {"shapes": {"images": 300, "classes": 8, "imgsz": 320, "seed": 0, "val_fraction": 1 / 6,
                        "test_fraction": 1 / 6}}
SHAPES_NOTE = """The shapes rows: a set the race writes itself (`detforge data synth` with 8 classes, 300 images at
320 px, seed 0: 200 train, 50 val for choosing the best epoch, 50 held-out test that the table scores)."""
WALL_NOTE = """Where detforge's wall goes (bf16 default, BCCD seed 0, 40 epochs, timed by wrapping the trainer's
calls on 2026-12-04): training steps 256 of 329 s (78%); the validation after every epoch 61 s (41 passes of
~1.5 s: the model's convolutions ~0.8 s, COCO bookkeeping ~0.36 s, NMS ~0.07 s); checkpoints 7 s; setup and
final scoring the rest. Within a step the convolutions, forward and backward, are 93% (training step profile,
bf16 rows), so the 0.5x wall target (~40 s less per BCCD run) is out of reach of the other phases (loss,
assigner, optimizer and EMA are ~7% of a step together). One measured lever not taken: validating in bf16
during bf16 training (as Ultralytics validates in float16 under CUDA AMP) takes 0.92 instead of 1.24 s per
pass on the trained BCCD model, ~13 s per run (0.57x would become ~0.55x), and it changes which epoch is kept
as best."""
FRAMEWORKS = ("detforge", "ultralytics")
BF16_ARM = "detforge-bf16"


def child_train(args: argparse.Namespace) -> None:
    """Train one model; print one JSON line: best weights, wall time, images/s, peak RSS."""
    settings = {"data": str(args.data / "data.yaml"), "epochs": args.epochs, "imgsz": args.imgsz,
                "batch": args.batch, "seed": args.seed, "workers": args.workers, "device": "cpu",
                "project": str(args.out), "name": f"{args.child}-seed{args.seed}", "exist_ok": True}
    start = time.perf_counter()
    import torch

    if args.child.startswith("detforge"):
        import detforge

        bf16 = args.child == BF16_ARM
        best = detforge.train(model="yolov8n", amp=bf16, amp_dtype="bf16", **settings).best
        threads = torch.get_num_threads()  # OMP_NUM_THREADS, or the count its tuner kept last
    else:
        from ultralytics import YOLO

        model = YOLO("yolov8n.yaml")
        if args.threads:  # after its select_device has set cpu_count - 1 threads
            model.add_callback("on_train_start", lambda trainer: torch.set_num_threads(args.threads))
        seen = set()  # during training: its final validation selects the device (and threads) again
        model.add_callback("on_train_epoch_end", lambda trainer: seen.add(torch.get_num_threads()))
        model.train(amp=False, plots=False, verbose=False, **settings)
        best, threads = model.trainer.best, max(seen)
    wall = time.perf_counter() - start
    train_folder = args.data / yaml.safe_load((args.data / "data.yaml").read_text())["train"]
    train_images = sum(1 for p in train_folder.iterdir() if p.is_file())
    print(json.dumps({"best": str(best), "wall_s": wall, "images_per_s": train_images * args.epochs / wall,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "threads": threads}), flush=True)


def run_child(framework: str, args: argparse.Namespace, data: Path, seed: int, out: Path) -> dict:
    command = [__file__, "--child", framework, "--data", str(data), "--seed", str(seed),
               "--out", str(out), "--epochs", str(args.epochs), "--imgsz", str(args.imgsz),
               "--batch", str(args.batch), "--workers", str(args.workers), "--threads", str(args.threads)]
    return run_json_child(command, f"{framework} seed {seed}", args.threads)


def own_predictions(framework: str, best: str, data: Path, split: str, imgsz: int, out: Path) -> Path:
    """Each framework's own `val` with COCO-json output, at the usual mAP settings."""
    if framework.startswith("detforge"):
        import detforge

        detforge.val(best, str(data / "data.yaml"), split=split, imgsz=imgsz, save_dir=out, plots=False,
                     save_json=True, progress=False)
        return out / "predictions.json"
    from ultralytics import YOLO

    validator = YOLO(best).val(data=str(data / "data.yaml"), split=split, imgsz=imgsz, batch=16, conf=0.001,
                               iou=0.7, save_json=True, plots=False, project=str(out), name="val", verbose=False)
    return Path(validator.save_dir) / "predictions.json"


def coco_map(predictions: Path, ground_truth: Path) -> tuple[float, float]:
    """(mAP50-95, mAP50) of a COCO results file. Image ids are matched by file stem and category ids
    by class order (both frameworks write stems and class + 1 for a YOLO-layout dataset)."""
    from faster_coco_eval import COCO, COCOeval_faster

    truth = json.loads(ground_truth.read_text())
    ids = {}
    for image in truth["images"]:
        stem = Path(image["file_name"]).stem
        ids[stem] = image["id"]
        if stem.isnumeric():  # both write a numeric stem as an int
            ids[int(stem)] = image["id"]
    categories = sorted(c["id"] for c in truth["categories"])
    results = [{**r, "image_id": ids[r["image_id"]], "category_id": categories[int(r["category_id"]) - 1]}
               for r in json.loads(predictions.read_text())]
    gt = COCO(str(ground_truth))
    evaluator = COCOeval_faster(gt, gt.loadRes(results) if results else COCO(), "bbox", print_function=lambda *a: None)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return float(evaluator.stats[0]), float(evaluator.stats[1])


def our_evaluator(best: str, data: Path, split: str, imgsz: int) -> tuple[float, float]:
    import detforge

    result = detforge.val(best, str(data / "data.yaml"), split=split, imgsz=imgsz, plots=False, progress=False)
    return result.map50_95, result.map50


def recipe(args: argparse.Namespace, name: str) -> dict:
    """What a kept run must match to be reused (a generated set's settings included)."""
    return {"epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch, "workers": args.workers,
            "threads": args.threads, **({"generated": GENERATED[name]} if name in GENERATED else {})}


def race_data(args: argparse.Namespace, name: str, tmp: Path) -> Path:
    """A private copy of a shared dataset, or a generated one with a COCO json of its held-out split."""
    if name not in GENERATED:
        return private_copy(args.datasets_root / name, tmp / "data")
    from detforge.data import load_dataset_spec, load_split
    from detforge.data.formats import coco
    from detforge.data.synthetic import synthesize

    spec = load_dataset_spec(synthesize(tmp / "generated" / name, **GENERATED[name]))
    split, annotations = DATASETS[name]
    written = coco.write(tmp / "coco", spec.names, {split: list(load_split(spec, split, use_cache=False).store)})
    data = private_copy(tmp / "generated" / name, tmp / "data")
    (data / "annotations").mkdir()
    shutil.copy(written, data / "annotations" / annotations)
    return data


def saved_run(path: Path, wanted: dict) -> dict | None:
    """A finished run of the same recipe from an earlier invocation, so a race of several hours can
    span sessions: each (dataset, seed, framework) is kept as it finishes and not trained again."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) and saved.get("recipe") == wanted else None


def keep_run(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record, indent=1))
    os.replace(temporary, path)  # a run killed while writing leaves the old file or none, never half of one


def train_and_score(framework: str, args: argparse.Namespace, name: str, data: Path, seed: int, tmp: Path) -> dict:
    """Train one model and score it both ways; the figures in the order of the section's metrics."""
    split, annotations = DATASETS[name]
    load_start, clock = os.getloadavg()[0], cpu_clock()
    run = run_child(framework, args, data, seed, tmp / "runs")
    ours = our_evaluator(run["best"], data, split, args.imgsz)
    predictions = own_predictions(framework, run["best"], data, split, args.imgsz, tmp / "val" / f"{framework}-{seed}")
    own = coco_map(predictions, data / "annotations" / annotations)
    machine = machine_info()
    return {"recipe": recipe(args, name), "commit": machine["commit"], "finished": machine["date"],
            "load_start": load_start, "others_share": others_share(clock, os.cpu_count() or 1), "framework": framework,
            "threads": run["threads"],
            "figures": [*ours, own[0], run["wall_s"], run["images_per_s"], run["peak_rss_mb"]]}


def race(args: argparse.Namespace, name: str, tmp: Path, section: dict) -> list[dict]:
    """Every seed of one dataset, both frameworks (alternating which goes first, the bf16 arm last);
    returns the runs."""
    data = race_data(args, name, tmp / name)
    samples: dict[str, dict[str, list[float]]] = {}  # arm -> metric -> one value per seed
    runs = []
    for seed in args.seeds:
        for framework in [*(FRAMEWORKS if seed % 2 == 0 else FRAMEWORKS[::-1]), *([BF16_ARM] if args.bf16 else [])]:
            kept = args.runs / f"{name}-seed{seed}-{framework}.json" if args.runs else None
            run = saved_run(kept, recipe(args, name)) if kept else None
            reused = run is not None
            if not reused:
                run = train_and_score(framework, args, name, data, seed, tmp / name)
                if kept:
                    keep_run(kept, run)
            for metric, value in zip(section["metrics"], run["figures"], strict=True):
                figure = 100 * value if "mAP" in metric else value
                samples.setdefault(framework, {}).setdefault(metric, []).append(figure)
            print(f"{name} seed {seed} {framework}: mAP50-95 {run['figures'][0]:.3f} (ours) / {run['figures'][2]:.3f} "
                  f"(own predictions, COCOeval), {run['figures'][3]:.0f} s, commit {run['commit']}"
                  + (f" (kept in {kept})" if reused else ""), file=sys.stderr, flush=True)
            runs.append(run)
    for arm, precision in (("detforge", "float32"), (BF16_ARM, "bf16 autocast (default)")):
        if arm in samples:
            add_row(section, {"dataset": f"{name} ({DATASETS[name][0]})", "detforge precision": precision},
                    {metric: {"detforge": samples[arm][metric], "reference": samples["ultralytics"][metric]}
                     for metric in section["metrics"]})
    return runs


def record_conditions(section: dict, runs: list[dict]) -> None:
    """Runs kept from earlier invocations bring their own load and commit: the page shows the worst
    load, the most other processes took, every commit the runs came from and when each arm's runs
    finished (arms trained hours apart compare the machine's speed at two times as well: a shared
    host's speed drifts by ~10% over a day here)."""
    section["load_start"] = max(run["load_start"] for run in runs)
    shares = [run["others_share"] for run in runs if run.get("others_share") is not None]
    section["others_share"] = max(shares) if shares else None
    by_side = {side: [run for run in runs if run.get("framework") == framework]
               for side, framework in (("detforge", "detforge"), ("detforge bf16", BF16_ARM),
                                       ("reference", "ultralytics"))}
    threads = {side: "/".join(sorted({str(run["threads"]) for run in arm})) for side, arm in by_side.items()}
    finished = {side: sorted(run.get("finished", "not recorded") for run in arm) for side, arm in by_side.items()}
    spans = ", ".join(f"{side} {times[0]}" + (f" to {times[-1]}" if times[-1] != times[0] else "")
                      for side, times in finished.items() if times)
    section["notes"] = (f"Runs from commit {', '.join(sorted({run['commit'] for run in runs}))}; torch threads in "
                        f"training: {', '.join(f'{side} {n}' for side, n in threads.items() if n)}; "
                        f"finished: {spans}.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=["bccd", "shapes"],
                        help="default: bccd shapes (shapes is generated; coco128 learns little in 40 epochs)")
    parser.add_argument("--datasets-root", type=Path, default=SHARED, help="folder holding the datasets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads for both sides (default: every core; 0: each framework's default)")
    parser.add_argument("--bf16", action="store_true",
                        help="also train detforge with bfloat16 autocast (its own row, same reference runs)")
    parser.add_argument("--quick", action="store_true", help="3 epochs, seed 0: a smoke run")
    parser.add_argument("--json", type=Path, help="write the figures here for bench/report.py")
    parser.add_argument("--runs", type=Path, help="keep each finished run here and reuse it when run again "
                        "with the same recipe (resume a race across sessions)")
    parser.add_argument("--child", choices=[*FRAMEWORKS, BF16_ARM], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_train(args)
        return 0
    if args.quick:
        args.epochs, args.seeds = 3, [0]
    missing = [name for name in args.datasets
               if name not in GENERATED and not (args.datasets_root / name / "data.yaml").exists()]
    if missing:
        print(f"datasets not found under {args.datasets_root}: {', '.join(missing)}", file=sys.stderr)
        return 2
    section = new_section(
        "accuracy", "Accuracy race (yolov8n from scratch)", "python bench/accuracy_race.py",
        f"{args.epochs} epochs at {args.imgsz} px, batch {args.batch}, {args.workers} workers, seeds "
        f"{' '.join(map(str, args.seeds))}, identical recipe on both sides; best weights scored on the held-out "
        "split by detforge's evaluator (both models) and by COCOeval on each framework's own saved predictions; "
        "mAP in points, mean ± std over seeds; the reference trains in float32 in every row.",
        ["dataset", "detforge precision"], {"mAP50-95 (our evaluator)": True, "mAP50 (our evaluator)": True,
                      "mAP50-95 (COCOeval, own predictions)": True, "wall s": False, "train img/s": True,
                      "peak RSS MB": False}, summary="mean_std")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run for name in args.datasets for run in race(args, name, Path(tmp), section)]
    record_conditions(section, runs)
    shapes = [SHAPES_NOTE] if "shapes" in args.datasets else []
    section["notes"] = "\n\n".join([section["notes"], *shapes, WALL_NOTE])
    publish(section, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
