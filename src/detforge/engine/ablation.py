"""Head-design ablations: train a grid of variants of one base model, one after another, in one folder.

    ablate(data="data.yaml", base="yolov8n", vary={"head": ["coupled", "decoupled"]}, seeds=[0, 1], epochs=30)

Every variant trains with the same data, schedule and seed(s), each in its own sub-folder
(`head-coupled_seed0/`, a normal training run). The grid is resumable: a variant with `summary.json`
is finished and is not retrained, one with a checkpoint resumes where it stopped, one without starts
afresh. The table (ablation.md / .csv / .json) has per variant: params, head params, GFLOPs (all and
head), CPU latency, mAP50-95, mAP50, recall, the epoch of best mAP and the training wall time (mean ± std
over seeds), and the gradient-conflict probe's mean cosine per layer group when `probe_every` was set; the
plots are mAP vs epoch per variant and mAP vs latency. The metrics are the best epoch's on the validation
split, or with `split="test"` those of the best weights scored afterwards on that held-out split (the
validation split chose the epoch, so its figures flatter every variant a little).

Axes (`vary`): `head` (coupled, hybrid, decoupled, decoupled-obj: the head replaced on the base's
trunk; decoupled-obj also trains with YOLOX's objectness loss), `match` (off/on: head.match_params),
`aux` (off/on: an auxiliary head), or any training setting / model key (`lr_mult.cls=1,2`,
`head.reg_max=8,16`) whose values are read as YAML.
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
import logging
import math
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from detforge.config import parse_override, set_by_path
from detforge.engine.results import ResultsLog, json_safe
from detforge.engine.train_config import make_train_config
from detforge.engine.trainer import Trainer
from detforge.engine.validate import val
from detforge.errors import ConfigError, RunFinishedError
from detforge.eval.plots import new_figure, save_figure
from detforge.io.convert import load_detector
from detforge.io.weights import write_atomic
from detforge.models.info import model_info
from detforge.runs import next_run_dir

log = logging.getLogger(__name__)

# head variant → the head part put on the base's trunk (+ training settings it needs)
HEADS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "coupled": ({"type": "coupled", "convs": 2}, {}),
    "hybrid": ({"type": "hybrid", "shared_convs": 1, "box_convs": 1, "cls_convs": 1}, {}),
    "decoupled": ({"type": "decoupled", "box_convs": 2, "cls_convs": 2}, {}),
    "decoupled-obj": ({"type": "decoupled", "box_convs": 2, "cls_convs": 2, "objectness": True},
                      {"loss": {"type": "yolox_obj"}}),
}
SWITCH = {"off": False, "on": True, "false": False, "true": True, "0": False, "1": True}
MODEL_SECTIONS = ("backbone.", "neck.", "head.", "backbone", "neck", "head", "names", "scale")
METRICS = ("map50_95", "map50", "recall", "best_epoch", "train_min")
BEST_EPOCH = "val, best epoch"  # what the metrics are when no split is scored afterwards


@dataclass
class Variant:
    """One cell of the grid: its axis values, the seed, and what it changes."""

    values: dict[str, str]
    seed: int
    model_overrides: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.values.items()) or "base"

    @property
    def folder(self) -> str:
        return "_".join([*(f"{k}-{v}" for k, v in self.values.items()), f"seed{self.seed}"]).replace("/", "-")


def parse_vary(items: list[str]) -> dict[str, list[str]]:
    """`["head=coupled,hybrid", "aux=off,on"]` → {"head": ["coupled", "hybrid"], "aux": ["off", "on"]}."""
    axes: dict[str, list[str]] = {}
    for text in items:
        key, sep, values = text.partition("=")
        key = key.strip()
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not choices:
            raise ConfigError(f"--vary {text}: expected KEY=V1,V2,... e.g. head=coupled,decoupled")
        if key in axes:
            raise ConfigError(f"--vary {key} is given twice; list all its values once")
        axes[key] = choices
    return axes


def variant_changes(key: str, value: str) -> tuple[list[str], dict[str, Any]]:
    """(model overrides KEY=VALUE, training settings) for one axis value."""
    if key == "head":
        if value not in HEADS:
            raise ConfigError(f"--vary head={value}: unknown head variant; use {', '.join(HEADS)}")
        head, settings = HEADS[value]
        return [f"head={json.dumps(head)}"], copy.deepcopy(settings)
    if key in ("aux", "match"):
        if value.lower() not in SWITCH:
            raise ConfigError(f"--vary {key}={value}: use off or on")
        on = SWITCH[value.lower()]
        return ([f"head.match_params={json.dumps(on)}"], {}) if key == "match" else ([], {"aux": on})
    if key.startswith(MODEL_SECTIONS):
        return [f"{key}={value}"], {}
    settings: dict[str, Any] = {}
    _, parsed = parse_override(f"{key}={value}")
    if "." in key:
        settings.setdefault(key.split(".")[0], {})
    set_by_path(settings, key, parsed)
    return [], settings


def build_grid(vary: dict[str, list[str]], seeds: list[int]) -> list[Variant]:
    """Every combination of the axes' values (first axis slowest), each with every seed. Model overrides of
    `head` come first so `match` (head.match_params) applies to the replaced head."""
    order = sorted(vary, key=lambda k: k != "head")
    grid = []
    for combo in itertools.product(*(vary[k] for k in order)):
        values = dict(zip(order, combo))
        values = {k: values[k] for k in vary}  # labels in the user's order
        for seed in seeds:
            variant = Variant(values, seed)
            for key in order:
                overrides, settings = variant_changes(key, values[key])
                variant.model_overrides += overrides
                _merge(variant.settings, settings)
            grid.append(variant)
    return grid


def _merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@dataclass
class Ablation:
    """The grid's folder and what was measured there."""

    run_dir: Path
    runs: list[dict]   # one per variant and seed
    rows: list[dict]   # one per variant: seed means (± std)


