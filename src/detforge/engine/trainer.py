"""The training loop: data → model → loss (assigner + terms) → optimizer, with EMA, warmup,
validation, atomic checkpoints, exact resume, early stopping and DDP.

Everything a run produces goes to its folder (`runs/train/NAME/`): weights/best.safetensors
and weights/last.safetensors (EMA weights, loadable with `detforge.load`),
weights/last_state.safetensors (everything needed to resume), results.csv and plots,
a mosaic of the first training batch, and the resolved configs.

Set-up is a few override points a subclass replaces one at a time — `build_model`,
`build_loaders`, `build_assigner`, `build_loss`, `build_optimizer`, `build_callbacks` — and what a
run reports goes through callbacks (engine/callbacks.py), never through edits to the loop.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detforge.config import parse_override, set_by_path, validate_config
from detforge.data import build_dataloader, load_dataset_spec
from detforge.device import cpu_has_bf16, select_device
from detforge.engine import distributed, recipe
from detforge.engine.callbacks import Callback, Callbacks, FunctionCallback, ResultsCsv, TrainingPlots
from detforge.engine.checkpoint import load_train_state, restore_train_state, save_train_state
from detforge.engine.ema import ModelEMA, unwrap
from detforge.engine.finetune import freeze, transfer_weights
from detforge.engine.guard import NonFiniteGuard
from detforge.engine.lr import WarmupSchedule
from detforge.engine.optim import build_optimizer, resolve_auto
from detforge.engine.threads import ThreadTuner, threads_restored
from detforge.engine.train_config import TrainConfig, make_train_config
from detforge.engine.validate import images_to_float, run_validation
from detforge.errors import RunFinishedError
from detforge.eval import EvalResult
from detforge.io.convert import load_detector
from detforge.io.weights import save_weights, write_atomic
from detforge.models.aux import default_aux
from detforge.models.build import build_model, create_model
from detforge.models.detector import max_stride
from detforge.models.provenance import (
    read_training_settings,
    training_settings,
    weights_metadata,
    weights_source,
)
from detforge.progress import interactive, progress_bar
from detforge.runs import next_run_dir

log = logging.getLogger(__name__)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


@dataclass
class TrainResult:
    run_dir: Path
    best: Path
    last: Path
    epochs_run: int
    best_fitness: float
    metrics: dict = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)  # mean total loss per epoch (for determinism checks)
    evaluation: EvalResult | None = None  # final validation of the best weights (main process)
    train_s: float = 0.0  # wall seconds of all epochs (training + validation), resumed parts included


class Trainer:
    """`Trainer(config).train()`; `Trainer.resume(run_dir).train()` continues a stopped run.

    callbacks: extra `Callback`s (or use `add_callback`), called after the built-in ones.
    """

    def __init__(self, config: TrainConfig, run_dir: Path | None = None, resume_state: tuple | None = None,
                 initial_model: nn.Module | None = None, callbacks: list[Callback] | None = None):
        self.config = config
        self.initial_model = initial_model  # train this model's architecture from its weights
        self.user_callbacks: list[Callback] = list(callbacks or [])
        self.device = select_device(config.device)
        self.rank, self.world = distributed.setup(self.device)
        self.main = self.rank == 0
        self.resume_state = resume_state
        self.run_dir = run_dir or next_run_dir(config.project, config.name, config.exist_ok)
        if run_dir is None:
            # every rank must agree on the folder that rank 0 picked
            self.run_dir = Path(distributed.broadcast_object(str(self.run_dir)))
        self.weights_dir = self.run_dir / "weights"

    @classmethod
    def resume(cls, run_dir: str | Path, callbacks: list[Callback] | None = None) -> Trainer:
        run_dir = Path(run_dir)
        state = load_train_state(run_dir / "weights" / "last_state.safetensors")
        info = state[1]["info"]
        config = make_train_config(info["train_config"], str(run_dir))
        check_unfinished(run_dir, info, config)
        return cls(config, run_dir, state, callbacks=callbacks)

    def add_callback(self, callback: Callback | str, fn=None) -> None:
        """`add_callback(MyCallback())` or `add_callback("on_fit_epoch_end", fn)`; call before `train()`."""
        self.user_callbacks.append(FunctionCallback(callback, fn) if isinstance(callback, str) else callback)

    # ----------------------------------------------------------------- override points
    def build_model(self, names: list[str]) -> nn.Module:
        """A fresh model for the dataset's classes; from a weights file, its architecture and weights.
        With `aux`, a model without an auxiliary part gets the default one (`models/aux.py`).

        Returns the plain Detector (not yet on the device, not DDP-wrapped).
        """
        c = self.config
        if self.initial_model is not None or Path(c.model).suffix in (".safetensors", ".pt"):
            source = self.initial_model or load_detector(c.model)
            config = source.config.model_dump()
            overrides = [parse_override(text) for text in c.overrides]  # --set head.reg_max=8 and the like
            for key, value in [("names", names), ("head.num_classes", len(names)), *overrides]:
                set_by_path(config, key, value)
            if c.aux and config.get("aux") is None:
                config["aux"] = default_aux(validate_config(config, c.model))
            model = build_model(validate_config(config, c.model))
            if overrides:
                log.info("%s: architecture changed by %s; tensors that no longer fit start fresh", c.model,
                         ", ".join(c.overrides))
            transfer_weights(model, source, c.model)
        else:
            model = create_model(c.model, names=names, overrides=c.overrides, aux=c.aux)
        if c.weights:
            transfer_weights(model, load_detector(c.weights), c.weights)
        freeze(model, c.freeze)
        return model

    def resolve_config(self, model: nn.Module) -> TrainConfig:
        """The settings with the model's own recipe (`train:` in its YAML) under the user's ones."""
        model_config = getattr(model, "config", None)
        train_recipe = getattr(model_config, "train", None)
        source = getattr(model_config, "source", None) or str(self.config.model)
        resolved = recipe.resolve_recipe(self.config, train_recipe, source)
        stride = max_stride(model)
        if resolved.imgsz % stride:  # a P6 model at 96 px would fail deep inside the neck
            rounded = math.ceil(resolved.imgsz / stride) * stride
            if self.main:
                log.warning("imgsz %d is not a multiple of the model's largest stride %d; training at %d",
                            resolved.imgsz, stride, rounded)
            resolved = resolved.model_copy(update={"imgsz": rounded})
        return resolved

    def build_loaders(self) -> tuple:
        """(train loader, val loader); the val loader only on the main process (None elsewhere)."""
        c, stride = self.config, max_stride(unwrap(self.model))
        train_loader = build_dataloader(self.spec, split="train", imgsz=c.imgsz, batch_size=c.batch,
                                        augment=True, hyp=c.augment, workers=c.workers, shuffle=True,
                                        seed=c.seed, distributed=self.world > 1, stride=stride)
        val_loader = build_dataloader(self.spec, split="val", imgsz=c.imgsz, batch_size=c.batch * 2,
                                      augment=False, workers=c.workers, shuffle=False, rect=True,
                                      seed=c.seed, stride=stride) if self.main else None
        return train_loader, val_loader

    def build_assigner(self) -> nn.Module:
        """`ASSIGNERS.get(assigner.type)(**assigner keys)`."""
        return recipe.build_assigner(self.config.assigner.as_dict())

    def build_loss(self, model: nn.Module) -> nn.Module:
        """`LOSSES.get(loss.type)(model=model, assigner=build_assigner(), **loss keys)`, on the device.

        The loss is called `loss(output, boxes, cls, batch_idx) -> (total, {term: detached tensor})`.
        """
        return recipe.build_loss(self.config.loss.as_dict(), model, self.build_assigner()).to(self.device)

    def build_optimizer(self, model: nn.Module) -> tuple[torch.optim.Optimizer, WarmupSchedule]:
        """The optimizer (weight decay scaled to the effective batch) and its warmup/decay schedule."""
        c = self.config
        iterations = math.ceil(len(self.train_loader.dataset) / max(c.batch * self.world, 1) / self.accumulate) \
            * c.epochs
        name, lr0, momentum, bias_lr = resolve_auto(c.optimizer, c.lr0, c.momentum, c.warmup_bias_lr,
                                                    model.head.num_classes, iterations)
        weight_decay = c.weight_decay * c.batch * self.world * self.accumulate / c.nbs
        optimizer = build_optimizer(model, name, lr0, momentum, weight_decay, c.lr_mult)
        batches = len(self.train_loader)
        schedule = WarmupSchedule(optimizer, lr0, c.epochs, c.lrf, c.cos_lr,
                                  max(round(c.warmup_epochs * batches), 100) if c.warmup_epochs > 0 else 0,
                                  bias_lr, c.warmup_momentum, momentum)
        return optimizer, schedule

    def build_callbacks(self) -> Callbacks:
        """The gradient probe (`probe_every`), results.csv, plots (`plots`), the tracker (`logger`), then the
        user's callbacks."""
        c = self.config
        callbacks: list[Callback] = []
        if c.probe_every:  # before results.csv: it adds the probe's columns to the epoch's row
            from detforge.engine.probe import GradientProbe

            callbacks.append(GradientProbe(c.probe_every))
        callbacks.append(ResultsCsv())
        if c.plots:
            callbacks.append(TrainingPlots())
        if c.logger == "tensorboard":
            from detforge.engine.tensorboard import TensorBoardLogger

            callbacks.append(TensorBoardLogger())
        return Callbacks(callbacks + self.user_callbacks)

    # ----------------------------------------------------------------- setup
    def _setup(self) -> None:
        c = self.config
        seed_everything(c.seed + self.rank, c.deterministic)
        self.spec = load_dataset_spec(c.data)
        self.names = list(self.spec.names)
        model = self.build_model(self.names)
        self.config = c = self.resolve_config(model)
        model = model.to(self.device)
        self.channels_last = self.device.type == "cpu" if c.channels_last == "auto" else c.channels_last
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if c.sync_bn and self.world > 1:
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            elif self.main:
                log.warning("sync_bn: SyncBatchNorm needs CUDA; each process keeps its own BatchNorm on CPU")
        self.model = model
        self.train_loader, self.val_loader = self.build_loaders()
        self.loss_fn = self.build_loss(model)
        self.accumulate = max(round(c.nbs / (c.batch * self.world)), 1)
        self.optimizer, self.schedule = self.build_optimizer(model)
        self.ema = ModelEMA(model, c.ema_decay, c.ema_tau)
        autocast = self._autocast_dtype()
        self.use_amp = autocast is not None
        self.amp_dtype = autocast or torch.float16  # a disabled autocast still takes a dtype
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.guard = NonFiniteGuard(c.max_nonfinite)  # policy: skip non-finite steps, stop when they persist
        self.threads = ThreadTuner.for_training(self.device, c.deterministic)
        self.callbacks = self.build_callbacks() if self.main else Callbacks()
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.start_epoch, self.best_fitness, self.epochs_without_gain = 0, -1.0, 0
        self.loss_history: list[float] = []
        self.elapsed_s = 0.0  # wall seconds of the epochs done so far (kept across resumes: results.csv `time`)
        if self.resume_state is not None:
            info = restore_train_state(*self.resume_state, model=unwrap(self.model), ema=self.ema,
                                       optimizer=self.optimizer, scaler=self.scaler)
            self.start_epoch = info["epoch"] + 1
            self.best_fitness = info["best_fitness"]
            self.epochs_without_gain = info["epochs_without_gain"]
            self.loss_history = info["loss_history"]
            self.elapsed_s = info.get("elapsed_s", 0.0)
            if self.main:
                for stale in self.weights_dir.glob(".*.tmp"):  # temp files of a write the kill interrupted
                    stale.unlink()
                log.info("resuming %s from epoch %d/%d", self.run_dir, self.start_epoch + 1, c.epochs)

    def _autocast_dtype(self) -> torch.dtype | None:
        """The dtype the training forward autocasts to; None trains in float32.

        CUDA: fp16 (with a grad scaler) unless bf16 is asked for. CPU: bf16 where the CPU computes it natively,
        by default or when asked for; float32 elsewhere. The accuracy race (bench/accuracy_race.py --bf16, BCCD,
        3 seeds) found bf16 within noise of float32 at ~2x the training speed (docs/training.md).
        """
        c = self.config
        if not c.amp or self.device.type not in ("cpu", "cuda"):
            return None
        if self.device.type == "cuda":
            return torch.bfloat16 if c.amp_dtype == "bf16" else torch.float16
        if c.amp_dtype == "fp16":
            return None  # CPU autocast has no fast float16
        native = cpu_has_bf16()
        if self.main:
            if native:
                log.info("CPU training under bfloat16 autocast (native on this CPU; --no-amp for float32)")
            elif c.amp_dtype == "bf16":
                log.warning("amp_dtype bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX); training in float32")
        return torch.bfloat16 if native else None

    def _write_run_files(self) -> None:
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        resolved = {"train": self.config.model_dump(mode="json"), "initial_weights": self._initial_weights(),
                    "model": unwrap(self.model).config.model_dump(mode="json")}
        write_atomic(self.run_dir / "config.json", json.dumps(resolved, indent=2).encode())

    def _initial_weights(self) -> str:
        """Where the weights training starts from came from, for config.json (a rerun needs to know)."""
        c = self.config
        if self.initial_model is not None:
            source = weights_source(self.initial_model)
            start = f"{source} (the model given to model.train)" if source else \
                "an in-memory model given to model.train, not loaded from a file (create_model/build_model)"
        elif Path(c.model).suffix in (".safetensors", ".pt"):
            start = c.model
        else:
            start = f"random initialization ({c.model})"
        return f"{start}; then {c.weights}" if c.weights else start

    def _weights_meta(self, epoch: int) -> dict[str, str]:
        """Weights-file metadata: the epoch and the training settings (inference reads its defaults there)."""
        return {"epoch": str(epoch + 1), **weights_metadata(self.config.model_dump(mode="json"))}

    # ----------------------------------------------------------------- loop
    def train(self) -> TrainResult:
        with threads_restored():  # the tuner changes torch's thread count; the caller gets theirs back
            return self._train()

    def _train(self) -> TrainResult:
        self._setup()
        c = self.config
        if self.main:
            self._write_run_files()
            log.info("training %s on %s (%d train images, %d classes) for %d epochs on %s, results in %s",
                     unwrap(self.model).config.name, c.data, len(self.train_loader.dataset), len(self.names),
                     c.epochs, self.device, self.run_dir)
        self.callbacks.fire("on_run_start", self)
        metrics: dict = {}
        epoch = self.start_epoch - 1
        for epoch in range(self.start_epoch, c.epochs):
            self.epoch_start = time.perf_counter()
            losses = self._train_epoch(epoch)
            metrics = self._end_epoch(epoch, losses)
            if distributed.broadcast_object(self._should_stop()):
                log.info("no improvement for %d epochs: stopping early", c.patience)
                break
        distributed.barrier()
        result = TrainResult(self.run_dir, self.weights_dir / "best.safetensors",
                             self.weights_dir / "last.safetensors", epoch + 1, self.best_fitness, metrics,
                             self.loss_history, train_s=self.elapsed_s)
        if self.main:
            self._finish(result)
        distributed.cleanup()
        return result

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        c = self.config
        model, loader = self.model, self.train_loader
        if epoch >= c.epochs - c.augment.close_mosaic:
            loader.dataset.close_mosaic()
        set_epoch(loader, epoch)
        model.train()
        batches = len(loader)
        sums: dict[str, float] = {}
        seen, start = 0, time.perf_counter()
        bar = progress_bar(loader, total=batches, desc=f"epoch {epoch + 1}/{c.epochs}", disable=not self.main,
                           dynamic_ncols=True)
        self.optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(self.threads.steps(bar)):
            iteration = epoch * batches + i
            self.schedule.step(epoch, iteration)
            images = batch["img"]
            if self.channels_last:  # reorder the uint8 batch (a quarter of the float batch's bytes); the float keeps it
                images = images.contiguous(memory_format=torch.channels_last)
            images = images_to_float(images, self.device)
            targets = [batch[k].to(self.device) for k in ("boxes", "cls", "batch_idx")]
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                output = model(images)
            loss, items = self.loss_fn(output, *targets)  # computed in float32 even under autocast
            if not self.guard.check(loss):
                self.optimizer.zero_grad(set_to_none=True)
                continue
            self.scaler.scale(loss * self.world).backward()
            if (iteration + 1) % self.accumulate == 0 or i == batches - 1:
                self._optimizer_step()
            seen += images.shape[0]
            for k, v in items.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if self.main:
                shown = {k: f"{v / (i + 1):.3f}" for k, v in sums.items()}
                shown["img/s"] = f"{seen * self.world / (time.perf_counter() - start):.1f}"
                bar.set_postfix(shown, refresh=False)
            self.callbacks.fire("on_train_batch_end", self, epoch, i, batch)
        bar.close()
        means = {k: v / max(batches, 1) for k, v in sums.items()}
        averaged = distributed.mean_across_ranks(torch.tensor(list(means.values()), dtype=torch.float64))
        means = dict(zip(means, averaged.tolist()))
        means["images_per_s"] = seen * self.world / (time.perf_counter() - start)
        if self.main and not interactive():  # no bar in a log: one plain line per epoch instead
            log.info("epoch %d/%d  %s  %.1f img/s  %.0f s", epoch + 1, c.epochs,
                     "  ".join(f"{k} {v:.4f}" for k, v in means.items() if k != "images_per_s"),
                     means["images_per_s"], time.perf_counter() - start)
        self.callbacks.fire("on_train_epoch_end", self, epoch, means)
        return means

    def _optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, max_norm=self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)

    def _end_epoch(self, epoch: int, losses: dict[str, float]) -> dict:
        c = self.config
        metrics: dict = {}
        final = epoch == c.epochs - 1
        self.loss_history.append(sum(v for k, v in losses.items() if k != "images_per_s"))
        if self.main:
            if (epoch + 1) % c.val_interval == 0 or final:
                result = run_validation(self.ema.ema, self.val_loader, self.names, self.device, c.val_conf, c.val_iou,
                                  c.max_det, loss_fn=self.loss_fn)
                metrics = {**result.summary(), **{f"val/{k}": v for k, v in result.losses.items()}}
                fitness = 0.1 * result.map50 + 0.9 * result.map50_95
                if fitness > self.best_fitness:
                    self.best_fitness, self.epochs_without_gain = fitness, 0
                    save_weights(self.ema.ema, self.weights_dir / "best.safetensors", self._weights_meta(epoch))
                else:
                    self.epochs_without_gain += c.val_interval
                log.info("epoch %d/%d  mAP50-95 %.4f  mAP50 %.4f  P %.3f  R %.3f", epoch + 1, c.epochs,
                         result.map50_95, result.map50, metrics.get("precision", 0.0), metrics.get("recall", 0.0))
            self._save(epoch, losses, metrics)
        distributed.barrier()
        return metrics

    def _save(self, epoch: int, losses: dict[str, float], metrics: dict) -> None:
        row = {"epoch": epoch + 1, **{f"train/{k}": v for k, v in losses.items() if k != "images_per_s"}}
        for key in ("precision", "recall", "mAP50", "mAP50-95"):
            row[f"metrics/{key}"] = float(metrics.get(key, float("nan")))
        for key in losses:  # validation losses (NaN on epochs without validation): same columns every row
            if key != "images_per_s":
                row[f"val/{key}"] = float(metrics.get(f"val/{key}", float("nan")))
        row.update({f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(self.optimizer.param_groups)})
        row["images_per_s"] = losses["images_per_s"]
        self.elapsed_s += time.perf_counter() - self.epoch_start
        row["time"] = self.elapsed_s  # cumulative, as the reference's results.csv
        self.callbacks.fire("on_fit_epoch_end", self, epoch, row)  # results.csv, first-batch plot, trackers
        save_weights(self.ema.ema, self.weights_dir / "last.safetensors", self._weights_meta(epoch))
        info = {"epoch": epoch, "best_fitness": self.best_fitness, "epochs_without_gain": self.epochs_without_gain,
                "loss_history": self.loss_history, "elapsed_s": self.elapsed_s,
                "train_config": self.config.model_dump(mode="json")}
        state = self.weights_dir / "last_state.safetensors"
        save_train_state(state, model=unwrap(self.model), ema=self.ema, optimizer=self.optimizer,
                         scaler=self.scaler, info=info)
        self.callbacks.fire("on_checkpoint_saved", self, epoch, state)

    def _should_stop(self) -> bool:
        return bool(self.config.patience) and self.epochs_without_gain >= self.config.patience

    def _finish(self, result: TrainResult) -> None:
        """Final validation of the best weights, the closing summary, then the callbacks' run end (plots)."""
        if result.best.exists():
            best = load_detector(result.best).to(self.device)
            final = run_validation(best, self.val_loader, self.names, self.device, self.config.val_conf,
                             self.config.val_iou, self.config.max_det)
            result.evaluation = final
            result.metrics = final.summary()
            log.info("\n%s", final.per_class_table())
        self.callbacks.fire("on_run_end", self, result)


