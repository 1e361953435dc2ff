"""Turn a foreign `.pt` training checkpoint into a detforge model or safetensors file.

The checkpoint is unpickled by the restricted unpickler (`detforge.io.foreign`), so a file
that tries to run code is refused before anything runs. Supported sources: Ultralytics
YOLOv8 detection checkpoints (`detforge.io.ultralytics_map`) and official YOLOv7 checkpoints,
all seven models, training or deploy layout (`detforge.io.yolov7_map`).
"""

from __future__ import annotations

from pathlib import Path

from detforge.errors import WeightsError
from detforge.io.foreign import STANDIN_NAMESPACES, StandIn, load_checkpoint
from detforge.io.ultralytics_map import import_ultralytics
from detforge.io.weights import save_weights
from detforge.io.yolov7_map import YOLOV7_NAMESPACES, import_yolov7, is_yolov7_checkpoint
from detforge.models.detector import Detector


def import_checkpoint(path: str | Path) -> Detector:
    """Read a foreign `.pt` checkpoint and return the equivalent detforge model (eval mode)."""
    path = Path(path)
    checkpoint = load_checkpoint(path, (*STANDIN_NAMESPACES, *YOLOV7_NAMESPACES))
    if is_yolov7_checkpoint(checkpoint):
        return import_yolov7(checkpoint, path)
    models = (
        [v for v in checkpoint.values() if isinstance(v, StandIn)] if isinstance(checkpoint, dict) else []
    )
    if any(type(m).standin_source.startswith("ultralytics.") for m in models):
        return import_ultralytics(checkpoint, path)
    raise WeightsError(
        f"{path}: not a recognised training checkpoint (no Ultralytics or YOLOv7 model inside); "
        "supported: Ultralytics YOLOv8 detection and official YOLOv7 .pt files"
    )


def load_detector(path: str | Path) -> Detector:
    """A detector from a detforge `.safetensors` file, or imported from a foreign `.pt` checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file; pass a .safetensors file (or an Ultralytics .pt)")
    if path.suffix == ".pt":
        return import_checkpoint(path)
    from detforge.io.weights import load

    return load(path)


def convert(src: str | Path, dst: str | Path) -> Detector:
    """Import `src` (foreign `.pt`) and write it as a detforge safetensors file at `dst`."""
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise WeightsError(
            f"{dst}: the output must be a .safetensors file, e.g. {dst.with_suffix('.safetensors')}"
        )
    model = import_checkpoint(src)
    save_weights(model, dst, metadata={"converted_from": Path(src).name})
    return model
