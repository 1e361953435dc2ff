"""`detforge train`: train a detector on a dataset (DDP with --devices N or under torchrun)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

MODEL_SECTIONS = ("backbone.", "neck.", "head.", "names", "scale")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a detector",
        description="Train a detector. Writes best/last weights (safetensors), results.csv, plots and the "
        "resolved config to runs/train/NAME. Every training setting can be given in a YAML file (--cfg) or "
        "with --set KEY=VALUE (e.g. --set lr0=0.02 --set mosaic=0.5 --set loss.cls=1.0 --set assigner.topk=13 "
        "--set logger=tensorboard --set head.reg_max=8); --help-settings lists every setting with its default "
        "and meaning.",
    )
    p.add_argument("--model", help="packaged name (yolov8n, yolov8s-p2, ...), model YAML, or weights to fine-tune")
    p.add_argument("--data", help="data.yaml (YOLO), COCO json, or VOC folder")
    p.add_argument("--epochs", type=int)
    p.add_argument("--imgsz", type=int, help="training image size (default 640, or the size --model weights were "
                   "trained at)")
    p.add_argument("--batch", type=int, help="images per batch per process")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, help="data-loading processes per training process")
    p.add_argument("--name", help="run name (folder under --project)")
    p.add_argument("--project", help="parent folder of runs (default runs/train)")
    p.add_argument("--weights", help="initial weights (.safetensors, or an Ultralytics .pt imported safely)")
    p.add_argument("--freeze", choices=["none", "backbone", "backbone+neck"])
    p.add_argument("--aux", action="store_true", default=None,
                   help="train with an auxiliary head and coarse-to-fine lead-guided labels (dropped on deploy)")
    p.add_argument("--optimizer", choices=["auto", "sgd", "adamw"])
    p.add_argument("--lr0", type=float)
    p.add_argument("--patience", type=int, help="stop after this many epochs without improvement (0 = never)")
    p.add_argument("--seed", type=int)
    p.add_argument("--deterministic", action="store_true", default=None, help="reproducible kernels (slower)")
    p.add_argument("--cos-lr", dest="cos_lr", action="store_true", default=None, help="cosine lr decay")
    p.add_argument("--sync-bn", dest="sync_bn", action="store_true", default=None, help="SyncBatchNorm under DDP")
    p.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format (default: on for CPU training, off on CUDA)")
    p.add_argument("--no-amp", dest="amp", action="store_false", default=None,
                   help="train in float32 (default: fp16 autocast on CUDA, bf16 on a CPU with native bfloat16)")
    p.add_argument("--exist-ok", dest="exist_ok", action="store_true", default=None, help="reuse the run folder")
    p.add_argument("--cfg", help="YAML file of training settings (command-line flags win)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training setting or a model config key (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run exactly where it stopped")
    p.add_argument("--devices", type=int, default=1, help="processes for DDP; >1 relaunches under torchrun")
    p.add_argument("--help-settings", action=HelpSettings, help="list every training setting with its default "
                   "and meaning, then exit")
    p.set_defaults(run=run)


class HelpSettings(argparse.Action):
    """`--help-settings`: print the settings table and exit, like --help."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from detforge.engine.settings import settings_table
        from detforge.engine.train_config import TrainConfig

        print(settings_table(TrainConfig))
        parser.exit()


def settings_from_args(args: argparse.Namespace) -> dict:
    """Merge --cfg file, explicit flags and --set overrides into one settings dict."""
    from detforge.engine.train_config import load_train_yaml

    settings = load_train_yaml(args.cfg) if args.cfg else {}
    skip = {"cfg", "overrides", "resume", "devices", "run", "command", "verbose", "argv"}
    settings.update({k: v for k, v in vars(args).items() if k not in skip and v is not None})
    return apply_overrides(settings, args.overrides)


def apply_overrides(settings: dict, overrides: list[str]) -> dict:
    """`--set KEY=VALUE`s: model keys go to settings["overrides"] (for the model config), the rest
    into the training settings (dotted keys into their section)."""
    from detforge.config import parse_override, set_by_path

    model_overrides = list(settings.get("overrides", []))
    for text in overrides:
        key, value = parse_override(text)
        if key.startswith(MODEL_SECTIONS) and not (key == "scale" and not isinstance(value, str)):
            # (a number for `scale` is the augmentation's zoom range, Ultralytics' `scale`, not a model scale)
            model_overrides.append(text)
        else:
            if "." in key:
                settings.setdefault(key.split(".")[0], {})
            set_by_path(settings, key, value)
    settings["overrides"] = model_overrides
    return settings


def relaunch_with_torchrun(args: argparse.Namespace) -> int:
    """`--devices N` → `torchrun --nproc-per-node N -m detforge train ...` (same arguments)."""
    argv = list(args.argv)
    while "--devices" in argv:
        i = argv.index("--devices")
        del argv[i:i + 2]
    argv = [a for a in argv if not a.startswith("--devices=")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.devices}",
           "-m", "detforge", *argv]
    return subprocess.call(cmd)


def run(args: argparse.Namespace) -> int:
    from detforge.engine import distributed
    from detforge.engine.train_config import make_train_config
    from detforge.engine.trainer import Trainer, defaults_from_weights
    from detforge.errors import ConfigError
    from detforge.models.provenance import read_training_settings

    if args.devices > 1 and not distributed.launched_by_torchrun():
        return relaunch_with_torchrun(args)
    if args.resume:
        trainer = Trainer.resume(args.resume)
    else:
        settings = settings_from_args(args)
        if Path(str(settings.get("model", ""))).suffix == ".safetensors":
            settings = defaults_from_weights(settings, read_training_settings(settings["model"]))
        if not settings.get("data"):
            raise ConfigError("train needs a dataset: --data path/to/data.yaml (try `detforge data synth` for one)")
        trainer = Trainer(make_train_config(settings, args.cfg or "arguments"))
    result = trainer.train()
    if trainer.main:  # the process group is gone by now, so ask the trainer which rank it was
        print_summary(result)
    return 0


def print_summary(result) -> None:
    m = result.metrics
    lines = [
        "",
        f"Training finished: {result.epochs_run} epochs in {result.train_s / 60:.1f} min, results in {result.run_dir}",
        (f"  mAP50-95 {m.get('mAP50-95', float('nan')):.4f}   mAP50 {m.get('mAP50', float('nan')):.4f}   "
        f"P {m.get('precision') or 0:.3f}   R {m.get('recall') or 0:.3f}"),
        f"  best weights  {result.best}",
        f"  last weights  {result.last}  (resume: detforge train --resume {result.run_dir})",
        f"  curves        {result.run_dir / 'results.png'}  ({result.run_dir / 'results.csv'})",
        f"  val plots     {result.run_dir / 'PR_curve.png'}, F1_curve.png, confusion_matrix_normalized.png",
        f"  train batch   {result.run_dir / 'train_batch0.png'}",
    ]
    print("\n".join(lines))
