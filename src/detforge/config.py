"""Model configs: YAML → typed, validated `ModelConfig`.

A model YAML names each part by its registered name plus keyword arguments, and lists named
scales (depth, width, max_channels multipliers). Validation happens here, before anything is
built, so that every mistake — unknown part, unknown key, wrong type — is one line naming the
file, the key and the accepted values.
"""

from __future__ import annotations

import inspect
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model

from detforge.errors import ConfigError
from detforge.limits import (
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_SCALE,
    check_classes,
    check_sizes,
    load_yaml,
    read_yaml,
    short,
)
from detforge.models.scaling import Scaling
from detforge.registry import PARTS

# Arguments the builder passes to a part itself (from the previous part); a config may state
# them only to assert the wiring, and a mismatch is an error.
INJECTED = {
    "backbone": set(), "neck": {"in_channels"}, "head": {"in_channels", "strides"},
    # the auxiliary (training-only) heads read the neck's aux maps and share the lead head's classes/anchors
    "aux": {"in_channels", "strides", "num_classes", "anchors", "reg_max"},
}
MODEL_NAME = re.compile(r"^(?P<family>[a-z]+\d+)(?P<scale>[nsmlx])(?P<variant>-[\w-]+)?$")


class ScaleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    # bounded: a shared config must not make the builder allocate or loop without end (limits.py)
    depth: float = Field(gt=0, le=MAX_SCALE)
    width: float = Field(gt=0, le=MAX_SCALE)
    max_channels: int = Field(1024, ge=1, le=MAX_CHANNELS)


class PartConfig(BaseModel):
    """`type` is the registered name; every other key is a keyword argument of that class."""

    model_config = ConfigDict(extra="allow")
    type: str

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "custom"
    scales: dict[str, ScaleConfig] = {}
    scale: str | None = None
    backbone: PartConfig
    neck: PartConfig
    head: PartConfig
    aux: PartConfig | None = None  # optional auxiliary heads (a registered head type), training only
    names: list[str] | None = None
    # The model's default training recipe (assigner:, loss:, hyper-parameters); user settings win.
    # Checked when training starts (detforge.engine.recipe), where the training settings live.
    train: dict[str, Any] | None = None
    _source: str = PrivateAttr("<config>")

    @property
    def source(self) -> str:
        """The file the config came from, for error messages."""
        return self._source

    def scaling(self) -> Scaling:
        if self.scale is None:
            return Scaling()
        s = self.scales[self.scale]
        return Scaling(s.depth, s.width, s.max_channels)

    @property
    def num_classes(self) -> int:
        return self.head.kwargs.get("num_classes", part_defaults("head", self.head.type).get("num_classes", 80))


def part_defaults(kind: str, type_name: str) -> dict[str, Any]:
    params = inspect.signature(PARTS[kind].get(type_name)).parameters
    return {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}


def _argument_model(kind: str, cls: type) -> type[BaseModel]:
    """A pydantic model of the part's constructor arguments, from its signature."""
    fields = {}
    for name, param in inspect.signature(cls, eval_str=True).parameters.items():
        if name in ("self", "scaling") or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
        default = ... if param.default is inspect.Parameter.empty and name not in INJECTED[kind] else param.default
        if default is inspect.Parameter.empty:
            default = None
        fields[name] = (annotation, default)
    return create_model(f"{cls.__name__}Args", __config__=ConfigDict(extra="forbid", strict=True), **fields)


def _format_error(source: str, prefix: str, err: ValidationError, accepted: list[str]) -> ConfigError:
    first = err.errors()[0]
    key = ".".join([prefix, *map(str, first["loc"])]).strip(".")
    if first["type"] == "extra_forbidden":
        return ConfigError(f"{source}: {key}: unknown key; accepted: {', '.join(accepted)}")
    if first["type"] == "missing":
        return ConfigError(f"{source}: {key}: required key is missing")
    return ConfigError(f"{source}: {key}: {first['msg'].lower()} (got {short(first.get('input'), 60)})")


