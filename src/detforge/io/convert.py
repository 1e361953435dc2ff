"""Turn a foreign `.pt` training checkpoint into a detforge model or safetensors file.

The checkpoint is read by `detforge.io.foreign.load_checkpoint` (bounded zip reader,
restricted unpickler), so a file that tries to run code is refused before anything runs.
Supported sources: Ultralytics YOLOv8 detection checkpoints (`detforge.io.ultralytics_map`) and
official YOLOv7 checkpoints, all seven models, training or deploy layout (`detforge.io.yolov7_map`).

Each supported framework is an *importer*: `register_importer(name, namespaces, build)`, where
`namespaces` are the packages whose classes its checkpoints pickle (they become stand-ins) and
`build(checkpoint, path)` returns a Detector, or None when the checkpoint is not its kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detforge.errors import WeightsError
from detforge.io.foreign import STANDIN_NAMESPACES, StandIn, load_checkpoint
from detforge.io.limits import DEFAULT_LIMITS, Limits
from detforge.io.ultralytics_map import import_ultralytics
from detforge.io.weights import save_weights
from detforge.io.yolov7_map import YOLOV7_NAMESPACES, import_yolov7, is_yolov7_checkpoint
from detforge.models.detector import Detector
from detforge.models.provenance import training_settings, weights_metadata


@dataclass(frozen=True)
class Importer:
    name: str
    namespaces: tuple[str, ...]
    build: Callable[[Any, Path], Detector | None]


IMPORTERS: dict[str, Importer] = {}


def register_importer(name: str, namespaces: tuple[str, ...], build: Callable[[Any, Path], Detector | None]) -> None:
    """Add (or replace) a foreign-checkpoint importer; see the module docstring."""
    IMPORTERS[name] = Importer(name, tuple(namespaces), build)


def _yolov7(checkpoint: Any, path: Path) -> Detector | None:
    return import_yolov7(checkpoint, path) if is_yolov7_checkpoint(checkpoint) else None


def _ultralytics(checkpoint: Any, path: Path) -> Detector | None:
    models = [v for v in checkpoint.values() if isinstance(v, StandIn)] if isinstance(checkpoint, dict) else []
    if not any(type(m).standin_source.startswith("ultralytics.") for m in models):
        return None
    return import_ultralytics(checkpoint, path)


register_importer("yolov7", (*YOLOV7_NAMESPACES, "torch.nn.modules"), _yolov7)
register_importer("ultralytics", STANDIN_NAMESPACES, _ultralytics)


def import_checkpoint(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> Detector:
    """Read a foreign `.pt` checkpoint and return the equivalent detforge model (eval mode)."""
    path = Path(path)
    importers = list(IMPORTERS.values())
    namespaces = tuple(dict.fromkeys(ns for imp in importers for ns in imp.namespaces))
    checkpoint = load_checkpoint(path, namespaces, limits)
    for importer in importers:
        model = importer.build(checkpoint, path)
        if model is not None:
            return model
    raise WeightsError(
        f"{path}: not a recognised training checkpoint (no Ultralytics or YOLOv7 model inside); "
        "supported: Ultralytics YOLOv8 detection and official YOLOv7 .pt files"
    )


def load_detector(path: str | Path) -> Detector:
    """Deprecated name of `detforge.load` (kept for callers written before it accepted `.pt`)."""
    from detforge.io.load import load

    return load(path)


def convert(src: str | Path, dst: str | Path) -> Detector:
    """Import `src` (foreign `.pt`) and write it as a detforge safetensors file at `dst`."""
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise WeightsError(
            f"{dst}: the output must be a .safetensors file, e.g. {dst.with_suffix('.safetensors')}"
        )
    model = import_checkpoint(src)
    trained = training_settings(model)  # the reference's training size, when its checkpoint records it
    save_weights(model, dst, metadata={"converted_from": Path(src).name,
                                       **(weights_metadata(trained) if trained else {})})
    return model
