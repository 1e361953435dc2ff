"""The auxiliary part `train --aux` adds to a model that has none.

YOLOv7 trains an auxiliary head on intermediate neck maps (its P6 models ship one); detforge
offers it for any model: the detector feeds its `aux` part the neck's aux maps (the top-down maps
of the YOLOv7 and YOLOv8 necks), and the loss trains it with coarse labels the lead head guides.
The default aux part mirrors the lead head: YOLOv7's auxiliary anchor head for an anchor-based
lead, a copy of the lead's own design (same type and settings) for an anchor-free one. Either way
it exists only in training: `deploy()` removes it.
"""

from __future__ import annotations

from typing import Any

from detforge.config import INJECTED, ModelConfig
from detforge.errors import ConfigError
from detforge.models.heads.anchor_base import AnchorHead
from detforge.models.heads.base import DetectionHead
from detforge.registry import HEADS


def default_aux(config: ModelConfig) -> dict[str, Any]:
    """The `aux:` part for `config`: its own when it declares one, else one that mirrors its head."""
    if config.aux is not None:
        return {"type": config.aux.type, **config.aux.kwargs}
    head = HEADS.get(config.head.type)
    if issubclass(head, AnchorHead):
        act = config.neck.kwargs.get("act")
        return {"type": "yolov7_aux", **({"act": act} if act is not None else {})}
    if issubclass(head, DetectionHead):
        return {"type": config.head.type,
                **{k: v for k, v in config.head.kwargs.items() if k not in INJECTED["aux"]}}
    raise ConfigError(
        f"{config.source}: head {config.head.type!r} has no default auxiliary head; "
        "declare one under aux: in the model config or train without --aux"
    )
