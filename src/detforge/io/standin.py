"""Inert stand-ins for the classes a foreign checkpoint pickles (model and layer classes).

A training checkpoint from another framework pickles whole model objects
(`ultralytics.nn.tasks.DetectionModel`, `models.yolo.Model`, `torch.nn.Conv2d`, ...). The
restricted unpickler never imports those classes: each name becomes a fresh `StandIn`
subclass (one per name and load) whose instances only store the state pickle gives them.
"""

from __future__ import annotations

from typing import Any, Self


class StandIn:
    """Inert placeholder for a class the checkpoint names but we never import.

    `type(obj).standin_source` is the "module.QualName" it stands for; the pickled state is in
    `vars(obj)` (e.g. `_modules`, `_parameters`, `yaml`, `names` of a torch/Ultralytics model).
    """

    # Read via type(self): pickled state may hold an attribute of any name.
    standin_source: str = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        obj = super().__new__(cls)
        obj.__dict__["_standin_args"] = args
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def apply_state(self, state: Any) -> None:
        """What BUILD does to a stand-in: keep the state as plain attributes, run nothing.

        Default object state is a dict, or (dict | None, slots dict | None) for classes with
        slots; anything else is kept whole under `_standin_state`. Called as
        `StandIn.apply_state(obj, state)` so that pickled attributes cannot shadow it.
        """
        parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
        if all(part is None or isinstance(part, dict) for part in parts):
            for part in parts:
                for key, value in (part or {}).items():
                    # A dunder key (say "__class__") in the instance dict could shadow behaviour.
                    if isinstance(key, str) and not key.startswith("__"):
                        self.__dict__[key] = value
        else:
            self.__dict__["_standin_state"] = state

    def __repr__(self) -> str:
        return f"<stand-in for {type(self).standin_source}>"


def make_standin_class(qualified: str) -> type[StandIn]:
    """A fresh StandIn subclass standing for `qualified` ("package.module.ClassName")."""
    return type(qualified.rsplit(".", 1)[-1], (StandIn,), {"standin_source": qualified})
