"""A restricted, bounded unpickler for checkpoint `data.pkl` files.

Built on Python's pure-Python unpickler (`pickle._Unpickler`), with every opcode that can
reach code or shared state replaced:

- GLOBAL / STACK_GLOBAL / INST resolve names through `rebuild.ALLOWED_GLOBALS` (our own inert
  rebuild functions, never the real torch/numpy/builtins objects) or, for classes in the
  caller's stand-in namespaces, to a fresh `StandIn` subclass made for this load. Anything
  else is refused with `UnsafeCheckpointError`; EXT1/2/4 (the copyreg registry) are refused.
- REDUCE / NEWOBJ / NEWOBJ_EX / OBJ call only those rebuild functions and stand-in classes.
- BUILD applies state only to objects this unpickler created itself: stand-in instances
  (stored as plain attributes), `SimpleNamespace`s and `OrderedDict`s (plain attributes such
  as a state_dict's `_metadata`) and numpy arrays (fully validated state);
  a numpy dtype's state must equal what it already has and is never applied. BUILD on a type,
  function, module, dtype singleton or anything else is refused.
- APPEND(S) / SETITEM(S) / ADDITEMS only fill plain lists / dicts / sets, with scalar keys.
- Every opcode and every rebuild is charged against `Limits` (opcode count, estimated bytes
  allocated, memo entries), so a tiny pickle cannot allocate without bound.
- Storages (`BINPERSID ('storage', FloatStorage, key, location, numel)`) are read from the
  archive member `data/<key>`, whose size must equal numel × itemsize.

After loading, `check_graph` walks the result iteratively, each object once, refusing graphs
deeper than `Limits.max_depth` or larger than `Limits.max_objects`, so nothing downstream
recurses without bound.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import types
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from detforge.errors import UnsafeCheckpointError
from detforge.io import rebuild
from detforge.io.limits import Limits
from detforge.io.rebuild import RebuildError
from detforge.io.standin import StandIn, make_standin_class
from detforge.io.torchzip import TorchArchive

_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)


class BudgetError(RebuildError):
    """The pickle asks for more work or memory than `Limits` allows."""


def _in_namespaces(module: str, namespaces: tuple[str, ...]) -> bool:
    return any(module == ns or module.startswith(ns + ".") for ns in namespaces)


def _is_class_name(name: str) -> bool:
    """Stand-ins are for classes only; a function name (lower-case) is never made a stand-in."""
    parts = name.split(".")
    return all(part.isidentifier() for part in parts) and parts[-1][:1].isupper()


def _cost(args: Any) -> int:
    total = 64
    if isinstance(args, _SIZED):
        total += len(args)
        if isinstance(args, (tuple, list)):
            total += sum(len(a) for a in args if isinstance(a, _SIZED))
    return total


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickle `data` (a checkpoint's data.pkl) from `archive`; see the module docstring."""

    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)

    def __init__(self, data: bytes, archive: TorchArchive | None, namespaces: tuple[str, ...],
                 limits: Limits, source: str):
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self.archive, self.namespaces, self.limits, self.source = archive, namespaces, limits, source
        self.standins: dict[str, type[StandIn]] = {}
        self.fresh: dict[int, Any] = {}  # id -> object: what BUILD may touch (kept alive here)
        self.storages: dict[str, rebuild.LoadedStorage] = {}
        self.ops = 0
        self.alloc = 0

    # ------------------------------------------------------------------ budget
    def charge(self, amount: int) -> None:
        self.alloc += amount
        if self.alloc > self.limits.max_pickle_alloc:
            raise BudgetError(f"the pickle allocates more than {self.limits.max_pickle_alloc} bytes")

    def load(self) -> Any:
        """`pickle._Unpickler.load` with an opcode budget."""
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)
        self.read, self.readinto, self.readline = (
            self._unframer.read, self._unframer.readinto, self._unframer.readline)
        self.metastack, self.stack = [], []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch, max_ops = self.read, self.dispatch, self.limits.max_pickle_ops
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError("pickle data ends without STOP")
                self.ops += 1
                if self.ops > max_ops:
                    raise BudgetError(f"the pickle runs more than {max_ops} opcodes")
                handler = dispatch.get(key[0])
                if handler is None:
                    raise pickle.UnpicklingError(f"invalid pickle opcode {key[0]:#04x}")
                handler(self)
        except pickle._Stop as stop:
            return stop.value

    # ------------------------------------------------------------------ globals
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names in protocol-2 pickles
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        qualified = f"{module}.{name}"
        if qualified in rebuild.ALLOWED_GLOBALS:
            return rebuild.ALLOWED_GLOBALS[qualified]
        if _in_namespaces(module, self.namespaces) and _is_class_name(name) and len(qualified) <= 256:
            if qualified not in self.standins:
                self.standins[qualified] = make_standin_class(qualified)
            return self.standins[qualified]
        raise UnsafeCheckpointError(
            f"{self.source}: refused to unpickle {qualified[:200]} (it could run code); "
            "only weights, plain data and model classes are imported; get the file from a trusted source "
            "or export its state_dict to safetensors where it was made"
        )

    def _refuse_extension(self) -> None:
        raise UnsafeCheckpointError(f"{self.source}: refused a copyreg extension code (it could run code)")

    for _op in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op[0]] = _refuse_extension

    # ------------------------------------------------------------------ calls
    def _call(self, func: Any, args: Any, kwargs: dict | None = None) -> Any:
        if not isinstance(args, tuple) or (kwargs is not None and not isinstance(kwargs, dict)):
            raise RebuildError("call arguments are not a tuple")
        self.charge(_cost(args) + _cost(kwargs or {}))
        if isinstance(func, type) and issubclass(func, StandIn) and func in self.standins.values():
            obj = func.__new__(func, *args)
            self.fresh[id(obj)] = obj
            return obj
        if func not in rebuild.REBUILDERS:
            raise RebuildError(f"REDUCE on {type(func).__name__}, which is not a rebuild function")
        try:
            obj = func(*args, **(kwargs or {}))
        except TypeError as err:  # wrong argument count
            raise RebuildError(f"bad arguments to {func.__name__} ({err})") from None
        if isinstance(obj, (types.SimpleNamespace, np.ndarray, collections.OrderedDict)):
            self.fresh[id(obj)] = obj
        return obj

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._call(cls, args))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._call(cls, args, kwargs))

    def load_obj(self) -> None:
        args = self.pop_mark()
        if not args:
            raise RebuildError("OBJ without a class")
        cls = args.pop(0)
        self.append(self._call(cls, tuple(args)))

    def load_inst(self) -> None:
        module = self.readline()[:-1].decode("ascii")
        name = self.readline()[:-1].decode("ascii")
        cls = self.find_class(module, name)
        self.append(self._call(cls, tuple(self.pop_mark())))

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.OBJ[0]] = load_obj
    dispatch[pickle.INST[0]] = load_inst

    # ------------------------------------------------------------------ state
    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        self.charge(_cost(state))
        if isinstance(inst, np.dtype):
            rebuild.check_dtype_state(inst, state)
            return
        if self.fresh.get(id(inst)) is not inst:
            raise RebuildError(f"BUILD on a {type(inst).__name__} the unpickler did not create")
        if isinstance(inst, StandIn):
            StandIn.apply_state(inst, state)
        elif isinstance(inst, (types.SimpleNamespace, collections.OrderedDict)):  # e.g. a state_dict's _metadata
            if not isinstance(state, dict) or not all(isinstance(k, str) and not k.startswith("__") for k in state):
                raise RebuildError(f"{type(inst).__name__} state is not a plain attribute dict")
            inst.__dict__.update(state)
        elif isinstance(inst, np.ndarray):
            del self.fresh[id(inst)]  # an array is built once
            self.charge(rebuild.set_array_state(inst, state, self.limits.max_tensor_dims))
        else:  # pragma: no cover - fresh holds only the kinds above
            raise RebuildError(f"BUILD on a {type(inst).__name__}")

    dispatch[pickle.BUILD[0]] = load_build

    # ------------------------------------------------------------------ containers
    def load_append(self) -> None:
        value = self.stack.pop()
        self._list(self.stack[-1]).append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._list(self.stack[-1]).extend(items)

    @staticmethod
    def _list(target: Any) -> list:
        if type(target) is not list:
            raise RebuildError(f"APPEND to a {type(target).__name__}")
        return target

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._setitems(self.stack[-1], [key, value])

    def load_setitems(self) -> None:
        items = self.pop_mark()
        self._setitems(self.stack[-1], items)

    @staticmethod
    def _setitems(target: Any, items: list) -> None:
        if type(target) not in (dict, collections.OrderedDict):
            raise RebuildError(f"SETITEM on a {type(target).__name__}")
        for i in range(0, len(items) - 1, 2):
            rebuild.check_key(items[i])
            target[items[i]] = items[i + 1]

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise RebuildError(f"ADDITEMS on a {type(target).__name__}")
        for item in items:
            rebuild.check_key(item)
        target.update(items)

    def load_frozenset(self) -> None:
        items = self.pop_mark()
        for item in items:
            rebuild.check_key(item)
        self.append(frozenset(items))

    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.ADDITEMS[0]] = load_additems
    dispatch[pickle.FROZENSET[0]] = load_frozenset

    def load_dict(self) -> None:
        items = self.pop_mark()
        target: dict = {}
        self._setitems(target, items)
        self.append(target)

    dispatch[pickle.DICT[0]] = load_dict

    # ------------------------------------------------------------------ memo
    def _memo_check(self) -> None:
        if len(self.memo) >= self.limits.max_memo:
            raise BudgetError(f"the pickle memoizes more than {self.limits.max_memo} objects")

    def _wrap_memo(handler: Callable) -> Callable:
        def wrapped(self: RestrictedUnpickler) -> None:
            self._memo_check()
            handler(self)

        return wrapped

    for _op in (pickle.PUT, pickle.BINPUT, pickle.LONG_BINPUT, pickle.MEMOIZE):
        dispatch[_op[0]] = _wrap_memo(pickle._Unpickler.dispatch[_op[0]])

    # ------------------------------------------------------------------ storages
    def persistent_load(self, pid: Any) -> rebuild.LoadedStorage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise RebuildError("persistent id other than a torch storage")
        _, kind, key, location, numel = pid
        if not isinstance(kind, rebuild.StorageType) or not isinstance(location, str) or len(location) > 64:
            raise RebuildError("malformed storage reference")
        if not isinstance(key, str) or not key or len(key) > 64 or not key.replace("_", "").isalnum():
            raise RebuildError("malformed storage key")
        if type(numel) is not int or numel < 0:
            raise RebuildError("malformed storage size")
        if key in self.storages:
            known = self.storages[key]
            if known.dtype != kind.dtype or known.flat.numel() != numel:
                raise RebuildError(f"storage {key} referenced with two types or sizes")
            return known
        if self.archive is None:
            raise RebuildError("a storage outside a checkpoint archive")
        itemsize = torch.empty((), dtype=kind.dtype).element_size()
        member = f"data/{key}"
        expected = numel * itemsize
        actual = self.archive.size(member)
        if actual != expected:
            raise RebuildError(
                f"storage {key} declares {expected} bytes but its archive member holds {actual}")
        data = self.archive.read(member, expected)
        flat = torch.frombuffer(data, dtype=kind.dtype) if expected else torch.empty(0, dtype=kind.dtype)
        storage = rebuild.LoadedStorage(flat)
        self.storages[key] = storage
        return storage


