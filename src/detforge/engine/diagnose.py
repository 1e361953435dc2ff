"""`detforge diagnose`: the gradient-conflict probe and the task-alignment report on a trained model.

Both run on a few batches of a dataset split, without augmentation, with the model in eval mode (BatchNorm
uses its running statistics; the head gives its raw maps). The probe uses the loss and assigner the
weights were trained with (their stored training settings; the defaults otherwise): per layer group the
cosine between the box (CIoU + DFL) and class gradients and their norm ratio, averaged over batches.
The alignment report is eval/alignment.py's. Writes diagnose.json and alignment.png to the run folder.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detforge.data import build_dataloader
from detforge.device import select_device
from detforge.engine import recipe
from detforge.engine.probe import probe_batch
from detforge.engine.results import json_safe
from detforge.engine.validate import images_to_float
from detforge.errors import ConfigError
from detforge.eval.alignment import alignment_report, plot_alignment, positive_pairs
from detforge.io.convert import load_detector
from detforge.io.weights import write_atomic
from detforge.models.heads.base import DetectionHead
from detforge.models.provenance import default_imgsz, training_settings

log = logging.getLogger(__name__)


def training_parts(model: torch.nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """(assigner spec, loss spec) the model was trained with: its stored settings, else its recipe, else {}."""
    stored = training_settings(model)
    model_recipe = getattr(getattr(model, "config", None), "train", None) or {}
    pick = [dict(stored.get(kind) or model_recipe.get(kind) or {}) for kind in ("assigner", "loss")]
    return pick[0], pick[1]


def diagnose(weights: str | Path, data: str | Path, split: str = "val", batches: int = 10, imgsz: int | None = None,
             batch: int = 8, device: str = "cpu", workers: int = 0, save_dir: str | Path | None = None) -> dict:
    """Probe + alignment report of `weights` on up to `batches` batches of `split`; see the module docstring."""
    model = load_detector(weights)
    if not isinstance(model.head, DetectionHead):
        raise ConfigError(f"{weights}: diagnose needs an anchor-free head (coupled/hybrid/decoupled); "
                          f"{type(model.head).__name__} is anchor-based")
    dev = select_device(device)
    model = model.to(dev).eval()
    for name, p in model.named_parameters():  # loaded weights may come frozen; the probe needs gradients
        p.requires_grad_(not name.endswith("dfl.bins"))
    imgsz = default_imgsz(model, imgsz)
    assigner_spec, loss_spec = training_parts(model)
    assigner = recipe.build_assigner(assigner_spec)
    loss_fn = recipe.build_loss(loss_spec, model, assigner).to(dev)
    loader = build_dataloader(data, split=split, imgsz=imgsz, batch_size=batch, augment=False, workers=workers,
                              shuffle=False, progress=False)
    probes: dict[str, list[dict[str, float]]] = {}
    pairs: dict[str, list[torch.Tensor]] = {"score": [], "iou": [], "cls": []}
    used = 0
    for i, item in enumerate(loader):
        if i >= batches:
            break
        images = images_to_float(item["img"], dev)
        targets = [item[k].to(dev) for k in ("boxes", "cls", "batch_idx")]
        if not targets[0].numel():
            continue
        used += 1
        try:
            for group, values in probe_batch(model, loss_fn, images, *targets, train_mode=False).items():
                probes.setdefault(group, []).append(values)
        except TypeError as err:  # a loss without per-term outputs
            log.warning("gradient probe skipped: %s", err)
        for key, value in positive_pairs(model, images, *targets, assigner=loss_fn.assigner).items():
            pairs[key].append(value)
    if not used:
        raise ConfigError(f"{data}: no labelled images in the first {batches} batches of split {split!r}; "
                          "diagnose needs objects to measure")
    probe = {group: _summary(values) for group, values in probes.items()}
    arrays = {k: torch.cat(v).numpy() if v else np.zeros(0) for k, v in pairs.items()}
    report = alignment_report(arrays, list(model.names or []), getattr(loss_fn.assigner, "alpha", 0.5),
                              getattr(loss_fn.assigner, "beta", 6.0))
    result = {"weights": str(weights), "data": str(data), "split": split, "batches": used, "imgsz": imgsz,
              "probe": probe, "alignment": report.to_dict()}
    if save_dir is not None:
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        plot_alignment(report, list(model.names or []), save_dir / "alignment.png")
        write_atomic(save_dir / "diagnose.json", json.dumps(json_safe(result), indent=2).encode())
        result["save_dir"] = str(save_dir)
    result["report"] = report
    return result


def _summary(values: list[dict[str, float]]) -> dict[str, float]:
    cos = [v["cos"] for v in values if not math.isnan(v["cos"])]
    ratio = [v["ratio"] for v in values if not math.isnan(v["ratio"])]
    return {"cos": statistics.mean(cos) if cos else math.nan,
            "cos_std": statistics.stdev(cos) if len(cos) > 1 else 0.0 if cos else math.nan,
            "ratio": statistics.mean(ratio) if ratio else math.nan, "batches": len(values)}


