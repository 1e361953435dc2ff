"""The globals a checkpoint pickle may name, each mapped to our own inert rebuild function.

The restricted unpickler never puts a real torch/numpy/builtins callable or class on its
stack: `torch._utils._rebuild_tensor_v2` in a file resolves to `rebuild_tensor` below, which
builds a *fresh* tensor from a storage the unpickler itself created, after checking every
argument. So a hostile BUILD/SETSTATE can never reach `torch._utils`, `pathlib.PurePosixPath`
or any other shared object (the unpickler also refuses BUILD on anything but the fresh objects
it made), and a REDUCE can only call these functions, with arguments they validate and charge
against the allocation budget.

Each function raises `RebuildError` (a `pickle.UnpicklingError`) on anything unexpected; the
loader turns it into a one-line `WeightsError`.
"""

from __future__ import annotations

import collections
import math
import pathlib
import pickle
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


class RebuildError(pickle.UnpicklingError):
    """A rebuild function was called with arguments a torch.save'd file never contains."""


@dataclass(frozen=True)
class StorageType:
    """Stands for `torch.FloatStorage` & co. in a storage's persistent id: only its dtype matters."""

    dtype: torch.dtype


@dataclass(frozen=True, eq=False)
class LoadedStorage:
    """A storage read from the archive: a flat 1-D tensor over the member's bytes."""

    flat: torch.Tensor

    @property
    def dtype(self) -> torch.dtype:
        return self.flat.dtype


class NDArrayType:
    """Stands for `numpy.ndarray` as the first argument of numpy's `_reconstruct`."""


NDARRAY = NDArrayType()

MAX_PATH_CHARS = 4096


def _ints(value: Any, what: str, max_len: int) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list, torch.Size)) or len(value) > max_len:
        raise RebuildError(f"{what} is not a short sequence")
    if not all(type(v) is int and 0 <= v < 1 << 48 for v in value):
        raise RebuildError(f"{what} holds something other than non-negative integers")
    return tuple(value)


def _empty_hooks(hooks: Any) -> None:
    if not isinstance(hooks, dict) or hooks:
        raise RebuildError("tensor with backward hooks")


def rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                   hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """`torch._utils._rebuild_tensor_v2`: a view of a storage we read, bounds checked."""
    if not isinstance(storage, LoadedStorage):
        raise RebuildError("tensor without an archive storage")
    size, stride = _ints(size, "tensor size", 32), _ints(stride, "tensor stride", 32)
    if type(offset) is not int or offset < 0 or len(size) != len(stride) or type(requires_grad) is not bool:
        raise RebuildError("malformed tensor arguments")
    if hooks is not None:
        _empty_hooks(hooks)
    if metadata not in (None, {}):
        raise RebuildError("tensor with extra metadata (conjugate/negative bits, subclasses)")
    numel = storage.flat.numel()
    if math.prod(size) > numel:  # only overlapping (e.g. stride-0) views exceed their storage
        raise RebuildError(f"tensor of {math.prod(size)} elements over a {numel}-element storage (an expanded "
                           "view would allocate far more than the file holds once copied)")
    if 0 not in size:
        extent = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
        if extent > numel:
            raise RebuildError(f"tensor view reaches element {extent} of a {numel}-element storage")
    elif offset > numel:
        raise RebuildError("tensor offset outside its storage")
    tensor = torch.as_strided(storage.flat, size, stride, offset)
    if requires_grad:
        if not tensor.is_floating_point():
            raise RebuildError("integer tensor that requires grad")
        tensor.requires_grad_(True)
    return tensor


def rebuild_parameter(data: Any, requires_grad: Any, hooks: Any, state: Any = None) -> nn.Parameter:
    """`torch._utils._rebuild_parameter[_with_state]`: a fresh Parameter, no hooks or extra state."""
    if not isinstance(data, torch.Tensor) or type(requires_grad) is not bool:
        raise RebuildError("malformed parameter")
    _empty_hooks(hooks)
    if state not in (None, {}, (None, None)):
        raise RebuildError("parameter with extra state")
    return nn.Parameter(data.detach(), requires_grad=requires_grad and data.is_floating_point())


