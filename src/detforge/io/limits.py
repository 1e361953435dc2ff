"""What a downloaded weights file may declare before detforge refuses it.

Every number a file states about itself (archive member sizes, pickle lengths, tensor shapes,
class counts, nesting depth) is checked against these bounds *before* memory is allocated or
work proportional to the number is done, so a tiny hostile file cannot cost gigabytes or
minutes. The defaults admit every real detection checkpoint by a wide margin; pass a
`Limits(...)` to the loaders to tighten or widen them.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class Limits:
    max_total_bytes: int = 8 * GiB
    """Sum of the uncompressed sizes of every member read from a checkpoint archive."""
    max_compression_ratio: int = 50
    """Uncompressed / compressed size of a deflated archive member (torch itself stores members
    uncompressed; a zip bomb reaches ~1000)."""
    max_members: int = 100_000
    """Members of a checkpoint archive (torch writes one per storage plus a few records)."""
    max_pickle_bytes: int = 64 * MiB
    """Size of a checkpoint's data.pkl (the object graph, not the tensors)."""
    max_pickle_ops: int = 20_000_000
    """Opcodes executed while unpickling."""
    max_pickle_alloc: int = 512 * MiB
    """Bytes (estimated) the unpickler may allocate: 64 per opcode plus what each rebuild copies."""
    max_memo: int = 2_000_000
    """Entries in the unpickler's memo."""
    max_depth: int = 100
    """Nesting depth of the unpickled object graph (containers, stand-in modules)."""
    max_objects: int = 5_000_000
    """Distinct objects in the unpickled object graph."""
    max_tensor_dims: int = 32
    max_header_bytes: int = 16 * MiB
    """JSON header of a safetensors file."""
    max_classes: int = 100_000
    """Number of classes a model config or checkpoint may declare."""
    max_config_int: int = 1 << 20
    """Magnitude of any number in an embedded model config (channels, depths, kernel sizes, ...)."""
    max_config_items: int = 100_000
    """Items in any list or mapping of an embedded model config."""


DEFAULT_LIMITS = Limits()