def ablate(data: str, base: str = "yolov8n", vary: dict[str, list[str]] | None = None, seeds: list[int] | None = None,
           settings: dict[str, Any] | None = None, project: str = "runs/ablate", name: str = "exp",
           latency_runs: int = 5, split: str | None = None) -> Ablation:
    """Train (or resume, or skip when done) every variant, then write the table and plots; see the module doc.

    settings: training settings applied to every variant (epochs, imgsz, batch, device, `overrides`...).
    The folder is `project/name` and is reused: calling again with the same arguments continues the grid.
    split: score each variant's best weights on this split of `data` (e.g. "test"); None = the validation
    figures of the best epoch.
    """
    vary = vary or {"head": ["coupled", "hybrid", "decoupled", "decoupled-obj"]}
    seeds = seeds if seeds else [0]
    grid = build_grid(vary, seeds)
    run_dir = next_run_dir(project, name, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    common = dict(settings or {})
    plan = {"base": base, "data": data, "vary": vary, "seeds": seeds, "settings": common, "split": split}
    write_atomic(run_dir / "ablation_plan.json", json.dumps(plan, indent=2, default=str).encode())
    runs = []
    for i, variant in enumerate(grid):
        log.info("ablation %d/%d: %s seed %d", i + 1, len(grid), variant.label, variant.seed)
        runs.append(run_variant(run_dir / variant.folder, variant, base, data, common, latency_runs, split))
    rows = aggregate(runs)
    write_tables(run_dir, runs, rows)
    plot_ablation(runs, rows, run_dir)
    return Ablation(run_dir, runs, rows)


def variant_settings(variant: Variant, base: str, data: str, common: dict[str, Any]) -> dict[str, Any]:
    settings = copy.deepcopy(common)
    _merge(settings, copy.deepcopy(variant.settings))
    settings.update(model=base, data=data, seed=variant.seed)
    # a replaced head first, so the user's head.* keys and the other axes' apply to it
    heads = [o for o in variant.model_overrides if o.startswith("head=")]
    rest = [o for o in variant.model_overrides if not o.startswith("head=")]
    settings["overrides"] = heads + list(common.get("overrides", [])) + rest
    return settings


def run_variant(folder: Path, variant: Variant, base: str, data: str, common: dict[str, Any],
                latency_runs: int, split: str | None = None) -> dict:
    """Train one variant unless it is done (summary.json), resuming a stopped one; returns its summary
    (re-scored without retraining when it was scored on another split)."""
    summary_path = folder / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("scored_on") == (split or BEST_EPOCH):
            log.info("%s: already trained, reusing %s", variant.label, summary_path)
            return summary
    state = folder / "weights" / "last_state.safetensors"
    trainer = None
    if summary_path.exists():
        log.info("%s: already trained, scoring it on the %s split", variant.label, split or BEST_EPOCH)
    elif state.exists():
        try:
            trainer = Trainer.resume(folder)
            log.info("%s: resuming the stopped run in %s", variant.label, folder)
        except RunFinishedError:
            log.info("%s: training finished before; summarizing %s", variant.label, folder)
    else:
        for stale in ("results.csv", "probe.csv"):  # a run killed before its first checkpoint: start clean
            (folder / stale).unlink(missing_ok=True)
        config = make_train_config(variant_settings(variant, base, data, common), f"ablation variant {variant.label}")
        trainer = Trainer(config, run_dir=folder)
    if trainer is not None:
        trainer.train()
    summary = summarize_run(folder, variant, latency_runs, data, split, common.get("device") or "cpu")
    write_atomic(summary_path, json.dumps(summary, indent=2).encode())
    return summary


def summarize_run(folder: Path, variant: Variant, latency_runs: int = 5, data: str | None = None,
                  split: str | None = None, device: str = "cpu") -> dict:
    """Size, speed and accuracy of one finished run (its best weights and its results.csv); with `split`,
    the accuracy is that of the best weights on that split of `data` instead of the best epoch's validation."""
    config = json.loads((folder / "config.json").read_text())
    imgsz = int(config["train"]["imgsz"])
    weights = folder / "weights" / ("best.safetensors" if (folder / "weights" / "best.safetensors").exists()
                                    else "last.safetensors")
    model = load_detector(weights)
    info = model_info(model, imgsz)
    head = [p for p in info.parts if p.name.startswith("head.")]
    rows = ResultsLog(folder / "results.csv").rows()
    scored = [r for r in rows if not math.isnan(r.get("metrics/mAP50-95", math.nan))]
    best = max(scored, key=lambda r: 0.1 * r["metrics/mAP50"] + 0.9 * r["metrics/mAP50-95"]) if scored else {}
    columns = rows[0] if rows else {}
    probe = {k.removeprefix("probe/").removesuffix("_cos"): _nanmean([r[k] for r in rows]) for k in columns
             if k.startswith("probe/") and k.endswith("_cos")}
    scores = {key: best.get(f"metrics/{key}", math.nan) for key in ("mAP50-95", "mAP50", "recall")}
    if split is not None:
        result = val(model, data, split=split, device=device, plots=False, progress=False).summary()
        scores = {key: math.nan if result.get(key) is None else result[key] for key in scores}
    return {
        "variant": variant.label, "values": variant.values, "seed": variant.seed, "folder": folder.name,
        "params": info.params, "head_params": sum(p.params for p in head), "gflops": round(info.gflops, 3),
        "head_gflops": round(sum(p.gflops for p in head), 3), "latency_ms": measure_latency(model, imgsz, latency_runs),
        "imgsz": imgsz, "scored_on": split or BEST_EPOCH, "map50_95": scores["mAP50-95"], "map50": scores["mAP50"],
        "recall": scores["recall"], "best_epoch": int(best["epoch"]) if best else None,
        "train_min": rows[-1].get("time", math.nan) / 60 if rows else math.nan,
        "epochs": len(rows), "curve": [[int(r["epoch"]), r["metrics/mAP50-95"]] for r in scored], "probe_cos": probe,
    }


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


@torch.no_grad()
def measure_latency(model: torch.nn.Module, imgsz: int, runs: int = 5) -> float:
    """Median ms of one `[1, 3, imgsz, imgsz]` forward of the deployed model on the CPU, after 2 warm-ups.
    On a shared machine the figure is relative: compare variants measured in the same session."""
    model = copy.deepcopy(model).cpu().deploy()
    x = torch.zeros(1, 3, imgsz, imgsz)
    times = []
    for i in range(runs + 2):
        start = time.perf_counter()
        model(x)
        if i >= 2:
            times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def aggregate(runs: list[dict]) -> list[dict]:
    """One row per variant: sizes and latency (mean over seeds), metrics as mean and std over seeds."""
    rows = []
    for label in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == label]
        row: dict[str, Any] = {"variant": label, "seeds": [r["seed"] for r in mine], "scored_on": mine[0]["scored_on"]}
        for key in ("params", "head_params", "gflops", "head_gflops"):
            row[key] = mine[0][key]
        row["latency_ms"] = round(statistics.mean(r["latency_ms"] for r in mine), 3)
        for key in METRICS:
            values = [float(r[key]) for r in mine if r.get(key) is not None and not math.isnan(float(r[key]))]
            row[key] = statistics.mean(values) if values else math.nan
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0 if values else math.nan
        for group in dict.fromkeys(g for r in mine for g in r.get("probe_cos", {})):
            row[f"probe_{group}"] = _nanmean([r["probe_cos"].get(group, math.nan) for r in mine])
        rows.append(row)
    return rows