def check_unfinished(run_dir: Path, info: dict, config: TrainConfig) -> None:
    """Refuse to resume a run that already ended (all epochs done, or stopped early by `patience`):
    resuming it would only re-validate and rewrite its plots."""
    done = info["epoch"] + 1
    stopped_early = bool(config.patience) and info.get("epochs_without_gain", 0) >= config.patience
    if done >= config.epochs or stopped_early:
        how = f"all {config.epochs} epochs done" if done >= config.epochs else \
            f"stopped early after {done} epochs without improvement for {config.patience}"
        raise RunFinishedError(
            f"{run_dir}: the run is finished ({how}); nothing to resume — train longer with a new run, e.g. "
            f"detforge train --model {run_dir / 'weights' / 'last.safetensors'} --data {config.data} "
            f"--epochs N"
        )


def set_epoch(loader, epoch: int) -> None:
    """Make shuffling and augmentation depend on (seed, epoch) only, so a resumed run repeats them."""
    for owner in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None), loader.dataset):
        if hasattr(owner, "set_epoch"):
            owner.set_epoch(epoch)


def defaults_from_weights(settings: dict, stored: dict) -> dict:
    """`settings` with `imgsz` and `data` taken from the training settings of the weights being trained
    (`stored`) where not given: fine-tuning a 256-px model goes on at 256 px unless told otherwise."""
    settings = dict(settings)
    for key in ("imgsz", "data"):
        if settings.get(key) is None and stored.get(key):
            settings[key] = stored[key]
            log.info("%s %s (from the weights' training settings)", key, stored[key])
    return settings


def train(callbacks: list[Callback] | None = None, **settings) -> TrainResult:
    """Python entry point: `detforge.train(model="yolov8n", data="data.yaml", epochs=10)`.

    callbacks: `detforge.Callback` objects that see the run's events (see engine/callbacks.py).
    """
    settings = defaults_from_weights(settings, read_training_settings(settings.get("model", "")))
    return Trainer(make_train_config(settings), callbacks=callbacks).train()


def train_model(model: nn.Module, callbacks: list[Callback] | None = None, **settings) -> TrainResult:
    """Train an in-memory detector (`model.train(data=...)`); its best weights are loaded back into it."""
    settings = defaults_from_weights(settings, training_settings(model))
    settings.setdefault("model", weights_source(model) or (model.config.name if model.config is not None else "model"))
    result = Trainer(make_train_config(settings), initial_model=model, callbacks=callbacks).train()
    if result.best.exists():
        trained = load_detector(result.best)
        if trained.num_classes == model.num_classes:
            model.load_state_dict(trained.state_dict())
            model.names = trained.names
            model.meta = trained.meta
        else:
            log.warning("the dataset has %d classes and the model %d: load the trained model with "
                        "detforge.load(%r)", trained.num_classes, model.num_classes, str(result.best))
    return result
