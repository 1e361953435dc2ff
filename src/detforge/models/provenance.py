"""What a model remembers about how it was trained, so inference and reruns need no flags.

The trainer writes its resolved settings (JSON) into the weights file's metadata under
`train`; `detforge.load` puts them, with the file's path, on the model as `model.meta`
(`{"source": path, "train": {...}}`). `val`, `predict`, `model.predict` and `model.train`
take their defaults from there — above all `imgsz`: a model trained at 256 px and evaluated at
640 px sees objects 2.5x larger than it learned and loses most of its accuracy. An explicit
argument always wins.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TRAIN_KEY = "train"  # weights-file metadata entry: the training settings as JSON
DEFAULT_IMGSZ = 640  # for models that carry no training settings (packaged names, converted checkpoints)


def weights_metadata(settings: dict[str, Any]) -> dict[str, str]:
    """The metadata entries that record `settings` (JSON-able training settings) in a weights file."""
    return {TRAIN_KEY: json.dumps(settings, sort_keys=True)}


def meta_from_weights(path: str | Path, metadata: dict[str, str]) -> dict[str, Any]:
    """`model.meta` for a model read from `path` with this safetensors metadata."""
    meta: dict[str, Any] = {"source": str(path)}
    try:
        settings = json.loads(metadata.get(TRAIN_KEY, "null"))
    except json.JSONDecodeError:
        settings = None
    if isinstance(settings, dict):
        meta[TRAIN_KEY] = settings
    return meta


def read_training_settings(path: str | Path) -> dict[str, Any]:
    """The training settings stored in a weights file, read from its header only ({} when there are none
    or the file is not a readable safetensors file — loading it later reports that)."""
    if Path(path).suffix != ".safetensors":
        return {}
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
    except Exception:  # noqa: BLE001  (any unreadable file: the real load gives the one-line error)
        return {}
    return meta_from_weights(path, metadata).get(TRAIN_KEY, {})


def training_settings(model) -> dict[str, Any]:
    """The settings `model` was trained with ({} when unknown)."""
    return dict((getattr(model, "meta", None) or {}).get(TRAIN_KEY) or {})


def weights_source(model) -> str | None:
    """The file `model` was loaded from, if any."""
    return (getattr(model, "meta", None) or {}).get("source")


def default_imgsz(model, imgsz: int | None) -> int:
    """`imgsz` when given, else the size `model` was trained at, else 640."""
    if imgsz is not None:
        return int(imgsz)
    trained = training_settings(model).get("imgsz")
    if isinstance(trained, int) and trained > 0:
        log.info("imgsz %d (the size the weights were trained at; --imgsz overrides)", trained)
        return trained
    return DEFAULT_IMGSZ