def _pm(row: dict, key: str, digits: int = 4) -> str:
    mean, std = row[key], row[f"{key}_std"]
    if mean is None or math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(row["seeds"]) > 1 else f"{mean:.{digits}f}"


def table_markdown(rows: list[dict]) -> str:
    probes = list(dict.fromkeys(k for r in rows for k in r if k.startswith("probe_")))
    split = rows[0]["scored_on"] if rows else BEST_EPOCH
    head = ["variant", "params", "head params", "GFLOPs", "head GFLOPs", "latency ms", f"mAP50-95 ({split})",
            f"mAP50 ({split})", f"recall ({split})", "best epoch", "train min",
            *[f"cos {p.removeprefix('probe_')}" for p in probes]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["variant"], f"{r['params']:,}", f"{r['head_params']:,}", f"{r['gflops']:.2f}",
                 f"{r['head_gflops']:.2f}", f"{r['latency_ms']:.1f}", _pm(r, "map50_95"), _pm(r, "map50"),
                 _pm(r, "recall", 3), _pm(r, "best_epoch", 1), _pm(r, "train_min", 1),
                 *[f"{r.get(p, math.nan):.3f}" for p in probes]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(run_dir: Path, runs: list[dict], rows: list[dict]) -> None:
    """ablation.md (the table), ablation.csv (one line per variant and seed), ablation.json ({"rows", "runs"})."""
    write_atomic(run_dir / "ablation.md", table_markdown(rows).encode())
    write_atomic(run_dir / "ablation.json", json.dumps(json_safe({"rows": rows, "runs": runs}), indent=2).encode())
    keys = ["variant", "seed", "params", "head_params", "gflops", "head_gflops", "latency_ms", "map50_95", "map50",
            "recall", "scored_on", "best_epoch", "train_min", "epochs", "folder"]
    tmp = run_dir / ".ablation.csv.tmp"
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(runs)
    shutil.move(tmp, run_dir / "ablation.csv")


def plot_ablation(runs: list[dict], rows: list[dict], run_dir: Path) -> None:
    """map_vs_epoch.png (every seed's curve, one colour per variant) and map_vs_latency.png (seed means)."""
    fig = new_figure((7.0, 5.0))
    ax = fig.subplots()
    colors = {row["variant"]: f"C{i % 10}" for i, row in enumerate(rows)}
    for run in runs:
        if run["curve"]:
            epochs, values = zip(*run["curve"])
            first = run["seed"] == min(r["seed"] for r in runs if r["variant"] == run["variant"])
            ax.plot(epochs, values, marker=".", color=colors[run["variant"]], label=run["variant"] if first else None)
    ax.set(xlabel="epoch", ylabel="mAP50-95 (val)", title="mAP vs epoch")
    ax.legend()
    save_figure(fig, run_dir / "map_vs_epoch.png")
    fig = new_figure((7.0, 5.0))
    ax = fig.subplots()
    for row in rows:
        ax.errorbar(row["latency_ms"], row["map50_95"], yerr=row["map50_95_std"], fmt="o", color=colors[row["variant"]],
                    label=row["variant"])
    ax.set(xlabel="latency (ms, batch 1, CPU)", ylabel=f"mAP50-95 ({rows[0]['scored_on'] if rows else BEST_EPOCH})",
           title="mAP vs latency")
    ax.legend()
    save_figure(fig, run_dir / "map_vs_latency.png")