def rebuild_size(items: Any = ()) -> torch.Size:
    return torch.Size(_ints(items, "torch.Size", 64))


def rebuild_device(kind: Any, index: Any = None) -> torch.device:
    if not isinstance(kind, str) or len(kind) > 32 or not (index is None or type(index) is int):
        raise RebuildError("malformed torch.device")
    try:
        return torch.device(kind) if index is None else torch.device(kind, index)
    except (RuntimeError, ValueError) as err:
        raise RebuildError(f"bad torch.device ({err})") from None


def rebuild_ordered_dict(items: Any = ()) -> collections.OrderedDict:
    if items != ():
        raise RebuildError("OrderedDict with constructor arguments")
    return collections.OrderedDict()


def rebuild_set(items: Any = ()) -> set:
    return set(_hashable_items(items))


def rebuild_frozenset(items: Any = ()) -> frozenset:
    return frozenset(_hashable_items(items))


def _hashable_items(items: Any) -> list:
    if not isinstance(items, (list, tuple)):
        raise RebuildError("set from something other than a list")
    for item in items:
        check_key(item)
    return list(items)


_SCALAR_KEYS = (str, int, float, bool, bytes, type(None), torch.dtype, torch.device)


def check_key(key: Any, depth: int = 0) -> None:
    """Dict keys and set items are scalars or shallow tuples of scalars: hashing a deep tuple
    recurses in C without a guard."""
    if isinstance(key, tuple) and depth < 4 and len(key) <= 64:
        for item in key:
            check_key(item, depth + 1)
    elif not isinstance(key, _SCALAR_KEYS):
        raise RebuildError(f"unsupported dict key or set item ({type(key).__name__})")


def rebuild_bytearray(data: Any = b"", encoding: Any = None) -> bytearray:
    if isinstance(data, bytes) and encoding is None:
        return bytearray(data)
    if isinstance(data, str) and encoding in ("latin1", "latin-1"):
        return bytearray(data.encode("latin1"))
    raise RebuildError("bytearray from something other than bytes")


def latin1_encode(text: Any, encoding: Any = "latin1") -> bytes:
    """Protocol-2 pickles store `bytes` as `_codecs.encode(text, "latin1")`; only that codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RebuildError("_codecs.encode other than str → latin1")
    return text.encode("latin1")


def rebuild_complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if not all(type(v) in (int, float) for v in (real, imag)):
        raise RebuildError("complex from non-numbers")
    return complex(real, imag)


def rebuild_slice(*args: Any) -> slice:
    if len(args) > 3 or not all(v is None or type(v) is int for v in args):
        raise RebuildError("slice from non-integers")
    return slice(*args)


def _path_parts(parts: tuple) -> tuple[str, ...]:
    if len(parts) > 256 or not all(isinstance(p, str) and len(p) <= MAX_PATH_CHARS for p in parts):
        raise RebuildError("path from non-strings")
    return parts


def rebuild_posix_path(*parts: Any) -> pathlib.PurePosixPath:
    """Saved paths become pure paths, which never touch the filesystem."""
    return pathlib.PurePosixPath(*_path_parts(parts))


def rebuild_windows_path(*parts: Any) -> pathlib.PureWindowsPath:
    return pathlib.PureWindowsPath(*_path_parts(parts))


def rebuild_namespace(*args: Any) -> types.SimpleNamespace:
    if args:
        raise RebuildError("SimpleNamespace with positional arguments")
    return types.SimpleNamespace()


_NUMPY_KINDS = set("biufc")  # bool, signed, unsigned, float, complex: no objects, no records


def rebuild_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    if not isinstance(spec, str) or len(spec) > 8:
        raise RebuildError("numpy dtype from a non-string")
    try:
        dtype = np.dtype(spec)
    except TypeError:
        raise RebuildError(f"unknown numpy dtype {spec[:8]!r}") from None
    if dtype.kind not in _NUMPY_KINDS:
        raise RebuildError(f"numpy dtype {dtype.str} is not a plain number type")
    return dtype


def check_dtype_state(dtype: np.dtype, state: Any) -> None:
    """numpy BUILDs each dtype with its state tuple; we accept only the state it already has
    (little-endian or byte-order-free) and never apply it: dtypes are shared singletons."""
    expected = dtype.__reduce__()[2]
    if not (isinstance(state, tuple) and len(state) == len(expected) and state[1] in ("<", "|", "=")
            and state[2:] == expected[2:] and state[0] == expected[0]):
        raise RebuildError("unsupported numpy dtype state")


def numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy pickles arrays as `_reconstruct(ndarray, (0,), b"b")` + BUILD; only that form."""
    if subtype is not NDARRAY or not isinstance(shape, tuple) or shape != (0,):
        raise RebuildError("numpy array other than a plain ndarray")
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def set_array_state(array: np.ndarray, state: Any, max_dims: int) -> int:
    """Apply numpy's array state after checking it fully; returns the bytes it allocated."""
    if not (isinstance(state, tuple) and len(state) == 5):
        raise RebuildError("malformed numpy array state")
    version, shape, dtype, fortran, raw = state
    shape = _ints(shape, "numpy array shape", max_dims)
    if type(version) is not int or not isinstance(dtype, np.dtype) or dtype.kind not in _NUMPY_KINDS:
        raise RebuildError("numpy array of an unsupported dtype")
    if isinstance(raw, str):
        raw = raw.encode("latin1")
    if type(fortran) is not bool or not isinstance(raw, (bytes, bytearray)):
        raise RebuildError("malformed numpy array state")
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise RebuildError("numpy array data does not match its shape")
    array.__setstate__((version, shape, dtype, fortran, bytes(raw)))
    return len(raw)


def numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMPY_KINDS:
        raise RebuildError("numpy scalar of an unsupported dtype")
    if isinstance(data, str):
        data = data.encode("latin1")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise RebuildError("numpy scalar data does not match its dtype")
    return np.frombuffer(data, dtype=dtype)[0].copy()


def _torch_globals() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in dir(torch):
        value = getattr(torch, name, None)
        if isinstance(value, torch.dtype):
            found[f"torch.{name}"] = value  # dtypes are immutable values, not callables
    storages = {
        "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
        "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
        "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
        "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64,
        "ComplexDoubleStorage": torch.complex128, "UntypedStorage": torch.uint8,
    }
    found.update({f"torch.{name}": StorageType(dtype) for name, dtype in storages.items()})
    return found


def allowed_globals() -> dict[str, Any]:
    """`module.name` as a pickle writes it → what the restricted unpickler puts on its stack."""
    allowed: dict[str, Any] = {
        "collections.OrderedDict": rebuild_ordered_dict,
        "builtins.set": rebuild_set,
        "builtins.frozenset": rebuild_frozenset,
        "builtins.bytearray": rebuild_bytearray,
        "builtins.complex": rebuild_complex,
        "builtins.slice": rebuild_slice,
        "_codecs.encode": latin1_encode,
        "pathlib.PosixPath": rebuild_posix_path,
        "pathlib.PurePosixPath": rebuild_posix_path,
        "pathlib.WindowsPath": rebuild_windows_path,
        "pathlib.PureWindowsPath": rebuild_windows_path,
        "types.SimpleNamespace": rebuild_namespace,
        "torch.Size": rebuild_size,
        "torch.device": rebuild_device,
        "torch._utils._rebuild_tensor_v2": rebuild_tensor,
        "torch._utils._rebuild_parameter": rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": rebuild_parameter,
        "numpy.ndarray": NDARRAY,
        "numpy.dtype": rebuild_dtype,
        **_torch_globals(),
    }
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):  # written by numpy 1 / numpy 2
        allowed[f"{core}._reconstruct"] = numpy_reconstruct
        allowed[f"{core}.scalar"] = numpy_scalar
    return allowed


ALLOWED_GLOBALS = allowed_globals()
REBUILDERS = frozenset(v for v in ALLOWED_GLOBALS.values() if isinstance(v, types.FunctionType))
