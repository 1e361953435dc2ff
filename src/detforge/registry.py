"""Name → class registries for the swappable parts.

A YAML config names each part by its registered name; `register_backbone` and friends are
public so a user's own part works without editing detforge:

    @detforge.register_backbone("my_backbone")
    class MyBackbone(nn.Module): ...

Assigners and losses are parts of the training recipe, picked the same way by the training
config's `assigner: {type: ...}` and `loss: {type: ...}` sub-configs. An assigner is built as
`ASSIGNERS.get(type)(**keys)`; a loss as `LOSSES.get(type)(model=<Detector>, assigner=<assigner>,
**keys)` and called `loss(output, boxes, cls, batch_idx) -> (total, {name: tensor})`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from detforge.errors import ConfigError

T = TypeVar("T", bound=type)


class Registry:
    """A named table of classes of one kind (backbone, neck, head, assigner or loss)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(cls: T) -> T:
            if name in self._classes and self._classes[name] is not cls:
                raise ConfigError(f"{self.kind} name {name!r} is already registered to {self._classes[name].__name__}")
            self._classes[name] = cls
            return cls

        return add

    def get(self, name: str) -> type:
        if name not in self._classes:
            raise ConfigError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        return self._classes[name]

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: str) -> bool:
        return name in self._classes


BACKBONES = Registry("backbone")
NECKS = Registry("neck")
HEADS = Registry("head")
PARTS = {"backbone": BACKBONES, "neck": NECKS, "head": HEADS, "aux": HEADS}

register_backbone = BACKBONES.register
register_neck = NECKS.register
register_head = HEADS.register

ASSIGNERS = Registry("assigner")
LOSSES = Registry("loss")

register_assigner = ASSIGNERS.register
register_loss = LOSSES.register
