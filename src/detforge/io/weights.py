"""detforge weights files: safetensors with the resolved model config embedded.

A pickle (`.pt`) can run code when it is loaded; a safetensors file holds only tensors and a
string→string metadata map. detforge stores the resolved model config (JSON) and the class
names in that map, so `load(path)` rebuilds the whole detector from the one file.
"""

from __future__ import annotations

import functools
import json
import logging
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from detforge.config import validate_config
from detforge.errors import DetforgeError, WeightsError
from detforge.fsutil import write_atomic
from detforge.models.build import build_model
from detforge.models.detector import Detector
from detforge.models.provenance import meta_from_weights

logger = logging.getLogger(__name__)

FORMAT = "detforge"
FORMAT_VERSION = 1
RESERVED_KEYS = ("format", "format_version", "config", "names")


def save_weights(model: Detector, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write `model`'s weights, resolved config and class names to a safetensors file.

    The file is written to a temporary file in the same folder, flushed to disk, then renamed
    over `path`, so a crash or error mid-way never leaves a truncated file (an existing file
    stays intact). `metadata` adds string entries (e.g. training provenance) to the header.
    """
    path = Path(path)
    if model.config is None:
        raise ValueError("model has no config; build it with detforge.create_model or build_model to save it")
    extra = dict(metadata or {})
    clash = sorted(set(extra) & set(RESERVED_KEYS))
    if clash or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise ValueError(
            f"metadata must map str to str and not use the reserved keys {RESERVED_KEYS} (got {clash})"
        )
    config = model.config.model_dump(mode="json")
    config["names"] = list(model.names)  # names may have been set on the model after it was built
    header = {
        **extra,
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(config),
        "names": json.dumps(list(model.names)),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _check_fits_config(model, tensors, path)
    write_atomic(path, safetensors_bytes(tensors, metadata=header))
    logger.debug("wrote %d tensors to %s", len(tensors), path)
    return path


def _check_fits_config(model: Detector, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse to write a file `load` could not read back (e.g. a fused model: its convs gained biases)."""
    expected = _expected_shapes(json.dumps(model.config.model_dump(mode="json"), sort_keys=True))
    wrong = [
        k
        for k in expected.keys() | tensors.keys()
        if k not in expected or k not in tensors or expected[k] != tuple(tensors[k].shape)
    ]
    if wrong:
        raise WeightsError(
            f"{path}: the model's weights no longer match its config (e.g. {sorted(wrong)[:2]}; fused or "
            "modified after building?); save the model before fuse() or rebuild it from its config"
        )


@functools.lru_cache(maxsize=8)
def _expected_shapes(config_json: str) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of a freshly built model; cached so that saving every epoch builds it once."""
    model = build_model(validate_config(json.loads(config_json)))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a detforge safetensors file → (tensors on CPU, metadata). Raises a one-line WeightsError."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file; check the path")
    with path.open("rb") as fh:
        pickled = fh.read(1) == b"\x80"  # pickle protocol opcode: the legacy torch.save format
    if pickled or zipfile.is_zipfile(path):
        raise WeightsError(
            f"{path} is a pickle checkpoint; convert it first: "
            f"detforge convert {path} {path.with_suffix('.safetensors')}"
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
            names = fh.keys()  # safe_open is not iterable
            tensors = {key: fh.get_tensor(key) for key in names}
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0]})") from None
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise WeightsError(
            f"{path}: safetensors file without a detforge model config; save it with detforge.save_weights, "
            "or build the model with detforge.create_model and load the tensors into it"
        )
    if int(metadata.get("format_version", "0")) > FORMAT_VERSION:
        raise WeightsError(
            f"{path}: written by a newer detforge (format {metadata['format_version']}, this one reads "
            f"{FORMAT_VERSION}); upgrade detforge"
        )
    return tensors, metadata


def load(path: str | Path) -> Detector:
    """Rebuild a detector (config, class names, weights) from a file written by `save_weights`.

    The model is returned in eval mode, ready for inference.
    """
    tensors, metadata = read_weights(path)
    try:
        config = validate_config(json.loads(metadata["config"]), str(path))
        names = json.loads(metadata.get("names", "null"))
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path}: corrupt detforge metadata ({err}); re-save the model") from None
    except DetforgeError as err:
        raise WeightsError(f"{err} (config embedded in the weights file)") from None
    model = build_model(config)
    assign_state(model, tensors, str(path))
    if names is not None:
        if len(names) != model.num_classes:
            raise WeightsError(
                f"{path}: {len(names)} class names for {model.num_classes} classes; re-save the model"
            )
        model.names = list(names)
    model.meta = meta_from_weights(path, metadata)  # where it came from and how it was trained
    return model.eval()


def assign_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model` strictly: same keys, same shapes, dtype cast to the model's.

    Raises a one-line WeightsError naming `source` and the first offending key.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise WeightsError(
            f"{source}: weights do not fit the model ({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); "
            "the file was made for another architecture"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise WeightsError(
                f"{source}: {key} has shape {list(tensor.shape)} but the model expects "
                f"{list(expected[key].shape)}; the file was made for another config (classes, scale)"
            )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
