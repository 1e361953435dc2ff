"""Import Ultralytics YOLOv8 detection checkpoints into detforge's YOLOv8 models.

Works on the object graph that `detforge.io.foreign.load_checkpoint` returns (stand-ins, not
Ultralytics classes): reads the model's `yaml` dict and class names, builds the matching
detforge model, renames every state-dict key and loads it strictly. Nothing from Ultralytics
is imported.

Ultralytics numbers its layers `model.<i>` in YAML order; detforge names them by part. The
YOLOv8 detect YAML has 23 layers, of which 10, 11, 13, 14, 17 and 20 (Upsample, Concat) hold
no weights.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from detforge.errors import WeightsError
from detforge.io.foreign import StandIn, checked_yaml, state_dict_from_standin
from detforge.io.plain import MAX_STRING, check_class_count
from detforge.io.weights import build_checked, build_skeleton
from detforge.models.build import create_model
from detforge.models.detector import Detector

logger = logging.getLogger(__name__)

DETECTION_MODEL = "ultralytics.nn.tasks.DetectionModel"

# Layer types of the YOLOv8 detect YAML (backbone then head), in order.
YOLOV8_LAYERS = (
    "Conv",
    "Conv",
    "C2f",
    "Conv",
    "C2f",
    "Conv",
    "C2f",
    "Conv",
    "C2f",
    "SPPF",
    "nn.Upsample",
    "Concat",
    "C2f",
    "nn.Upsample",
    "Concat",
    "C2f",
    "Conv",
    "Concat",
    "C2f",
    "Conv",
    "Concat",
    "C2f",
    "Detect",
)

# Ultralytics layer index -> (detforge module path, kind of block).
LAYER_MAP = {
    0: ("backbone.stem", "conv"),
    1: ("backbone.stages.0.0", "conv"),
    2: ("backbone.stages.0.1", "c2f"),
    3: ("backbone.stages.1.0", "conv"),
    4: ("backbone.stages.1.1", "c2f"),
    5: ("backbone.stages.2.0", "conv"),
    6: ("backbone.stages.2.1", "c2f"),
    7: ("backbone.stages.3.0", "conv"),
    8: ("backbone.stages.3.1", "c2f"),
    9: ("backbone.sppf", "sppf"),
    12: ("neck.top_down.0", "c2f"),
    15: ("neck.top_down.1", "c2f"),
    16: ("neck.downsample.0", "conv"),
    18: ("neck.bottom_up.0", "c2f"),
    19: ("neck.downsample.1", "conv"),
    21: ("neck.bottom_up.1", "c2f"),
    22: ("head", "detect"),
}

# Child renames inside each kind of block (Ultralytics name -> detforge name).
CHILD_NAMES = {
    "conv": {},
    "c2f": {"cv1": "stem", "cv2": "project", "m": "blocks"},
    "bottleneck": {"cv1": "conv1", "cv2": "conv2"},
    "sppf": {"cv1": "reduce", "cv2": "project"},
    "detect": {"cv2": "box_branches", "cv3": "cls_branches"},
}
TRAINING_SIZES = {"imgsz": 8192, "batch": 4096}  # reference training settings carried over, with their bounds
DFL_KEY = "model.22.dfl.conv.weight"  # the fixed 0..reg_max-1 projection; detforge builds it itself
DFL_TARGET = "head.dfl.bins"


def map_key(key: str) -> str:
    """`model.4.m.1.cv2.bn.weight` -> `backbone.stages.1.1.blocks.1.conv2.bn.weight`.

    Raises KeyError for a key outside the YOLOv8 detect layout.
    """
    parts = key.split(".")
    if parts[0] != "model" or len(parts) < 3 or not parts[1].isdigit() or int(parts[1]) not in LAYER_MAP:
        raise KeyError(key)
    target, kind = LAYER_MAP[int(parts[1])]
    rest = parts[2:]
    if kind in ("c2f", "sppf", "detect"):
        if rest[0] not in CHILD_NAMES[kind]:
            raise KeyError(key)
        if kind == "c2f" and rest[0] == "m":  # m.<k>.cv1 -> blocks.<k>.conv1
            if len(rest) < 3 or rest[2] not in CHILD_NAMES["bottleneck"]:
                raise KeyError(key)
            rest = ["blocks", rest[1], CHILD_NAMES["bottleneck"][rest[2]], *rest[3:]]
        else:
            rest = [CHILD_NAMES[kind][rest[0]], *rest[1:]]
    return ".".join([target, *rest])


def _architecture(model: StandIn, path: Path) -> tuple[str, int]:
    """Check the stand-in is a YOLOv8 detection model; return (scale letter, number of classes)."""
    source = type(model).standin_source
    if source != DETECTION_MODEL:
        raise WeightsError(
            f"{path}: holds a {source}; only Ultralytics YOLOv8 detection models can be imported"
        )
    spec = checked_yaml(getattr(model, "yaml", None), path)
    rows = [*_rows(spec, "backbone", path), *_rows(spec, "head", path)]
    if not all(isinstance(row, (list, tuple)) and len(row) >= 3 for row in rows):
        raise WeightsError(f"{path}: the yaml's layer rows are not [from, repeats, module, args] lists")
    layers = tuple(str(row[2]) for row in rows)
    if layers != YOLOV8_LAYERS:
        name = spec.get("yaml_file", "custom yaml")
        raise WeightsError(
            f"{path}: architecture {name} is not YOLOv8 detect "
            f"({len(layers)} layers: {', '.join(dict.fromkeys(layers))}); "
            "only yolov8{n,s,m,l,x}.yaml models can be imported"
        )
    scale = spec.get("scale")
    if scale is None:  # older checkpoints: only the YAML file name carries the scale
        found = re.search(r"yolov8([nslmx])", str(spec.get("yaml_file", "")))
        scale = found and found[1]
    if scale not in ("n", "s", "m", "l", "x"):
        raise WeightsError(
            f"{path}: cannot tell the YOLOv8 scale (yaml scale={spec.get('scale')!r}); expected n/s/m/l/x"
        )
    return scale, check_class_count(spec.get("nc"), path, "yaml nc")


def _rows(spec: dict, key: str, path: Path) -> list:
    rows = spec.get(key, [])
    if not isinstance(rows, (list, tuple)):
        raise WeightsError(f"{path}: yaml {key} is a {type(rows).__name__}, not a list of layers")
    return list(rows)


def _class_names(model: StandIn, num_classes: int) -> list[str] | None:
    """Ultralytics stores names as {index: name}; older files as a list. Non-string names are dropped."""
    names = getattr(model, "names", None)
    if isinstance(names, dict):
        names = [names.get(i, f"class{i}") for i in range(num_classes)]
    if isinstance(names, (list, tuple)) and len(names) == num_classes and all(isinstance(n, str) for n in names):
        return [n[:MAX_STRING] for n in names]
    return None


def _mapped_state(source: dict[str, torch.Tensor], reg_max: int, path: Path) -> dict[str, torch.Tensor]:
    """Rename every key; fail on keys that have no place in the detforge model."""
    dfl = source.pop(DFL_KEY, None)
    if dfl is not None and not torch.equal(dfl.float().flatten(), torch.arange(reg_max, dtype=torch.float32)):
        raise WeightsError(
            f"{path}: {DFL_KEY} is not the fixed 0..{reg_max - 1} projection; refusing a modified DFL"
        )
    mapped, unknown = {}, []
    for key, tensor in source.items():
        try:
            mapped[map_key(key)] = tensor
        except KeyError:
            unknown.append(key)
    if unknown:
        raise WeightsError(
            f"{path}: {len(unknown)} weights have no place in detforge's YOLOv8 (e.g. {unknown[:3]}); "
            "the checkpoint is not a plain YOLOv8 detection model"
        )
    return mapped


def import_ultralytics(checkpoint: Any, path: str | Path) -> Detector:
    """Build a detforge YOLOv8 from an unpickled Ultralytics checkpoint dict (see `foreign.load_checkpoint`).

    Uses the EMA weights when the checkpoint has them (as the trainer writes it), else `model`;
    fp16 weights are cast to fp32. Returns the model in eval mode.
    """
    path = Path(path)
    if not isinstance(checkpoint, dict):
        raise WeightsError(
            f"{path}: expected an Ultralytics checkpoint dict, got {type(checkpoint).__name__}"
        )
    model = checkpoint.get("ema") if checkpoint.get("ema") is not None else checkpoint.get("model")
    if not isinstance(model, StandIn):
        raise WeightsError(
            f"{path}: no 'ema' or 'model' entry holding a model; not an Ultralytics checkpoint"
        )
    scale, num_classes = _architecture(model, path)
    names = _class_names(model, num_classes)
    def make() -> Detector:
        return create_model(f"yolov8{scale}", num_classes=num_classes, names=names)

    skeleton = build_skeleton(make)
    reg_max = skeleton.head.reg_max
    state = _mapped_state(state_dict_from_standin(model), reg_max, path)
    if DFL_TARGET in skeleton.state_dict():
        state[DFL_TARGET] = torch.arange(reg_max, dtype=torch.float32)  # the fixed projection detforge builds
    del skeleton
    detector = build_checked(make, state, str(path))  # shapes checked on the meta device first; fp16 → fp32
    trained = training_sizes(checkpoint.get("train_args"))
    if trained:  # val / predict / export default to the size it was trained at, as for detforge's own weights
        detector.meta = {"source": str(path), "train": trained}
    logger.debug("imported Ultralytics yolov8%s (%d classes) from %s", scale, num_classes, path)
    return detector.eval()


def training_sizes(train_args: Any) -> dict[str, int]:
    """The reference run's image size and batch from its `train_args`, where they are plain whole numbers
    within bounds; anything else (a list imgsz, auto batch -1, a hostile value) is left out."""
    if not isinstance(train_args, dict):
        return {}
    return {key: value for key, top in TRAINING_SIZES.items()
            if type(value := train_args.get(key)) is int and 0 < value <= top}
