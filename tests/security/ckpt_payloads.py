"""Hand-made hostile checkpoints (issue 8): zip archives with crafted data.pkl, polyglots, bombs.

Builders return bytes or write files; tests in this folder load them with detforge and check that
each ends in a one-line WeightsError, with no file, process or memory side effect.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import torch

P = pickle  # opcode constants: P.GLOBAL, P.REDUCE, ...


def unicode(text: str) -> bytes:
    data = text.encode("utf-8")
    return P.BINUNICODE + struct.pack("<I", len(data)) + data


def global_(module: str, name: str) -> bytes:
    return P.GLOBAL + f"{module}\n{name}\n".encode()


def binint(value: int) -> bytes:
    return P.BININT + struct.pack("<i", value)


def pickle_program(*parts: bytes) -> bytes:
    """Protocol-2 header + parts + STOP."""
    return P.PROTO + b"\x02" + b"".join(parts) + P.STOP


def torch_zip(data_pkl: bytes, storages: dict[str, bytes] | None = None, folder: str = "archive",
              compress: int = zipfile.ZIP_STORED, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip laid out as torch.save writes it (folder/data.pkl, folder/data/<key>, byteorder, version)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compress) as archive:
        archive.writestr(f"{folder}/data.pkl", data_pkl)
        archive.writestr(f"{folder}/byteorder", "little")
        for key, data in (storages or {}).items():
            archive.writestr(f"{folder}/data/{key}", data)
        archive.writestr(f"{folder}/version", "3\n")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return out.getvalue()


def saved(obj: object) -> bytes:
    """`torch.save(obj)` as bytes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def tensor_pickle() -> tuple[bytes, dict[str, bytes]]:
    """data.pkl of `{"w": tensor([1., 2.])}` and its storage, for payloads that append to a real tensor."""
    storage = struct.pack("<2f", 1.0, 2.0)
    body = (
        P.EMPTY_DICT + unicode("w") + global_("torch._utils", "_rebuild_tensor_v2")
        + P.MARK + P.MARK + unicode("storage") + global_("torch", "FloatStorage") + unicode("0") + unicode("cpu")
        + binint(2) + P.TUPLE + P.BINPERSID + binint(0) + binint(2) + P.TUPLE1 + binint(1) + P.TUPLE1
        + P.NEWFALSE + global_("collections", "OrderedDict") + P.EMPTY_TUPLE + P.REDUCE + P.TUPLE + P.REDUCE
        + P.SETITEM
    )
    return body, {"0": storage}


def build_on_global(module: str, name: str, attribute: str, value: bytes) -> bytes:
    """data.pkl that BUILDs `module.name` with slot state {attribute: value} (setattr on the global itself),
    then returns a normal tensor dict: the file would load "fine" with the C unpickler."""
    body, _ = tensor_pickle()
    attack = (
        global_(module, name) + P.NONE + P.EMPTY_DICT + unicode(attribute) + value + P.SETITEM + P.TUPLE2
        + P.BUILD + P.POP
    )
    return pickle_program(attack + body)


