"""Training settings a user can discover: every key with its default and meaning, suggestions for a
mistyped key, and the flat Ultralytics-style names (`mosaic`, `fliplr`, `close_mosaic`, `hsv_h`...)
accepted where they name exactly one nested setting.

Everything here is read from the pydantic models themselves (field names, defaults, nested
sections), so a setting added to `TrainConfig` or a section of it shows up without edits here;
its one-line meaning comes from the field's `description`, else from `MEANINGS` below.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from detforge.errors import ConfigError
from detforge.limits import short

log = logging.getLogger(__name__)

MEANINGS = {
    "model": "packaged name (yolov8n...), model YAML, or weights (.safetensors/.pt) whose architecture is trained",
    "data": "data.yaml (YOLO), COCO instances json, or VOC folder",
    "epochs": "passes over the training split",
    "imgsz": "training image size (long side, pixels); weights remember it for val/predict",
    "batch": "images per batch per process",
    "workers": "data-loading processes per training process",
    "device": "auto, cpu, cuda or cuda:N",
    "name": "run folder name under project (a number is added if it exists)",
    "project": "parent folder of runs",
    "exist_ok": "reuse the run folder if it exists",
    "weights": "initial weights copied where names and shapes match (.safetensors or Ultralytics .pt)",
    "freeze": "none, backbone or backbone+neck: parts kept fixed",
    "overrides": "model config overrides KEY=VALUE (what --set head.reg_max=8 fills)",
    "aux": "train with an auxiliary head and coarse-to-fine lead-guided labels (removed on deploy)",
    "optimizer": "auto, sgd or adamw (auto: AdamW for short runs, SGD for long ones)",
    "lr0": "initial learning rate",
    "lrf": "final learning rate as a fraction of lr0",
    "cos_lr": "cosine instead of linear learning-rate decay",
    "momentum": "SGD momentum / Adam beta1",
    "weight_decay": "weight decay on conv/linear weights (not BN, not biases)",
    "warmup_epochs": "warmup length in epochs (at least 100 iterations)",
    "warmup_momentum": "momentum at the start of warmup",
    "warmup_bias_lr": "bias learning rate at the start of warmup",
    "nbs": "nominal batch size: gradients accumulate up to it",
    "grad_clip": "gradient-norm clipping",
    "ema_decay": "EMA decay of the weights",
    "ema_tau": "EMA ramp: decay * (1 - exp(-updates / tau))",
    "assigner.type": "which assigner picks the positive anchors (registered: {names}); a model's recipe may pick",
    "assigner.topk": "positive anchors kept per object",
    "assigner.alpha": "exponent of the class score in the alignment metric",
    "assigner.beta": "exponent of the IoU in the alignment metric",
    "assigner.eps": "guards divisions and the inside-box test",
    "assigner.overlap": "IoU flavour of the alignment metric (ciou as in YOLOv8)",
    "assigner.min_side": ("objects narrower than this (px) are widened for the inside-box test "
                          "(none: 2nd stride, 0: off)"),
    "loss.type": "which loss trains the model (registered: {names}); a model's recipe may pick",
    "loss.num_classes": "classes (none: from the model's head)",
    "loss.reg_max": "DFL bins (none: from the model's head)",
    "loss.box": "box (CIoU) loss gain",
    "loss.dfl": "distribution focal loss gain",
    "loss.cls": "classification (BCE) loss gain",
    "loss.obj": "objectness loss gain (heads with an objectness branch)",
    "loss.class_weights": "per-class factors on the classification loss (imbalanced data)",
    "loss.aux_weight": "weight of the auxiliary head's loss (models with one; 0 = plain loss)",
    "loss.aux_topk": "auxiliary head: positives per object (coarse labels)",
    "loss.aux_margin": "auxiliary head: candidates within this many strides of the box",
    "loss.lead_guided": "auxiliary labels decided by the lead head's predictions",
    "loss.upper_bound": "cap the auxiliary (coarse) targets below the lead (fine) ones",
    "logger": "experiment tracker: none or tensorboard",
    "max_nonfinite": "consecutive non-finite losses before the run stops",
    "val_interval": "validate every k epochs (and always after the last)",
    "val_conf": "confidence threshold when validating",
    "val_iou": "NMS IoU threshold when validating",
    "max_det": "boxes kept per image when validating",
    "patience": "stop after this many epochs without improvement (0 = never)",
    "seed": "random seed",
    "deterministic": "reproducible kernels (slower)",
    "amp": "mixed precision (autocast to amp_dtype); false trains in float32",
    "amp_dtype": "auto: fp16 with a grad scaler on CUDA, bf16 on a CPU with native bfloat16 (AVX512-BF16/AMX; "
                 "~2x faster steps), float32 on other CPUs; or force bf16 / fp16 (fp16 is CUDA only)",
    "channels_last": "channels-last memory format; auto: on for CPU training (~13% faster float32 steps at 320 px), "
                     "off on CUDA",
    "sync_bn": "SyncBatchNorm under DDP (CUDA)",
    "plots": "write results.png, train_batch0.png and the validation plots",
    "augment.mosaic": "probability of a 4-image mosaic",
    "augment.mixup": "probability of mixing in a second image",
    "augment.hsv_h": "hue jitter (fraction of the hue circle)",
    "augment.hsv_s": "saturation jitter (fraction)",
    "augment.hsv_v": "value (brightness) jitter (fraction)",
    "augment.degrees": "rotation range (+- degrees)",
    "augment.translate": "translation range (+- fraction of the image)",
    "augment.scale": "zoom range (1 +- scale)",
    "augment.shear": "shear range (+- degrees)",
    "augment.perspective": "perspective distortion",
    "augment.fliplr": "probability of a left-right flip",
    "augment.flipud": "probability of an up-down flip",
    "augment.close_mosaic": "mosaic and mixup off for this many final epochs",
}


@dataclass(frozen=True)
class Setting:
    key: str        # dotted: `epochs`, `augment.mosaic`
    default: Any
    meaning: str
    part: bool = False  # a key of a registered part (`assigner:`/`loss:`): depends on the part's type


def _section(annotation) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def settings(model: type[BaseModel], prefix: str = "") -> list[Setting]:
    """Every setting of `model`, nested sections flattened to dotted keys, in declaration order."""
    out: list[Setting] = []
    for name, field in model.model_fields.items():
        key = prefix + name
        section = _section(field.annotation)
        if section is not None and "type" in section.model_fields and section.model_config.get("extra") == "allow":
            out += _part_settings(key)  # `assigner:`/`loss:`: the keys of the default part's class
            continue
        if section is not None:
            out += settings(section, key + ".")
            continue
        default = field.get_default(call_default_factory=True)
        out.append(Setting(key, default, field.description or MEANINGS.get(key, "")))
    return out


def _part_settings(kind: str) -> list[Setting]:
    """`kind.type` and the keyword arguments (with defaults) of the default registered part of `kind`."""
    from detforge.engine.recipe import DEFAULT_TYPES, REGISTRIES, _arguments

    if kind not in DEFAULT_TYPES:
        return [Setting(f"{kind}.type", None, MEANINGS.get(f"{kind}.type", ""), part=True)]
    registry, type_name = REGISTRIES[kind], DEFAULT_TYPES[kind]
    names = ", ".join(registry.names())
    out = [Setting(f"{kind}.type", type_name, MEANINGS.get(f"{kind}.type", "").format(names=names), part=True)]
    for name, field in _arguments(kind, registry.get(type_name)).model_fields.items():
        key = f"{kind}.{name}"
        out.append(Setting(key, field.get_default(), MEANINGS.get(key, f"argument of {kind} {type_name!r}"), part=True))
    return out


def flat_aliases(model: type[BaseModel]) -> dict[str, str]:
    """Leaf name → dotted key, for nested settings whose leaf name is unique and not a top-level setting.

    Keys of registered parts (`assigner.topk`, `loss.box`) are left out: what they mean depends on the
    part's type (and the first release's flat `box`/`tal_*` keys have their own deprecation path)."""
    every = settings(model)
    keys = [s.key for s in every if not s.part]
    top = {k for k in keys if "." not in k}
    leaves: dict[str, list[str]] = {}
    for key in keys:
        if "." in key:
            leaves.setdefault(key.rsplit(".", 1)[1], []).append(key)
    return {leaf: found[0] for leaf, found in leaves.items() if len(found) == 1 and leaf not in top}


def apply_aliases(values: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """Move flat keys such as `mosaic` to their section (`augment.mosaic`); other keys are left as given."""
    aliases = flat_aliases(model)
    moved = [k for k in values if k in aliases]
    if not moved:
        return values
    values = dict(values)
    for leaf in moved:
        *parents, last = aliases[leaf].split(".")
        node = values
        for part in parents:
            child = node.get(part)
            if not isinstance(child, (BaseModel, dict, type(None))):
                raise ConfigError(f"{part}: is {short(child)}, not a section, so {leaf} cannot go in it; "
                                  f"write {part}: {{{aliases[leaf].split('.')[-1]}: ...}}")
            child = child.model_dump() if isinstance(child, BaseModel) else dict(child or {})
            node[part] = child
            node = child
        node[last] = values.pop(leaf)
        log.debug("setting %s read as %s", leaf, aliases[leaf])
    return values


def suggestions(key: str, model: type[BaseModel], n: int = 3) -> list[str]:
    """The dotted settings closest to a mistyped `key` (compared whole and by its last part)."""
    keys = [s.key for s in settings(model)]
    by_leaf: dict[str, str] = {}
    for k in keys:
        by_leaf.setdefault(k.rsplit(".", 1)[-1], k)
    found = difflib.get_close_matches(key, keys, n=n, cutoff=0.6)
    found += [by_leaf[m] for m in difflib.get_close_matches(key.rsplit(".", 1)[-1], list(by_leaf), n=n, cutoff=0.6)]
    return list(dict.fromkeys(found))[:n]


def _shown(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    text = "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return text if text else '""'


def settings_table(model: type[BaseModel]) -> str:
    """One line per setting: dotted key, default, meaning (what `detforge train --help-settings` prints)."""
    rows = [(s.key, _shown(s.default), s.meaning) for s in settings(model)]
    width_key = max(len(r[0]) for r in rows)
    width_default = min(max(len(r[1]) for r in rows), 24)
    lines = [f"{'setting':<{width_key}}  {'default':<{width_default}}  meaning"]
    lines += [f"{k:<{width_key}}  {d:<{width_default}}  {m}" for k, d, m in rows]
    aliases = ", ".join(f"{leaf}={key}" for leaf, key in flat_aliases(model).items())
    lines += ["", "Give them with --set KEY=VALUE, in a --cfg YAML, or as flags where listed in --help.",
              f"Flat names accepted for nested settings: {aliases}."]
    return "\n".join(lines)
