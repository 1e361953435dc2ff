"""Training settings: one typed object with the YOLOv8 recipe's defaults.

Unknown keys and wrong types are one-line errors naming the key. Every augmentation
parameter lives in `augment` (see `detforge.data.AugmentConfig`); the assigner and the loss are
registered parts picked by `assigner: {type: ...}` and `loss: {type: ...}` sub-configs, whose
other keys are checked against the registered class's signature (engine/recipe.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detforge.data import AugmentConfig
from detforge.errors import ConfigError
from detforge.fsutil import printable
from detforge.limits import read_yaml, short

log = logging.getLogger(__name__)

# The flat keys of the first release → (sub-config, key). They still work, with one notice.
DEPRECATED_KEYS: dict[str, tuple[str, str]] = {
    "box": ("loss", "box"),
    "dfl": ("loss", "dfl"),
    "cls": ("loss", "cls"),
    "obj": ("loss", "obj"),
    "class_weights": ("loss", "class_weights"),
    "tal_topk": ("assigner", "topk"),
    "tal_alpha": ("assigner", "alpha"),
    "tal_beta": ("assigner", "beta"),
}
LR_BRANCHES = ("box", "cls", "obj", "backbone")  # lr_mult keys (engine/optim.py)
_noticed: set[str] = set()  # deprecated keys already reported in this process


class PartSpec(BaseModel):
    """A registered training part: `type` names it (None: the model's recipe or the default), every
    other key is a keyword argument of its class."""

    model_config = ConfigDict(extra="allow")
    type: str | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def as_dict(self) -> dict[str, Any]:
        """The keys as given: `type` only when set."""
        return ({"type": self.type} if self.type is not None else {}) | self.kwargs


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = "yolov8n"                 # packaged name, model YAML, or .safetensors to fine-tune from
    data: str = ""                         # data.yaml, COCO json or VOC folder
    epochs: int = Field(100, ge=1)
    imgsz: int = Field(640, ge=32)
    batch: int = Field(16, ge=1)           # per process
    workers: int = Field(2, ge=0)
    device: str = "auto"                   # auto | cpu | cuda | cuda:N
    name: str = "exp"
    project: str = "runs/train"
    exist_ok: bool = False
    weights: str | None = None             # initial weights: detforge .safetensors or a converted checkpoint
    freeze: Literal["none", "backbone", "backbone+neck"] = "none"
    overrides: list[str] = []              # model config overrides, KEY=VALUE
    aux: bool = False                      # train with an auxiliary head (the model's aux: part, else the default one)

    optimizer: Literal["auto", "sgd", "adamw"] = "auto"
    lr0: float = Field(0.01, gt=0)
    lrf: float = Field(0.01, gt=0)
    cos_lr: bool = False
    momentum: float = 0.937
    weight_decay: float = 0.0005
    warmup_epochs: float = 3.0
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    nbs: int = Field(64, ge=1)             # nominal batch: gradients accumulate up to it
    grad_clip: float = 10.0
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0

    assigner: PartSpec = PartSpec()        # {type: tal, topk: 10, alpha: 0.5, beta: 6.0} unless the model's recipe says
    loss: PartSpec = PartSpec()            # {type: yolov8, box: 7.5, cls: 0.5, dfl: 1.5, obj: 1.0} likewise
    max_nonfinite: int = Field(10, ge=1)   # consecutive non-finite losses before the run stops

    augment: AugmentConfig = AugmentConfig()

    val_interval: int = Field(1, ge=1)     # validate every k epochs (and always after the last)
    val_conf: float = 0.001
    val_iou: float = 0.7
    max_det: int = 300
    patience: int = Field(50, ge=0)        # epochs without improvement before stopping; 0 = never
    seed: int = 0
    deterministic: bool = False
    amp: bool = True                       # mixed precision (see amp_dtype); false: float32 everywhere
    amp_dtype: Literal["auto", "bf16", "fp16"] = "auto"  # auto: fp16 on CUDA, bf16 on a CPU that has it natively
    channels_last: bool | Literal["auto"] = "auto"  # auto: on for CPU training (oneDNN's native layout), off on CUDA
    sync_bn: bool = False
    plots: bool = True
    logger: Literal["none", "tensorboard"] = "none"  # experiment tracker fed through the callbacks
    probe_every: int = Field(0, ge=0, description="gradient-conflict probe every k steps (box vs class "
                             "gradients on shared layers, engine/probe.py); 0 = off")
    lr_mult: dict[str, float] = Field({}, description="per-branch learning-rate multipliers {box, cls, obj, "
                                      "backbone} (engine/optim.py), e.g. lr_mult.cls=2")

    @field_validator("channels_last", mode="before")
    @classmethod
    def _check_channels_last(cls, value: object) -> object:
        if value != "auto" and not isinstance(value, bool):  # one message for both forms, not one per form
            raise ConfigError(f"channels_last: use true, false or auto (got {short(value, 60)})")
        return value

    @field_validator("lr_mult")
    @classmethod
    def _check_lr_mult(cls, value: dict[str, float]) -> dict[str, float]:
        for key, factor in value.items():  # a mapping, not a section: `box` alone stays the (deprecated) loss gain
            if key not in LR_BRANCHES:
                raise ConfigError(f"lr_mult.{key}: unknown branch; use {', '.join(LR_BRANCHES)}")
            if not factor >= 0:
                raise ConfigError(f"lr_mult.{key}: a multiplier must be >= 0 (got {factor})")
        return value

    @model_validator(mode="before")
    @classmethod
    def _map_deprecated(cls, data: Any) -> Any:
        return map_deprecated_keys(data) if isinstance(data, dict) else data


def map_deprecated_keys(values: dict[str, Any]) -> dict[str, Any]:
    """Move the flat `box`/`tal_topk`/... keys into `loss:`/`assigner:`; a key given both ways is an error."""
    flat = [key for key in values if key in DEPRECATED_KEYS]
    if not flat:
        return values
    values = dict(values)
    for key in flat:
        section, name = DEPRECATED_KEYS[key]
        part = values.get(section)
        part = dict(part.as_dict() if isinstance(part, PartSpec) else part or {})
        if name in part:
            raise ConfigError(f"{key} and {section}.{name} are both set; keep only {section}.{name}")
        part[name] = values.pop(key)
        values[section] = part
    new = [key for key in flat if key not in _noticed]
    if new:
        _noticed.update(new)
        log.warning("training settings %s are deprecated; use %s", ", ".join(new),
                    ", ".join(".".join(DEPRECATED_KEYS[key]) for key in new))
    return values


def make_train_config(values: dict[str, Any], source: str = "arguments") -> TrainConfig:
    """Validate training settings; one-line ConfigError naming the offending key (with the closest known
    keys). Flat names of nested settings (`mosaic` for `augment.mosaic`) are accepted where unambiguous."""
    from detforge.engine.settings import apply_aliases, suggestions

    try:
        config = TrainConfig.model_validate(apply_aliases(values, TrainConfig))
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except ValidationError as err:
        first = err.errors()[0]
        key = printable(".".join(map(str, first["loc"])))  # keys come from files: one line whatever they hold
        if first["type"] == "extra_forbidden":
            close = suggestions(key, TrainConfig)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise ConfigError(f"{source}: {key}: unknown training setting; {hint}"
                              "`detforge train --help-settings` lists them all") from None
        raise ConfigError(f"{source}: {key}: {first['msg'].lower()} (got {short(first.get('input'), 60)})") from None
    from detforge.engine.recipe import check_part  # the parts' registries sit above this module

    for kind in ("assigner", "loss"):
        part = getattr(config, kind)
        if part.type is not None:  # without a type the model's recipe decides; checked when it is known
            check_part(kind, part.as_dict(), source)
    return config


def load_train_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: training config not found")
    data = read_yaml(path, ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a training config must be a mapping of settings")
    return data
