"""Build a `Detector` from a validated `ModelConfig`: each part gets its own arguments plus the
channels and strides declared by the part before it."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detforge.config import INJECTED, ModelConfig, load_config, parse_override, part_defaults
from detforge.errors import ConfigError
from detforge.limits import MAX_PARAMS, short
from detforge.models.aux import default_aux
from detforge.models.detector import Detector
from detforge.models.scaling import Scaling
from detforge.registry import PARTS


def _plain(value: Any) -> Any:
    """Lists and tuples compare as lists (YAML gives lists, parts may declare tuples)."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def build_part(kind: str, config: ModelConfig, scaling: Scaling, **wiring: Any) -> nn.Module:
    part = getattr(config, kind)
    cls = PARTS[kind].get(part.type)
    kwargs = part.kwargs
    for key, value in wiring.items():
        if key in kwargs and _plain(kwargs[key]) != _plain(value):
            raise ConfigError(
                f"{config.source}: {kind}.{key} is {kwargs[key]} but the previous part gives {_plain(value)}; "
                f"remove the key or make the parts agree"
            )
    kwargs.update({k: v for k, v in wiring.items() if k in INJECTED[kind]})
    if "scaling" in inspect.signature(cls).parameters:
        kwargs["scaling"] = scaling
    try:
        return cls(**kwargs)
    except NotImplementedError:  # e.g. a meta-device build reading tensor data: not the config's fault
        raise
    except (ValueError, TypeError, RuntimeError, ArithmeticError, IndexError, KeyError, AssertionError) as err:
        # well-typed but unworkable arguments (a negative width, a ratio that leaves no channels) are the
        # config's mistake, reported in one line like every other config error
        raise ConfigError(
            f"{config.source}: {kind} {part.type!r} cannot be built from these arguments "
            f"({err.__class__.__name__}: {short(str(err), 100)}); check the {kind} keys"
        ) from None


def build_model(config: ModelConfig) -> Detector:
    scaling = config.scaling()
    backbone = build_part("backbone", config, scaling)
    neck = build_part("neck", config, scaling, in_channels=backbone.out_channels)
    if len(neck.out_channels) != len(backbone.strides):
        raise ConfigError(
            f"{config.source}: neck {config.neck.type!r} returns {len(neck.out_channels)} levels but the backbone "
            f"gives {len(backbone.strides)}; a neck must keep the number of levels"
        )
    head = build_part("head", config, scaling, in_channels=neck.out_channels, strides=backbone.strides)
    model = Detector(backbone, neck, head, config, config.names)
    if config.aux is not None:  # training-only auxiliary heads on the neck's aux maps (default: its outputs)
        wiring = {"in_channels": getattr(neck, "aux_channels", neck.out_channels), "strides": backbone.strides,
                  "num_classes": head.num_classes}
        if isinstance(getattr(head, "anchors", None), torch.Tensor):  # anchor-free heads have an anchors() method
            # from the config, not the buffer: a model built on the meta device has no values to read
            wiring["anchors"] = config.head.kwargs.get("anchors", part_defaults("head", config.head.type)["anchors"])
        if hasattr(head, "reg_max") and "reg_max" in inspect.signature(PARTS["aux"].get(config.aux.type)).parameters:
            # an anchor-free aux head decodes like the lead: the same DFL bins
            wiring["reg_max"] = head.reg_max
        model.aux = build_part("aux", config, scaling, **wiring)
    _refuse_empty_layers(model, config)
    return model


def _refuse_empty_layers(model: Detector, config: ModelConfig) -> None:
    """A layer with no channels (a 0 in a channel list, reg_max 0) builds but fails deep inside torch
    on the first forward; name it now."""
    for name, parameter in model.named_parameters():
        if parameter.numel() == 0:
            raise ConfigError(
                f"{config.source}: {name.rsplit('.', 1)[0]} has a zero-sized {list(parameter.shape)} weight; "
                "every channel count, width and reg_max must be at least 1"
            )


def create_model(
    name_or_yaml: str | Path,
    num_classes: int | None = None,
    scale: str | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    names: list[str] | None = None,
    aux: bool = False,
) -> Detector:
    """Build a detector from a packaged name (`yolov8n`, `yolov8s-p2`, ...) or a YAML file.

    `num_classes` sets `head.num_classes` (default: len(names) or the config's);
    `overrides` maps dotted keys to values, or is a list of `KEY=VALUE` strings as `--set` takes.
    `aux`: give a model without an `aux:` part the default one (`models/aux.py`; training only).
    """
    if isinstance(overrides, list):
        overrides = dict(parse_override(text) for text in overrides)
    overrides = dict(overrides or {})
    if names is not None:
        overrides["names"] = list(names)
        num_classes = num_classes or len(names)
    if num_classes is not None:
        overrides["head.num_classes"] = num_classes
    config = load_config(name_or_yaml, scale, overrides)
    if aux and config.aux is None:
        config = load_config(name_or_yaml, scale, {**overrides, "aux": default_aux(config)})
    check_size(config)
    return build_model(config)


def check_size(config: ModelConfig) -> None:
    """Refuse a config whose model would hold more than MAX_PARAMS parameters, counted on the meta device
    (nothing allocated) before the real build allocates them."""
    try:
        with torch.device("meta"):
            params = sum(p.numel() for p in build_model(config).parameters())
    except NotImplementedError:  # a part that computes with tensor data while built cannot be measured so
        return
    if params > MAX_PARAMS:
        raise ConfigError(f"{config.source}: the model would have {params:,} parameters, over the "
                          f"{MAX_PARAMS:,} limit; check its widths and depths")
