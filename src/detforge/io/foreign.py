"""Read foreign PyTorch `.pt` checkpoints without letting them run code or touch the machine.

A `.pt` file is a zip archive holding a pickle (`data.pkl`) and raw tensor storages. Unpickling
can call any function the file names, and torch's own loader, given a path, also unpacks legacy
tar archives; training checkpoints of other frameworks also pickle whole model objects, which
torch's `weights_only=True` refuses. So detforge never hands a downloaded file to `torch.load`:

1. `torchzip.TorchArchive` accepts only a zip that torch and `zipfile` would both read the
   same way (first bytes `PK\\x03\\x04`, consistent headers, one folder, bounded sizes);
2. `unpickler.RestrictedUnpickler` runs `data.pkl`: allow-listed names map to our own inert
   rebuild functions (`rebuild.py`), classes from the expected model namespaces become inert
   `StandIn`s, anything else is refused with `UnsafeCheckpointError`; storages come from the
   archive's `data/<key>` members with checked sizes; every allocation is budgeted;
3. `unpickler.check_graph` bounds the depth and size of the resulting object graph.

API for importers (`io/ultralytics_map.py`, `io/yolov7_map.py`; registered in `io/convert.py`):

    checkpoint = load_checkpoint(path, standin_namespaces=("models", "torch.nn.modules"))
    model = checkpoint["ema"] or checkpoint["model"]          # a StandIn
    type(model).standin_source  -> "models.yolo.Model"        # what class it stands for
    vars(model)                 -> pickled attributes (yaml, names, _modules, ...)
    state = state_dict_from_standin(model)                   # {"model.0.conv.weight": tensor}
    yaml = checked_yaml(model.yaml, path)                    # bounded plain-data copy, or WeightsError

`standin_namespaces` lists the packages (at any depth) whose *classes* become stand-ins; a
function from those packages is still refused. Everything raises a one-line `WeightsError`
(or its subclass `UnsafeCheckpointError`) naming the file.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from detforge.errors import WeightsError
from detforge.io.limits import DEFAULT_LIMITS, Limits
from detforge.io.plain import check_class_count, check_plain
from detforge.io.sniff import sniff
from detforge.io.standin import StandIn, make_standin_class
from detforge.io.torchzip import TorchArchive
from detforge.io.unpickler import RestrictedUnpickler, check_graph

logger = logging.getLogger(__name__)

__all__ = [
    "STANDIN_NAMESPACES",
    "StandIn",
    "checked_yaml",
    "load_checkpoint",
    "make_standin_class",
    "state_dict_from_standin",
]

STANDIN_NAMESPACES = ("ultralytics", "torch.nn.modules")
"""Packages whose classes (at any depth) become inert stand-ins in Ultralytics checkpoints."""



def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0][:200] if text else "") or type(err).__name__


def load_checkpoint(
    path: str | Path, standin_namespaces: tuple[str, ...] = STANDIN_NAMESPACES, limits: Limits = DEFAULT_LIMITS
) -> Any:
    """Unpickle a foreign torch `.pt` checkpoint on CPU with the restricted, bounded unpickler.

    Returns the checkpoint object graph: plain containers, tensors, and `StandIn` instances in
    place of classes from `standin_namespaces`. Raises `UnsafeCheckpointError` if the file
    names any other global, `WeightsError` if it is not a torch zip checkpoint as `torch.save`
    writes it or declares more than `limits` allow. Nothing of torch's own loader runs.
    """
    path = Path(path)
    kind = sniff(path)
    if kind != "torch-zip":
        raise WeightsError(f"{path}: {_NOT_ZIP.get(kind, _NOT_ZIP['unknown'])}")
    try:
        with TorchArchive(path, limits) as archive:
            byteorder = archive.read("byteorder", 16) if archive.size("byteorder") is not None else b"little"
            if bytes(byteorder) != b"little":
                raise WeightsError(f"{path}: big-endian checkpoint; re-save it on a little-endian machine")
            data = archive.read("data.pkl", limits.max_pickle_bytes)
            unpickler = RestrictedUnpickler(bytes(data), archive, tuple(standin_namespaces), limits, str(path))
            del data
            with _gc_paused():  # the cyclic GC rescans every new container: quadratic on big graphs
                result = unpickler.load()
                check_graph(result, limits)
    except WeightsError:
        raise
    except RecursionError:
        raise WeightsError(f"{path}: cannot read checkpoint (object graph nested too deeply)") from None
    except MemoryError:
        raise WeightsError(f"{path}: cannot read checkpoint (out of memory); the file declares too much") from None
    except Exception as err:  # noqa: BLE001 - hostile or corrupt pickle: any parse failure is the file's fault
        raise WeightsError(f"{path}: cannot read checkpoint ({_one_line(err)})") from None
    logger.debug("read %s: %d opcodes, ~%d bytes allocated", path, unpickler.ops, unpickler.alloc)
    return result


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_NOT_ZIP = {
    "torch-legacy": "legacy (pre-zip, torch<1.6) checkpoint format is not supported; "
    "re-save it with a current torch in a trusted environment",
    "tar": "a tar archive (torch's legacy format) is never unpacked; re-save it with a current torch "
    "in a trusted environment",
    "safetensors": "is a safetensors file, not a .pt checkpoint; load it with detforge.load",
    "missing": "no such file; check the path",
    "unknown": "not a torch checkpoint (expected a .pt zip archive)",
}


def state_dict_from_standin(module: Any, limits: Limits = DEFAULT_LIMITS) -> dict[str, torch.Tensor]:
    """Flatten a stand-in `nn.Module` tree into `{dotted.name: tensor}` like `nn.Module.state_dict`.

    Walks `_parameters`, persistent `_buffers` and `_modules` iteratively, in the same order as
    torch; tensors are detached. A module that appears twice in the tree, or a tree deeper than
    `limits.max_depth`, is refused (a shared child would otherwise be walked once per path);
    shared modules without tensors or children (a shared activation) are fine.
    """
    if not isinstance(module, StandIn) or not isinstance(module.__dict__.get("_modules"), dict):
        raise WeightsError(f"expected a pickled torch module, got {type(module).__name__}")
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = {id(module)}
    stack: list[tuple[StandIn, str, int]] = [(module, "", 0)]
    while stack:
        current, prefix, depth = stack.pop()
        source = type(current).standin_source
        if depth > limits.max_depth:
            raise WeightsError(f"{source} at '{prefix[:80]}': modules nested deeper than {limits.max_depth} levels")
        state = current.__dict__
        skip = state.get("_non_persistent_buffers_set") or set()
        params, buffers = state.get("_parameters") or {}, state.get("_buffers") or {}
        if not isinstance(params, dict) or not isinstance(buffers, dict) or not isinstance(skip, (set, frozenset)):
            raise WeightsError(f"{source} at '{prefix[:80]}': malformed module state")
        tensors = [*params.items(), *((k, v) for k, v in buffers.items() if k not in skip)]
        for name, tensor in tensors:
            if tensor is None:
                continue
            if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
                raise WeightsError(f"{source} at '{prefix[:80]}{str(name)[:40]}' holds a "
                                   f"{type(tensor).__name__}, not a tensor")
            out[prefix + name] = tensor.detach()
        children = state.get("_modules") or {}
        if not isinstance(children, dict):
            raise WeightsError(f"{source} at '{prefix[:80]}': malformed module state")
        pending = []
        for name, child in children.items():
            if child is None:
                continue
            if not isinstance(name, str) or not isinstance(child, StandIn):
                raise WeightsError(f"{source} at '{prefix[:80]}{str(name)[:40]}' holds a "
                                   f"{type(child).__name__}, not a module")
            if id(child) in seen:
                if _is_empty_leaf(child):  # e.g. one activation module shared by every conv
                    continue
                raise WeightsError(f"{source} at '{prefix[:80]}{name[:40]}': a module appears twice in the model")
            seen.add(id(child))
            pending.append((child, f"{prefix}{name}.", depth + 1))
        stack.extend(reversed(pending))  # depth-first in declaration order, as torch orders keys
    return out


def _is_empty_leaf(module: StandIn) -> bool:
    state = module.__dict__
    return not any(state.get(k) for k in ("_parameters", "_buffers", "_modules"))


def checked_yaml(spec: Any, path: str | Path, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """A checkpoint's embedded model yaml as plain, bounded data, or a one-line WeightsError.

    See `plain.check_plain`; a `nc` entry, if present, must be an int in 1..`limits.max_classes`.
    """
    if not isinstance(spec, dict):
        raise WeightsError(f"{path}: the model has no architecture (yaml) dict; not a training checkpoint")
    check_plain(spec, path, "yaml", limits)
    if spec.get("nc") is not None:
        check_class_count(spec["nc"], path, "yaml nc", limits)
    return spec
