"""Read foreign PyTorch `.pt` checkpoints without letting them run code.

A `.pt` file is a pickle, and unpickling can call any function the file names (`os.system`,
`builtins.eval`, ...). Training checkpoints from other frameworks also pickle whole model
objects (`ultralytics.nn.tasks.DetectionModel`, `torch.nn.Conv2d`, ...), so torch's own
`weights_only=True` loader refuses them. This module unpickles them with a restricted
unpickler instead:

- an explicit allow-list of torch / numpy / collections / builtins globals rebuilds tensors,
  parameters and plain containers;
- a class from an expected model namespace (`ultralytics.*`, `torch.nn.modules.*`) becomes an
  inert `StandIn` that only stores the state it is given: nothing of the original class is
  imported or run;
- any other global is refused with `UnsafeCheckpointError`.

`state_dict_from_standin` then reads the tensors out of a stand-in module tree the way
`nn.Module.state_dict` would.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import pathlib
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from detforge.errors import UnsafeCheckpointError, WeightsError

STANDIN_NAMESPACES = ("ultralytics", "torch.nn.modules")
"""Packages whose classes (at any depth) become inert stand-ins instead of being imported."""


class StandIn:
    """Inert placeholder for a class the checkpoint names but we never import.

    Pickle creates it with `cls(*args)` or `cls.__new__(cls, *args)` and fills it through
    `__setstate__`; it keeps what it receives as plain attributes and has no other behaviour.
    """

    # "module.QualName" of the class this stands in for; read via type(self), since pickled
    # state may hold an attribute of any name.
    standin_source: str = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        obj = super().__new__(cls)
        obj.__dict__["_standin_args"] = args
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        # Default object state is a dict, or (dict | None, slots dict | None) for classes with slots.
        parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
        if all(part is None or isinstance(part, dict) for part in parts):
            for part in parts:
                for key, value in (part or {}).items():
                    # A dunder key (say "__setstate__") in the instance dict would shadow our methods.
                    if isinstance(key, str) and not key.startswith("__"):
                        self.__dict__[key] = value
        else:
            self.__dict__["_standin_state"] = state

    def __repr__(self) -> str:
        return f"<stand-in for {type(self).standin_source}>"


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Protocol-2 pickles store `bytes` as `_codecs.encode(text, "latin1")`; allow only that codec."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with codec {encoding!r}")
    return text.encode("latin1")


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy pickles arrays as `_reconstruct(ndarray, (0,), b"b")` + `__setstate__`; only plain ndarrays."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refused numpy array subtype {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _allowed_globals() -> dict[str, Any]:
    """`module.name` -> object for every global a weights/plain-data pickle may name."""
    allowed: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "builtins.bytearray": bytearray,
        "builtins.complex": complex,
        "builtins.slice": slice,
        "_codecs.encode": _latin1_encode,
        # Paths in saved training args: rebuilt as pure paths, which never touch the filesystem.
        "pathlib.PosixPath": pathlib.PurePosixPath,
        "pathlib.PurePosixPath": pathlib.PurePosixPath,
        "pathlib.WindowsPath": pathlib.PureWindowsPath,
        "pathlib.PureWindowsPath": pathlib.PureWindowsPath,
        "types.SimpleNamespace": types.SimpleNamespace,
        "torch.Size": torch.Size,
        "torch.device": torch.device,
        "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
        "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
    }
    for name in dir(torch):
        if isinstance(getattr(torch, name), torch.dtype):
            allowed[f"torch.{name}"] = getattr(torch, name)
    numpy_core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core to numpy._core
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):  # names written by numpy 1 / 2
        allowed[f"{core}._reconstruct"] = _numpy_reconstruct
        allowed[f"{core}.scalar"] = numpy_core.multiarray.scalar
    allowed["numpy.ndarray"] = np.ndarray
    allowed["numpy.dtype"] = np.dtype
    return allowed


_ALLOWED = _allowed_globals()


def _is_class_name(name: str) -> bool:
    """Stand-ins are for classes only; a function name (lower-case) is never made a stand-in."""
    parts = name.split(".")
    return all(part.isidentifier() for part in parts) and parts[-1][:1].isupper()


def _in_namespaces(module: str, namespaces: tuple[str, ...]) -> bool:
    return any(module == ns or module.startswith(ns + ".") for ns in namespaces)


def _restricted_pickle_module(path: Path, namespaces: tuple[str, ...]) -> types.SimpleNamespace:
    """A module-like object for `torch.load(pickle_module=...)`.

    torch subclasses `pickle_module.Unpickler` and routes every non-storage `find_class` call
    to it through `super().find_class`, so overriding `find_class` here sees every global.
    """
    standins: dict[str, type[StandIn]] = {}

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            # Protocol 2 (torch.save's default) writes Python 2 names such as `__builtin__.set`.
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
            qualified = f"{module}.{name}"
            if qualified in _ALLOWED:
                return _ALLOWED[qualified]
            if _in_namespaces(module, namespaces) and _is_class_name(name):
                if qualified not in standins:
                    standins[qualified] = type(name.split(".")[-1], (StandIn,), {"standin_source": qualified})
                return standins[qualified]
            raise UnsafeCheckpointError(
                f"{path}: refused to unpickle {qualified} (it could run code); "
                "only weights, plain data and model classes are imported; get the file from a trusted source "
                "or export its state_dict to safetensors where it was made"
            )

    return types.SimpleNamespace(__name__=__name__, Unpickler=RestrictedUnpickler)


def _check_container(path: Path) -> None:
    """Refuse files that are not torch zip checkpoints before any unpickling starts."""
    if not path.is_file():
        raise WeightsError(f"{path}: no such file; check the path")
    with path.open("rb") as fh:
        head = fh.read(9)
    if not zipfile.is_zipfile(path):
        if head[:1] == b"\x80":  # pickle protocol opcode: the legacy torch.save format
            raise WeightsError(
                f"{path}: legacy (pre-zip, torch<1.6) checkpoint format is not supported; "
                "re-save it with a current torch in a trusted environment"
            )
        if head[8:9] == b"{":  # 8-byte header length, then the JSON header
            raise WeightsError(
                f"{path}: is a safetensors file, not a .pt checkpoint; load it with detforge.load"
            )
        raise WeightsError(f"{path}: not a torch checkpoint (expected a .pt zip archive)")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names):
        raise WeightsError(
            f"{path}: is a TorchScript archive, not a training checkpoint; pass the .pt it was made from"
        )
    if not any(n.endswith("data.pkl") for n in names):
        raise WeightsError(f"{path}: zip archive without data.pkl; not a torch checkpoint")


def load_checkpoint(path: str | Path, standin_namespaces: tuple[str, ...] = STANDIN_NAMESPACES) -> Any:
    """Unpickle a foreign torch `.pt` checkpoint on CPU with the restricted unpickler.

    Returns the checkpoint object graph: plain containers, tensors, and `StandIn` instances in
    place of classes from `standin_namespaces`. Raises `UnsafeCheckpointError` if the file
    names any other global, `WeightsError` if it is not a readable torch zip checkpoint.
    """
    path = Path(path)
    _check_container(path)
    module = _restricted_pickle_module(path, tuple(standin_namespaces))
    try:
        with path.open("rb") as fh:  # a file object, so torch does not dispatch on the suffix
            return torch.load(fh, map_location="cpu", weights_only=False, pickle_module=module)
    except WeightsError:
        raise
    except Exception as err:  # corrupt archive, stand-in misuse, refused codec or array subtype
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsError(f"{path}: cannot read checkpoint ({message})") from err


def state_dict_from_standin(module: Any) -> dict[str, torch.Tensor]:
    """Flatten a stand-in `nn.Module` tree into `{dotted.name: tensor}` like `nn.Module.state_dict`.

    Walks `_parameters`, persistent `_buffers` and `_modules`; tensors are detached (no hooks
    or autograd history carried over).
    """
    if not isinstance(module, StandIn) or not isinstance(module.__dict__.get("_modules"), dict):
        raise WeightsError(f"expected a pickled torch module, got {type(module).__name__}: {module!r}")
    out: dict[str, torch.Tensor] = {}
    _collect(module, "", out)
    return out


def _collect(module: StandIn, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = module.__dict__
    skip = state.get("_non_persistent_buffers_set") or set()
    tensors = list((state.get("_parameters") or {}).items())
    tensors += [(k, v) for k, v in (state.get("_buffers") or {}).items() if k not in skip]
    for name, tensor in tensors:
        if tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor):
            raise WeightsError(
                f"{type(module).standin_source} at '{prefix}{name}' holds {type(tensor).__name__}, "
                "not a tensor"
            )
        out[prefix + name] = tensor.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, StandIn):
            raise WeightsError(
                f"{type(module).standin_source} at '{prefix}{name}' holds {type(child).__name__}, "
                "not a module"
            )
        _collect(child, f"{prefix}{name}.", out)
