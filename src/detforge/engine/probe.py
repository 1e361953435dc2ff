"""Gradient-conflict probe: do the box and the classification losses pull shared weights apart?

For every parameter group that both objectives reach — the backbone, the neck and the head convs
shared by the branches (all but the last conv of a coupled head, the `shared` convs of a hybrid
head; a decoupled head has none) — the probe takes the gradient of the box objective (CIoU + DFL)
and of the classification objective (class BCE) separately and reports

    cos   = <g_box, g_cls> / (|g_box| |g_cls|)   1: they agree, 0: unrelated, -1: they fight
    ratio = |g_box| / |g_cls|                    which objective dominates the shared update

Objectness (YOLOX heads) is in neither objective: the question is the one the decoupled-head
argument makes, about localisation versus classification.

`GradientProbe(every=k)` is a trainer callback (turned on with the training setting
`probe_every: k`, off by default): every k steps it runs one extra forward and two backward passes
on the step's batch (gradients through `torch.autograd.grad`, so the optimizer's `.grad` are
untouched; BatchNorm statistics are restored afterwards), writes every sample to `probe.csv`, adds the
epoch's mean per group to results.csv (`probe/<group>_cos`, `probe/<group>_ratio`) and plots
`probe.png` at the end of the run. `detforge diagnose` runs the same measurement on a trained model.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from detforge.engine.callbacks import Callback
from detforge.engine.ema import unwrap
from detforge.engine.validate import images_to_float
from detforge.eval.plots import new_figure, save_figure

if TYPE_CHECKING:
    from detforge.engine.trainer import Trainer, TrainResult

log = logging.getLogger(__name__)
BOX_TERMS = ("box", "dfl")
CLS_TERMS = ("cls",)
FIELDS = ("step", "epoch", "group", "cos", "ratio", "box_norm", "cls_norm")


def gradient_conflict(objective_a: torch.Tensor, objective_b: torch.Tensor,
                      groups: dict[str, list[nn.Parameter]]) -> dict[str, dict[str, float]]:
    """Per group: cosine between the gradients of the two scalar objectives and their norm ratio |a| / |b|.

    A group neither objective reaches, or one where a gradient is zero, gets NaN cosine (and ratio
    where undefined). The graph is kept (`retain_graph`) between the two passes and then released.
    """
    names = [name for name, params in groups.items() if params]
    params = [p for name in names for p in groups[name]]
    if not params:
        return {}
    grads_a = torch.autograd.grad(objective_a, params, retain_graph=True, allow_unused=True)
    grads_b = torch.autograd.grad(objective_b, params, allow_unused=True)
    result, start = {}, 0
    for name in names:
        count = len(groups[name])
        a = _flat(grads_a[start:start + count], groups[name])
        b = _flat(grads_b[start:start + count], groups[name])
        start += count
        norm_a, norm_b = float(a.norm()), float(b.norm())
        cos = float(a @ b) / (norm_a * norm_b) if norm_a > 0 and norm_b > 0 else math.nan
        ratio = norm_a / norm_b if norm_b > 0 else math.nan
        result[name] = {"cos": cos, "ratio": ratio, "a_norm": norm_a, "b_norm": norm_b}
    return result


def _flat(grads: Iterable[torch.Tensor | None], params: list[nn.Parameter]) -> torch.Tensor:
    """One float64 vector of a group's gradients (zeros where an objective does not reach a parameter)."""
    return torch.cat([(g if g is not None else torch.zeros_like(p)).detach().double().flatten()
                      for g, p in zip(grads, params)])


def shared_head_parameters(head: nn.Module) -> list[nn.Parameter]:
    """Head parameters both objectives reach: a hybrid/decoupled head's `shared` convs, a coupled head's
    convs before its last (mixed-output) 1×1 conv. Heads of other designs report none."""
    shared = getattr(head, "shared", None)
    if isinstance(shared, nn.ModuleList):
        return [p for p in shared.parameters() if p.requires_grad]
    branches = getattr(head, "branches", None)
    if isinstance(branches, nn.ModuleList) and getattr(head, "split_sizes", None) is not None:
        return [p for level in branches for p in level[:-1].parameters() if p.requires_grad]
    return []


def layer_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """{backbone, neck, head_shared} → trainable parameters (a frozen part is left out)."""
    groups = {part: [p for p in getattr(model, part).parameters() if p.requires_grad] for part in ("backbone", "neck")}
    groups["head_shared"] = shared_head_parameters(model.head)
    return {name: params for name, params in groups.items() if params}


