"""The training recipe: which assigner and loss train a model, and with which hyper-parameters.

Three layers, lowest first: the `TrainConfig` defaults (the YOLOv8 recipe), the model's own
recipe (a `train:` block in its YAML, carried in `ModelConfig.train` and so in its weights file),
and the user's settings. A user setting always wins; for the `assigner:`/`loss:` sub-configs the
user's keys are merged over the recipe's when both name the same `type` (or the user names none),
and replace them when the user picks another type.

Assigners are built `ASSIGNERS.get(type)(**keys)`, losses `LOSSES.get(type)(model=<Detector>,
assigner=<assigner>, **keys)`; keys are checked against the class signature first, so a typo is a
one-line error naming the key and the accepted ones.
"""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from torch import nn

import detforge.assign
import detforge.losses  # noqa: F401  (registers the packaged losses)
from detforge.engine.train_config import TrainConfig, make_train_config
from detforge.errors import ConfigError
from detforge.registry import ASSIGNERS, LOSSES, Registry

DEFAULT_TYPES = {"assigner": "tal", "loss": "yolov8"}
REGISTRIES: dict[str, Registry] = {"assigner": ASSIGNERS, "loss": LOSSES}
# Constructor arguments the trainer passes itself; a config may not set them.
INJECTED = {"assigner": set(), "loss": {"model", "assigner"}}
# Settings about the run rather than the recipe: a model's `train:` block may not set them.
NOT_RECIPE = {"model", "data", "device", "name", "project", "exist_ok", "workers", "weights", "freeze", "overrides",
              "seed", "deterministic", "plots", "logger", "sync_bn", "aux"}


def _arguments(kind: str, cls: type) -> type[BaseModel]:
    """A pydantic model of the constructor's keyword arguments, minus the injected ones."""
    try:
        params = inspect.signature(cls, eval_str=True).parameters
    except NameError:  # an annotation only importable under TYPE_CHECKING: check the names, not the types
        params = inspect.signature(cls).parameters
    fields: dict[str, Any] = {}
    for name, param in params.items():
        if name == "self" or name in INJECTED[kind] or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = Any if param.annotation is inspect.Parameter.empty or isinstance(param.annotation, str) \
            else param.annotation
        fields[name] = (annotation, ... if param.default is inspect.Parameter.empty else param.default)
    extra = "allow" if any(p.kind == p.VAR_KEYWORD for p in params.values()) else "forbid"
    return create_model(f"{cls.__name__}Args", __config__=ConfigDict(extra=extra, strict=True,
                                                                      arbitrary_types_allowed=True), **fields)


def check_part(kind: str, keys: dict[str, Any], source: str, prefix: str = "") -> None:
    """Validate one `assigner:`/`loss:` sub-config against its registered class; one-line ConfigError.

    prefix: put before the key in messages (`train.` for a model's recipe).
    """
    type_name = keys.get("type") or DEFAULT_TYPES[kind]
    registry = REGISTRIES[kind]
    if type_name not in registry:
        raise ConfigError(f"{source}: {prefix}{kind}.type: unknown {kind} {type_name!r}; registered: "
                          f"{', '.join(registry.names())}")
    args = _arguments(kind, registry.get(type_name))
    try:
        args.model_validate({k: v for k, v in keys.items() if k != "type"})
    except ValidationError as err:
        first = err.errors()[0]
        key = prefix + ".".join([kind, *map(str, first["loc"])])
        if first["type"] == "extra_forbidden":
            accepted = ", ".join(["type", *args.model_fields])
            raise ConfigError(f"{source}: {key}: unknown key for {kind} {type_name!r}; accepted: {accepted}") from None
        if first["type"] == "missing":
            raise ConfigError(f"{source}: {key}: required key of {kind} {type_name!r} is missing") from None
        raise ConfigError(f"{source}: {key}: {first['msg'].lower()} (got {first.get('input')!r})") from None


def _explicit(config: TrainConfig) -> dict[str, Any]:
    """The settings the user gave, as given (sub-configs partial, augment only its set keys)."""
    out: dict[str, Any] = {}
    for key in config.model_fields_set:
        value = getattr(config, key)
        if key in ("assigner", "loss"):
            out[key] = value.as_dict()
        elif key == "augment":
            out[key] = value.model_dump(include=value.model_fields_set)
        else:
            out[key] = value
    return out


def _merge_part(kind: str, recipe: dict[str, Any] | None, user: dict[str, Any] | None) -> dict[str, Any]:
    base = dict(recipe or {"type": DEFAULT_TYPES[kind]})
    base.setdefault("type", DEFAULT_TYPES[kind])
    if user is None:
        return base
    if user.get("type") not in (None, base["type"]):
        return dict(user)  # another part: the recipe's keys belong to the one it replaces
    return {**base, **user}


def resolve_recipe(config: TrainConfig, recipe: dict[str, Any] | None, source: str = "model") -> TrainConfig:
    """Settings with the model's recipe under the user's ones and every sub-config's `type` filled.

    recipe: the model's `train:` mapping (None: none); source: its file, for error messages.
    Idempotent, so a resumed run's saved settings (all explicit) come back unchanged.
    """
    if recipe is not None and not isinstance(recipe, dict):
        raise ConfigError(f"{source}: train: the recipe must be a mapping of training settings")
    recipe = dict(recipe or {})
    for key in recipe:
        if key in NOT_RECIPE:
            raise ConfigError(
                f"{source}: train.{key}: a run setting, not part of a model's recipe; set it when training")
    try:
        recipe_config = make_train_config(recipe, f"{source}: train")  # also maps deprecated keys
    except ConfigError as err:
        raise ConfigError(str(err).replace(": train: ", ": train.", 1)) from None
    recipe = _explicit(recipe_config)
    values = _explicit(config)
    for kind in ("assigner", "loss"):
        if kind in recipe:
            check_part(kind, recipe[kind], source, prefix="train.")
        values[kind] = _merge_part(kind, recipe.pop(kind, None), values.get(kind))
    if "augment" in recipe:
        values["augment"] = {**recipe.pop("augment"), **values.get("augment", {})}
    for key, value in recipe.items():
        values.setdefault(key, value)
    resolved = make_train_config(values, "training settings")
    for kind in ("assigner", "loss"):  # the user's untyped keys meet their part's type only here
        check_part(kind, getattr(resolved, kind).as_dict(), "training settings")
    return resolved


def build_assigner(spec: dict[str, Any]) -> nn.Module:
    """`ASSIGNERS.get(type)(**keys)`."""
    keys = dict(spec)
    return ASSIGNERS.get(keys.pop("type", None) or DEFAULT_TYPES["assigner"])(**keys)


def build_loss(spec: dict[str, Any], model: nn.Module, assigner: nn.Module) -> nn.Module:
    """`LOSSES.get(type)(model=model, assigner=assigner, **keys)`; model is the unwrapped Detector."""
    keys = dict(spec)
    return LOSSES.get(keys.pop("type", None) or DEFAULT_TYPES["loss"])(model=model, assigner=assigner, **keys)
