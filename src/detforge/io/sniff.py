"""Tell a weights file's format by parsing its first bytes the way its reader will.

One byte is not a format: a safetensors file starts with its little-endian header length,
so 1 in 256 of them starts with 0x80, the pickle protocol opcode. Each test here checks the
structure its reader relies on (and `detforge.load` then reads the file with that reader only):

- `torch-zip`: first bytes `PK\\x03\\x04` — the test torch itself applies (`torchzip` checks the rest);
- `safetensors`: an 8-byte header length within the file and the cap, followed by `{`;
- `torch-legacy`: a pickle protocol opcode (0x80) that is not a safetensors header;
- `tar`: the `ustar` magic at offset 257 (torch's legacy container);
- formats registered with `register_sniffer` (ONNX, ...), tried in order;
- `missing` / `unknown` otherwise.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

from detforge.io.limits import DEFAULT_LIMITS

ZIP_MAGIC = b"PK\x03\x04"
_SNIFFERS: list[tuple[str, Callable[[bytes, int], bool]]] = []


def register_sniffer(name: str, test: Callable[[bytes, int], bool]) -> None:
    """Add a format: `test(first_512_bytes, file_size)` says whether a file is of it.

    Registered tests run after the built-in ones; re-registering a name replaces its test.
    """
    _SNIFFERS[:] = [(n, t) for n, t in _SNIFFERS if n != name]
    _SNIFFERS.append((name, test))


def safetensors_header_length(head: bytes, size: int, max_header: int = DEFAULT_LIMITS.max_header_bytes) -> int | None:
    """The header length a safetensors file declares, if it is plausible; None otherwise."""
    if len(head) < 10:
        return None
    (length,) = struct.unpack("<Q", head[:8])
    if 2 <= length <= min(max_header, size - 8) and head[8:9] == b"{":
        return length
    return None


def sniff(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(512)
    if head[:4] == ZIP_MAGIC:
        return "torch-zip"
    if safetensors_header_length(head, size) is not None:
        return "safetensors"
    if head[:1] == b"\x80":
        return "torch-legacy"
    if head[257:262] == b"ustar":
        return "tar"
    for name, test in _SNIFFERS:
        if test(head, size):
            return name
    return "unknown"
