"""Pick the torch device from a user's setting, with a one-line error when it can't exist here; say
whether this CPU computes bfloat16 natively."""

from __future__ import annotations

import os

import torch

from detforge.errors import ConfigError


def select_device(name: str | torch.device = "auto") -> torch.device:
    """`auto` → CUDA when available, else CPU. Under torchrun, plain `cuda` means this process's GPU."""
    name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine; use --device cpu")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """True when oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX): bf16 autocast pays off."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
