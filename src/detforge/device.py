"""Pick the torch device from a user's setting, with a one-line error when it can't exist here; say
whether this CPU computes bfloat16 natively and which half precision a device runs."""

from __future__ import annotations

import logging
import os

import torch

from detforge.errors import ConfigError

logger = logging.getLogger(__name__)


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


def half_dtype(device: torch.device) -> torch.dtype:
    """The dtype inference runs in when half precision is asked for (`--half`) on `device`: float16 on CUDA,
    bfloat16 on a CPU that computes it natively (AVX512-BF16 or AMX), else float32 with a warning
    (emulated bfloat16 is slower than float32)."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    logger.warning("half precision: %s has no native half precision on this machine; running float32", device)
    return torch.float32