def check_graph(root: Any, limits: Limits) -> None:
    """Refuse object graphs deeper than `limits.max_depth` or larger than `limits.max_objects`.

    Iterative post-order walk over containers and stand-ins computing each object's height
    (longest path below it) once, so shared children cost nothing extra and a graph whose
    naive walk is 2^depth long is measured in linear time. Cycles are not followed.
    """
    heights: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, list | None]] = [(root, None)]
    while stack:
        obj, children = stack.pop()
        oid = id(obj)
        if children is not None:  # second visit: every child is done
            height = 1 + max((heights.get(id(c), 0) for c in children), default=0)
            if height > limits.max_depth:
                raise BudgetError(f"the object graph is nested deeper than {limits.max_depth} levels")
            heights[oid] = height
            on_path.discard(oid)
            continue
        if oid in heights or oid in on_path:
            continue
        children = _children(obj)
        if children is None:
            continue
        on_path.add(oid)
        if len(on_path) > limits.max_depth:  # the current path alone is too deep
            raise BudgetError(f"the object graph is nested deeper than {limits.max_depth} levels")
        if len(heights) + len(on_path) > limits.max_objects:
            raise BudgetError(f"the object graph holds more than {limits.max_objects} objects")
        stack.append((obj, children))
        stack.extend((c, None) for c in children if id(c) not in heights)


def _children(obj: Any) -> list | None:
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (StandIn, types.SimpleNamespace)):
        return [*vars(obj).values()]
    return None
