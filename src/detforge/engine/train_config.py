"""Training settings: one typed object with the YOLOv8 recipe's defaults.

Unknown keys and wrong types are one-line errors naming the key. Every augmentation
parameter lives in `augment` (see `detforge.data.AugmentConfig`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from detforge.data import AugmentConfig
from detforge.errors import ConfigError


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

    box: float = 7.5
    dfl: float = 1.5
    cls: float = 0.5
    obj: float = 1.0
    class_weights: list[float] | None = None
    tal_topk: int = 10
    tal_alpha: float = 0.5
    tal_beta: float = 6.0
    max_nonfinite: int = Field(10, ge=1)   # consecutive non-finite losses before the run stops

    augment: AugmentConfig = AugmentConfig()

    val_interval: int = Field(1, ge=1)     # validate every k epochs (and always after the last)
    val_conf: float = 0.001
    val_iou: float = 0.7
    max_det: int = 300
    patience: int = Field(50, ge=0)        # epochs without improvement before stopping; 0 = never
    seed: int = 0
    deterministic: bool = False
    amp: bool = True                       # mixed precision on CUDA (ignored on CPU)
    amp_dtype: Literal["bf16", "fp16"] = "fp16"
    channels_last: bool = False
    sync_bn: bool = False
    plots: bool = True


def make_train_config(values: dict[str, Any], source: str = "arguments") -> TrainConfig:
    """Validate training settings; one-line ConfigError naming the offending key."""
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(map(str, first["loc"]))
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"{source}: {key}: unknown training setting; see `detforge train --help`") from None
        raise ConfigError(f"{source}: {key}: {first['msg'].lower()} (got {first.get('input')!r})") from None


def load_train_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: training config not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a training config must be a mapping of settings")
    return data