def split_objectives(loss_fn: nn.Module, output, boxes: torch.Tensor, cls: torch.Tensor,
                     batch_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(box objective, classification objective) as differentiable scalars: the gain-weighted terms of the
    loss (`box` + `dfl`, and `cls`) before they are summed. Needs a loss with `_terms` (the `yolov8`
    loss and its subclasses)."""
    terms_of = getattr(loss_fn, "_terms", None)
    if terms_of is None:
        raise TypeError(f"the gradient probe needs a loss with per-term outputs; {type(loss_fn).__name__} has none")
    with torch.autocast(boxes.device.type, enabled=False):
        terms = terms_of(output, boxes, cls, batch_idx)
    zero = output.cls.sum() * 0
    box = sum((terms[k] for k in BOX_TERMS if k in terms), zero)
    cls_objective = sum((terms[k] for k in CLS_TERMS if k in terms), zero)
    return box, cls_objective


class _KeepBatchNormStats:
    """Restores every BatchNorm's running statistics on exit: the probe's forward must not train them."""

    def __init__(self, model: nn.Module):
        self.buffers = [(b, b.detach().clone()) for m in model.modules()
                        if isinstance(m, nn.modules.batchnorm._BatchNorm) for b in m.buffers()]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for buffer, saved in self.buffers:
                buffer.copy_(saved)


def probe_batch(model: nn.Module, loss_fn: nn.Module, images: torch.Tensor, boxes: torch.Tensor,
                cls: torch.Tensor, batch_idx: torch.Tensor, train_mode: bool = True) -> dict[str, dict[str, float]]:
    """The probe on one batch (images float 0..1 `[B, 3, H, W]`): {group: {cos, ratio, a_norm, b_norm}}.

    train_mode: BatchNorm in training mode (batch statistics, as in the training step; the running
    statistics are restored afterwards); False keeps the model's current mode for the trunk (a trained
    model under `diagnose`). The head always gives its raw training output.
    """
    was_training = model.training
    try:
        with _KeepBatchNormStats(model):
            if train_mode:
                model.train()
            model.head.train()
            output = model.head(model.features(images))
            box, cls_objective = split_objectives(loss_fn, output, boxes, cls, batch_idx)
            return gradient_conflict(box, cls_objective, layer_groups(model))
    finally:
        model.train(was_training)


class GradientProbe(Callback):
    """Trainer callback: the probe every `every` training steps (see the module docstring)."""

    def __init__(self, every: int):
        self.every: int | None = max(int(every), 1)  # None: turned off
        self.samples: list[dict] = []  # this epoch's

    def on_run_start(self, trainer: Trainer) -> None:
        self.path = trainer.run_dir / "probe.csv"
        if any(isinstance(m, nn.SyncBatchNorm) for m in trainer.model.modules()):
            # the probe's extra forward runs on the main process only; SyncBatchNorm would wait for the others
            log.warning("gradient probe off: it does not run with SyncBatchNorm (train without --sync-bn to probe)")
            self.every = None
            return
        if trainer.resume_state is not None and self.path.exists():  # drop what the killed run wrote after its save
            kept = [r for r in read_probe(self.path) if r["epoch"] <= trainer.start_epoch]
            write_probe(self.path, kept)

    def on_train_batch_end(self, trainer: Trainer, epoch: int, index: int, batch: dict) -> None:
        step = epoch * len(trainer.train_loader) + index
        if self.every is None or step % self.every:
            return
        model = unwrap(trainer.model)
        images = images_to_float(batch["img"], trainer.device)
        targets = [batch[k].to(trainer.device) for k in ("boxes", "cls", "batch_idx")]
        try:
            result = probe_batch(model, trainer.loss_fn, images, *targets)
        except TypeError as err:
            log.warning("gradient probe off: %s", err)
            self.every = None
            return
        rows = [{"step": step, "epoch": epoch + 1, "group": group, "cos": v["cos"], "ratio": v["ratio"],
                 "box_norm": v["a_norm"], "cls_norm": v["b_norm"]} for group, v in result.items()]
        self.samples.extend(rows)
        append_probe(self.path, rows)

    def on_fit_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        """Adds this epoch's mean cosine and ratio per group to the results row (NaN without samples)."""
        for group in layer_groups(unwrap(trainer.model)):
            mine = [s for s in self.samples if s["group"] == group]
            for key in ("cos", "ratio"):
                values = [s[key] for s in mine if not math.isnan(s[key])]
                row[f"probe/{group}_{key}"] = sum(values) / len(values) if values else math.nan
        self.samples = []

    def on_run_end(self, trainer: Trainer, result: TrainResult) -> None:
        if self.path.exists():
            plot_probe(read_probe(self.path), trainer.run_dir / "probe.png")


def append_probe(path: Path, rows: list[dict]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()} for r in rows)


def write_probe(path: Path, rows: list[dict]) -> None:
    path.unlink(missing_ok=True)
    if rows:
        append_probe(path, rows)


def read_probe(path: str | Path) -> list[dict]:
    with Path(path).open() as fh:
        return [{k: v if k == "group" else (int(float(v)) if k in ("step", "epoch") else float(v))
                 for k, v in row.items()} for row in csv.DictReader(fh)]


def plot_probe(rows: list[dict], path: str | Path) -> Path | None:
    """Cosine and norm ratio per group against the training step."""
    if not rows:
        return None
    fig = new_figure((10.0, 4.0))
    axes = fig.subplots(1, 2)
    for group in dict.fromkeys(r["group"] for r in rows):
        mine = [r for r in rows if r["group"] == group]
        axes[0].plot([r["step"] for r in mine], [r["cos"] for r in mine], marker=".", label=group)
        axes[1].plot([r["step"] for r in mine], [r["ratio"] for r in mine], marker=".", label=group)
    axes[0].axhline(0, color="grey", linewidth=0.5)
    axes[0].set(title="cos(grad box, grad cls)", xlabel="step", ylim=(-1.05, 1.05))
    axes[1].set(title="|grad box| / |grad cls|", xlabel="step", yscale="log")
    axes[0].legend()
    return save_figure(fig, path)
