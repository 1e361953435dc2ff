"""Read a torch `.pt` zip archive ourselves, with bounds, instead of handing the path to torch.

torch decides a file's container by its first four bytes: `PK\\x03\\x04` means zip, anything
else goes down its legacy path, which unpacks a tar archive (hard links included) or runs an
unrestricted pickle. `zipfile`, by contrast, finds an archive by the central directory at the
*end* of the file, so a legacy tar with a zip appended looks like a zip to one and a tar to the
other. This reader accepts only files on which both views agree, and detforge never calls
`torch.load` on a downloaded file at all: the archive's members are read here, `data.pkl` is
unpickled by `detforge.io.unpickler`, and storages are built from the `data/<key>` members.

Accepted archive (what `torch.save` writes): local file header at offset 0; an end-of-central-
directory record that ends the file (no comment, no trailing bytes); every member's local
header at the offset the central directory states, naming the same file, its data ending
before the next member begins; names `<folder>/...` under one top-level folder, no duplicates,
no absolute or `..` parts; members stored or deflated (never encrypted); `<folder>/data.pkl`
present. Sizes are checked against `Limits` before a byte is inflated, and reads stop at the
declared size.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Self

from detforge.errors import WeightsError
from detforge.io.limits import DEFAULT_LIMITS, Limits

ZIP_MAGIC = b"PK\x03\x04"
_EOCD = b"PK\x05\x06"
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature ... name length, extra length (30 bytes)
_KNOWN = re.compile(r"(data\.pkl|version|byteorder|\.format_version|\.storage_alignment|\.data/.+|data/[^/]+)")


class TorchArchive:
    """A validated torch zip checkpoint: `read(member)` returns a member's bytes, bounded."""

    def __init__(self, path: str | Path, limits: Limits = DEFAULT_LIMITS):
        self.path = Path(path)
        self.limits = limits
        self._budget = limits.max_total_bytes
        with self.path.open("rb") as fh:
            if fh.read(4) != ZIP_MAGIC:
                raise WeightsError(f"{self.path}: not a torch zip checkpoint (does not start with a zip header)")
            self._check_directory_size(fh)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise self._error(f"corrupt zip archive ({_first_line(err)})") from None
        try:
            self._check_structure()
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def _error(self, what: str) -> WeightsError:
        return WeightsError(f"{self.path}: {what}; not a torch checkpoint as torch.save writes it")

    # ------------------------------------------------------------------ structure
    def _check_directory_size(self, fh) -> None:
        """Bound the member count the end record declares before `zipfile` reads the directory."""
        size = fh.seek(0, 2)
        if size < 22:
            raise self._error("too short for a zip archive")
        fh.seek(size - 22)
        tail = fh.read(22)
        entries, directory = struct.unpack("<HL", tail[10:16]) if tail[:4] == _EOCD else (0, 0)
        if (entries == 0xFFFF or directory == 0xFFFFFFFF) and size >= 98:  # zip64: read its end record
            fh.seek(size - 42)
            locator = fh.read(20)
            if locator[:4] == b"PK\x06\x07":
                (offset,) = struct.unpack("<Q", locator[8:16])
                fh.seek(min(offset, size))
                record = fh.read(56)
                if len(record) == 56 and record[:4] == b"PK\x06\x06":
                    entries, directory = struct.unpack("<QQ", record[32:48])
        if entries > self.limits.max_members or directory > 46 * self.limits.max_members + (16 << 20):
            raise WeightsError(
                f"{self.path}: the archive declares {entries} members ({directory} directory bytes), "
                f"more than the {self.limits.max_members} allowed; refusing to read it"
            )

    def _check_structure(self) -> None:
        infos = self._zip.infolist()
        size = self.path.stat().st_size
        with self.path.open("rb") as fh:
            fh.seek(max(0, size - 22))
            tail = fh.read(22)
            if len(tail) != 22 or tail[:4] != _EOCD or tail[20:22] != b"\x00\x00":
                raise self._error("data after the zip directory (or an archive comment)")
            if not infos or min(i.header_offset for i in infos) != 0:
                raise self._error("the first zip member does not start at offset 0 (data before the archive)")
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise self._error("duplicate member names")
            if any(n.endswith("constants.pkl") for n in names):
                raise WeightsError(
                    f"{self.path}: is a TorchScript archive, not a training checkpoint; pass the .pt it was made from"
                )
            pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise WeightsError(f"{self.path}: zip archive without data.pkl; not a torch checkpoint")
            self.prefix = pickles[0][: -len("data.pkl")]
            for name in names:
                self._check_name(name)
            ordered = sorted(infos, key=lambda i: i.header_offset)
            ends = [i.header_offset for i in ordered[1:]] + [self._zip.start_dir]
            for info, end in zip(ordered, ends, strict=True):
                self._check_member(fh, info, end)
        self.members = {info.filename[len(self.prefix):]: info for info in infos}

    def _check_name(self, name: str) -> None:
        rest = name[len(self.prefix):]
        parts = rest.split("/")
        if (
            not name.startswith(self.prefix)
            or any(p in ("", ".", "..") for p in parts)
            or "\\" in name
            or "\x00" in name
            or not _KNOWN.fullmatch(rest)
        ):
            raise self._error(f"unexpected member {name[:80]!r}")

    def _check_member(self, fh, info: zipfile.ZipInfo, end: int) -> None:
        if info.flag_bits & 0x1:
            raise self._error(f"encrypted member {info.filename!r}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self._error(f"member {info.filename!r} uses compression method {info.compress_type}")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise self._error(f"stored member {info.filename!r} declares two sizes")
        fh.seek(info.header_offset)
        header = fh.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size:
            raise self._error(f"member {info.filename!r} lies outside the file")
        fields = _LOCAL_HEADER.unpack(header)
        name_len, extra_len = fields[-2], fields[-1]
        stored_name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
        if fields[0] != ZIP_MAGIC or fh.read(name_len) != stored_name:
            raise self._error(f"member {info.filename!r}: local header does not match the zip directory")
        data_end = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + info.compress_size
        if data_end > end:
            raise self._error(f"member {info.filename!r} overlaps the next record")

    # ------------------------------------------------------------------ reading
    def size(self, member: str) -> int | None:
        """Declared uncompressed size of `member` (relative to the archive folder), None if absent."""
        info = self.members.get(member)
        return None if info is None else info.file_size

    def read(self, member: str, max_size: int) -> bytearray:
        """The bytes of `member` (relative to the archive folder), refusing more than `max_size`.

        Declared sizes are checked first (against `max_size`, the archive's total budget and the
        compression-ratio bound); the read itself then stops at the declared size, and the CRC
        is verified, so a member whose data disagrees with its header is refused.
        """
        info = self.members.get(member)
        if info is None:
            raise self._error(f"missing member {self.prefix}{member}")
        declared = info.file_size
        if declared > max_size:
            raise self._error(f"member {info.filename!r} declares {declared} bytes (at most {max_size} allowed)")
        if declared > self._budget:
            raise WeightsError(
                f"{self.path}: declares more than {self.limits.max_total_bytes} bytes in total; refusing to read it"
            )
        if info.compress_type == zipfile.ZIP_DEFLATED and declared > self.limits.max_compression_ratio * max(
            info.compress_size, 1
        ):
            raise WeightsError(
                f"{self.path}: member {info.filename!r} would expand {info.compress_size} bytes to {declared} "
                f"(ratio over {self.limits.max_compression_ratio}); refusing a zip bomb"
            )
        self._budget -= declared
        out = bytearray(declared)
        view = memoryview(out)
        try:
            with self._zip.open(info) as stream:  # ZipExtFile stops at the declared size, checks the CRC
                got = 0
                while got < declared:
                    chunk = stream.read(min(1 << 20, declared - got))
                    if not chunk:
                        break
                    view[got:got + len(chunk)] = chunk
                    got += len(chunk)
                if got != declared or stream.read(1):
                    raise self._error(f"member {info.filename!r} is shorter or longer than declared")
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as err:
            raise self._error(f"member {info.filename!r} is corrupt ({_first_line(err)})") from None
        return out


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