def validate_config(data: dict[str, Any], source: str = "<config>") -> ModelConfig:
    """Check the whole config (top level, scales, each part's arguments); raise one-line ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a model config must be a mapping with backbone, neck and head")
    try:
        config = ModelConfig.model_validate(data)
    except ValidationError as err:
        raise _format_error(source, "", err, list(ModelConfig.model_fields)) from None
    if config.scale is not None and config.scale not in config.scales:
        raise ConfigError(f"{source}: scale: unknown scale {short(config.scale)}; accepted: {', '.join(config.scales)}")
    for kind in ("backbone", "neck", "head", "aux"):
        part = getattr(config, kind)
        if part is None:
            continue
        if part.type not in PARTS[kind]:
            raise ConfigError(
                f"{source}: {kind}.type: unknown {kind} {part.type!r}; registered: {', '.join(PARTS[kind].names())}"
            )
        cls = PARTS[kind].get(part.type)
        args = _argument_model(kind, cls)
        try:
            args.model_validate(part.kwargs)
        except ValidationError as err:
            accepted = [n for n in args.model_fields if n not in INJECTED[kind]] + ["type"]
            raise _format_error(source, kind, err, accepted) from None
        unbounded = getattr(cls, "unbounded_args", ())  # counts that size nothing (a head's target_params)
        for key, value in part.kwargs.items():
            if key not in unbounded:
                check_sizes(value, f"{source}: {kind}.{key}", ConfigError)
    check_classes(config.num_classes, source, "head.num_classes", ConfigError)
    if config.names is not None and len(config.names) > MAX_CLASSES:
        raise ConfigError(f"{source}: names: {len(config.names):,} names, over the {MAX_CLASSES:,}-class limit")
    config._source = source
    return config


def set_by_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Apply one override such as `head.num_classes=3` to a raw config mapping."""
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        if not isinstance(node.get(key), dict):
            raise ConfigError(f"--set {dotted}: {key!r} is not a section of the config")
        node = node[key]
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`'head.num_classes=3'` → `('head.num_classes', 3)`; the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {short(text, 60)}: expected KEY=VALUE, e.g. head.num_classes=3")
    return key.strip(), load_yaml(value, f"--set {short(text, 60)}")


def packaged_configs() -> dict[str, Path]:
    folder = resources.files("detforge") / "configs"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def packaged_model_names() -> list[str]:
    """Every name `create_model` accepts: each packaged config with each of its scales."""
    names = []
    for stem, path in sorted(packaged_configs().items()):
        family, _, variant = stem.partition("-")
        scales = (yaml.safe_load(path.read_text()) or {}).get("scales") or {}
        names += [f"{family}{s}{'-' + variant if variant else ''}" for s in scales] or [stem]
    return names


def resolve_source(name_or_path: str | Path) -> tuple[Path, str | None]:
    """A YAML path, or a packaged name like `yolov8n` / `yolov8s-p2` → (yaml path, scale)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path, None
    configs = packaged_configs()
    if str(name_or_path) in configs:
        return configs[str(name_or_path)], None
    match = MODEL_NAME.match(str(name_or_path))
    if match:
        stem = match["family"] + (match["variant"] or "")
        if stem in configs:
            return configs[stem], match["scale"]
    raise ConfigError(
        f"unknown model {str(name_or_path)!r}; use a YAML path or one of: {', '.join(packaged_model_names())}"
    )


def load_config(
    name_or_path: str | Path,
    scale: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> ModelConfig:
    """Read, override (dotted keys, e.g. `{"head.num_classes": 3}`) and validate a model config."""
    path, named_scale = resolve_source(name_or_path)
    data = read_yaml(path, ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a model config must be a mapping with backbone, neck and head")
    if scale or named_scale:
        data["scale"] = scale or named_scale
    if data.get("name") is None or named_scale:
        data["name"] = str(name_or_path) if named_scale else path.stem
    for key, value in (overrides or {}).items():
        set_by_path(data, key, value)
    return validate_config(data, str(path))