def polyglot(victim: Path, appended: bytes) -> bytes:
    """A legacy torch tar whose 'storages' member is a hard link to `victim` (mode 0777, mtime 0), with a
    torch zip appended: zipfile (central directory at the end) sees a zip, torch (first bytes) a tar."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("storages")
        info.type = tarfile.LNKTYPE
        info.linkname = str(victim)
        info.mode = 0o777
        info.mtime = 0
        info.uid = info.gid = 65534
        tar.addfile(info)
    return out.getvalue() + appended


def deflate_bomb(path: Path, expanded: int = 256 << 20) -> Path:
    """A checkpoint whose one storage is `expanded` zero bytes, deflated (~1/1000 the size)."""
    numel = expanded // 4
    body = (
        P.EMPTY_DICT + unicode("w") + global_("torch._utils", "_rebuild_tensor_v2")
        + P.MARK + P.MARK + unicode("storage") + global_("torch", "FloatStorage") + unicode("0") + unicode("cpu")
        + P.BININT + struct.pack("<i", numel) + P.TUPLE + P.BINPERSID + binint(0)
        + P.BININT + struct.pack("<i", numel) + P.TUPLE1 + binint(1) + P.TUPLE1
        + P.NEWFALSE + global_("collections", "OrderedDict") + P.EMPTY_TUPLE + P.REDUCE + P.TUPLE + P.REDUCE
        + P.SETITEM
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_program(body))
        info = zipfile.ZipInfo("archive/data/0")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(expanded >> 20):
                member.write(chunk)
    return path


def allocation_bomb(copies: int = 200) -> bytes:
    """< 1 KB pickle that asks for bytearray(64 MiB) `copies` times."""
    one = global_("builtins", "bytearray") + P.BININT + struct.pack("<i", 64 << 20) + P.TUPLE1 + P.REDUCE + P.POP
    return pickle_program(one * copies + P.NONE)


def memo_amplification(size: int = 1 << 20, copies: int = 2000) -> bytes:
    """A `size`-char string memoized once, then latin1-encoded `copies` times (each REDUCE copies it)."""
    text = unicode("x" * size) + P.BINPUT + b"\x01"
    encode = global_("_codecs", "encode") + P.BINPUT + b"\x02" + P.POP
    one = P.BINGET + b"\x02" + P.BINGET + b"\x01" + unicode("latin1") + P.TUPLE2 + P.REDUCE + P.POP
    return pickle_program(text + P.POP + encode + one * copies + P.NONE)


def deep_lists(depth: int) -> bytes:
    """[[[...]]] nested `depth` levels: 2 bytes per level."""
    return pickle_program(P.EMPTY_LIST * depth + P.APPEND * (depth - 1))


def deep_tuple_key(depth: int) -> bytes:
    """{((((),),),): 1}: hashing a deep tuple recurses in C without a guard."""
    return pickle_program(P.EMPTY_DICT + P.EMPTY_TUPLE + P.TUPLE1 * depth + binint(1) + P.SETITEM)


def module_chain(depth: int, shared: bool) -> bytes:
    """A torch.nn Module tree `depth` levels deep. With `shared`, each level's `_modules` holds the next
    level twice (a few KB that a naive walk expands 2^depth times); the bottom holds one parameter."""
    cls = global_("torch.nn.modules.module", "Module") + P.BINPUT + b"\x01" + P.POP
    tensor, storages = _param_pickle()
    opening = (
        P.BINGET + b"\x01" + P.EMPTY_TUPLE + P.NEWOBJ + P.EMPTY_DICT + unicode("_modules") + P.EMPTY_DICT
    )
    leaf = (
        P.BINGET + b"\x01" + P.EMPTY_TUPLE + P.NEWOBJ + P.EMPTY_DICT + unicode("_parameters") + P.EMPTY_DICT
        + unicode("w") + tensor + P.SETITEM + P.SETITEM + unicode("_modules") + P.EMPTY_DICT + P.SETITEM + P.BUILD
    )
    if shared:  # memoize each child, put it under "a" and "b"
        parts = [cls, opening * depth, leaf]
        for level in range(depth):
            slot = struct.pack("<I", 10 + level)
            parts.append(
                P.LONG_BINPUT + slot + P.POP + unicode("a") + P.LONG_BINGET + slot + P.SETITEM
                + unicode("b") + P.LONG_BINGET + slot + P.SETITEM + P.SETITEM + P.BUILD
            )
        body = b"".join(parts)
    else:
        body = cls + (opening + unicode("a")) * depth + leaf + (P.SETITEM + P.SETITEM + P.BUILD) * depth
    return torch_zip(pickle_program(body), storages)


def _param_pickle() -> tuple[bytes, dict[str, bytes]]:
    tensor = (
        global_("torch._utils", "_rebuild_tensor_v2") + P.MARK + P.MARK + unicode("storage")
        + global_("torch", "FloatStorage") + unicode("0") + unicode("cpu") + binint(1) + P.TUPLE + P.BINPERSID
        + binint(0) + binint(1) + P.TUPLE1 + binint(1) + P.TUPLE1 + P.NEWFALSE
        + global_("collections", "OrderedDict") + P.EMPTY_TUPLE + P.REDUCE + P.TUPLE + P.REDUCE
    )
    return tensor, {"0": struct.pack("<f", 1.0)}
