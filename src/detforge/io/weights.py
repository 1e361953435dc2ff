"""detforge weights files: safetensors with the resolved model config embedded.

A pickle (`.pt`) can run code when it is loaded; a safetensors file holds only tensors and a
string→string metadata map. detforge stores the resolved model config (JSON) and the class
names in that map, so `load(path)` rebuilds the whole detector from the one file.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from detforge.config import validate_config
from detforge.errors import DetforgeError, WeightsError
from detforge.fsutil import write_atomic
from detforge.io.limits import DEFAULT_LIMITS, Limits
from detforge.io.plain import check_class_count, check_names, check_plain
from detforge.io.sniff import safetensors_header_length, sniff
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
    """State-dict shapes of a freshly built model (on the meta device if it can: nothing allocated); cached."""
    config = validate_config(json.loads(config_json))
    model = build_skeleton(lambda: build_model(config))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def build_skeleton(make: Callable[[], Detector]) -> Detector:
    """`make()` on the meta device (shapes, no memory); on CPU for a part that reads tensor values
    while it is built (meta tensors have none) — configs are bounded before this is called."""
    try:
        with torch.device("meta"):
            return make()
    except NotImplementedError:
        logger.debug("model cannot be built on the meta device; building it on the CPU to compare shapes")
        return make()


def read_safetensors_header(path: Path, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Parse and check a safetensors header before any tensor is read.

    The 8-byte little-endian length must fit the file and `limits.max_header_bytes`; the header
    must be a JSON object whose entries each give a known dtype, a shape and data offsets that
    match the shape, lie inside the data section and tile it without gaps or overlaps;
    `__metadata__`, if present, must map str to str. Returns the header dict.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(10)
        length = safetensors_header_length(head, size, limits.max_header_bytes)
        if length is None:
            raise WeightsError(f"{path}: not a readable safetensors file (bad header length); re-save the model")
        fh.seek(8)
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise WeightsError(f"{path}: not a readable safetensors file (header: {str(err)[:120]})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: not a readable safetensors file (header is not an object)")
    metadata = header.get("__metadata__", {})
    strings = isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    if not strings:
        raise WeightsError(f"{path}: safetensors metadata must map strings to strings; re-save the model")
    data_size, spans = size - 8 - length, []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(entry, dict) and isinstance(entry.get("dtype"), str) and entry["dtype"] in _DTYPE_SIZES
                and isinstance(entry.get("shape"), list)
                and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
                and len(entry["shape"]) <= limits.max_tensor_dims
                and all(type(v) is int and 0 <= v < 1 << 62 for v in [*entry["shape"], *entry["data_offsets"]])):
            raise WeightsError(f"{path}: not a readable safetensors file (malformed entry {name[:80]!r})")
        begin, end = entry["data_offsets"]
        if end - begin != math.prod(entry["shape"]) * _DTYPE_SIZES[entry["dtype"]] or end > data_size:
            raise WeightsError(f"{path}: not a readable safetensors file ({name[:80]!r} does not fit its data)")
        spans.append((begin, end))
    covered = 0
    for begin, end in sorted(spans):
        if begin != covered:
            raise WeightsError(f"{path}: not a readable safetensors file (tensor data overlaps or has gaps)")
        covered = end
    if covered != data_size:
        raise WeightsError(f"{path}: not a readable safetensors file (data section size does not match the header)")
    return header


_DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8,
}


def read_weights(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a detforge safetensors file → (tensors on CPU, metadata). Raises a one-line WeightsError.

    The format is decided by parsing (`sniff`), not by the suffix or one byte; the header is
    fully checked (`read_safetensors_header`) before the safetensors library reads tensors.
    """
    path = Path(path)
    kind = sniff(path)
    if kind == "missing":
        raise WeightsError(f"{path}: no such file; check the path")
    if kind in ("torch-zip", "torch-legacy", "tar"):
        raise WeightsError(
            f"{path} is a pickle checkpoint; convert it first: "
            f"detforge convert {path} {path.with_suffix('.safetensors')}"
        )
    if kind != "safetensors":
        raise WeightsError(f"{path}: not a readable safetensors file (unknown format); pass a .safetensors file")
    read_safetensors_header(path, limits)
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
    version = metadata.get("format_version", "0")
    if not (version.isascii() and version.isdigit() and len(version) <= 6):
        raise WeightsError(f"{path}: format_version {version[:20]!r} is not a number; re-save the model")
    if int(version) > FORMAT_VERSION:
        raise WeightsError(
            f"{path}: written by a newer detforge (format {version}, this one reads "
            f"{FORMAT_VERSION}); upgrade detforge"
        )
    return tensors, metadata


def load_safetensors(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> Detector:
    """Rebuild a detector (config, class names, weights) from a file written by `save_weights`.

    The embedded config and names are checked (plain, bounded data; class count within
    `limits`), the model is built on the meta device first and its shapes compared with the
    file's tensors, and only then built for real, so a file cannot make detforge allocate a
    model larger than the weights it holds. Returned in eval mode. Use `detforge.load`, which
    also reads foreign checkpoints.
    """
    path = Path(path)
    tensors, metadata = read_weights(path, limits)
    try:
        raw_config = json.loads(metadata["config"])
        names = json.loads(metadata.get("names", "null"))
    except (json.JSONDecodeError, RecursionError) as err:
        raise WeightsError(f"{path}: corrupt detforge metadata ({str(err)[:120]}); re-save the model") from None
    if not isinstance(raw_config, dict):
        raise WeightsError(f"{path}: corrupt detforge metadata (config is not a mapping); re-save the model")
    check_plain(raw_config, path, "config", limits)
    if names is not None:
        check_names(names, path)
    try:
        config = validate_config(raw_config, str(path))
    except DetforgeError as err:
        raise WeightsError(f"{err} (config embedded in the weights file)") from None
    check_class_count(config.num_classes, path, "head.num_classes", limits)
    model = build_checked(lambda: build_model(config), tensors, str(path))
    if names is not None:
        if len(names) != model.num_classes:
            raise WeightsError(
                f"{path}: {len(names)} class names for {model.num_classes} classes; re-save the model"
            )
        model.names = list(names)
    model.meta = meta_from_weights(path, metadata)  # where it came from and how it was trained
    return model.eval()


load = load_safetensors  # the name before detforge.load (io/load.py) read every format


def build_checked(make: Callable[[], Detector], state: dict[str, torch.Tensor], source: str) -> Detector:
    """`make()` the model on the meta device, check `state` fits it, then build it for real and load.

    The meta build allocates nothing, so a config declaring a huge model costs nothing before
    its shapes are compared with the tensors the file actually holds.
    """
    try:
        skeleton = build_skeleton(make)
    except DetforgeError as err:
        raise WeightsError(f"{source}: {err}") from None
    except (RuntimeError, ValueError, TypeError, OverflowError, MemoryError) as err:
        raise WeightsError(f"{source}: cannot build the model the file describes ({str(err)[:120]})") from None
    check_fits(skeleton, state, source)
    del skeleton
    model = make()
    assign_state(model, state, source)
    return model


def assign_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model` strictly: same keys, same shapes, dtype cast to the model's.

    Raises a one-line WeightsError naming `source` and the first offending key.
    """
    expected = model.state_dict()
    check_fits(model, state, source)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def check_fits(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Same keys and shapes as `model.state_dict()` (works on a meta-device model), or WeightsError."""
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
