"""One way to get a Detector from a file: `detforge.load(path)`, and `list_models()`.

The format is decided by parsing the file (`sniff`), never by its suffix, and the file is
then read only by that format's loader:

- `safetensors` → `weights.load_safetensors` (detforge weights: config + names + tensors);
- `torch-zip`   → `convert.import_checkpoint` (foreign training checkpoints, restricted import);
- other formats plug in with `register_loader(format, loader, sniffer)` — e.g. ONNX models
  from the export package: `sniffer(first_512_bytes, file_size) -> bool` recognises the file,
  `loader(path, limits) -> Detector-like` reads it.

Legacy torch files (raw pickle, tar) are never read. Packaged model names (`yolov8n`, ...)
are built with `detforge.create_model`; `list_models()` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from detforge.config import packaged_model_names
from detforge.errors import WeightsError
from detforge.io.convert import import_checkpoint
from detforge.io.limits import DEFAULT_LIMITS, Limits
from detforge.io.sniff import register_sniffer, sniff
from detforge.io.weights import load_safetensors

LOADERS: dict[str, Callable[[Path, Limits], Any]] = {
    "safetensors": load_safetensors,
    "torch-zip": import_checkpoint,
}

_REFUSED = {
    "torch-legacy": "is a legacy (pre-zip, torch<1.6) pickle checkpoint, which is never unpickled; "
    "re-save it with a current torch in a trusted environment",
    "tar": "is a tar archive (torch's legacy format), which is never unpacked; "
    "re-save it with a current torch in a trusted environment",
}


def register_loader(name: str, loader: Callable[[Path, Limits], Any],
                    sniffer: Callable[[bytes, int], bool] | None = None) -> None:
    """Let `detforge.load` read another format (see the module docstring)."""
    if sniffer is not None:
        register_sniffer(name, sniffer)
    LOADERS[name] = loader


def load(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> Any:
    """A detector (eval mode) from a detforge `.safetensors` file or a foreign `.pt` checkpoint.

    Raises a one-line `WeightsError` naming the file for anything it cannot read safely.
    """
    path = Path(path)
    kind = sniff(path)
    if kind == "missing":
        raise WeightsError(
            f"{path}: no such weights file; pass a .safetensors file or a .pt checkpoint "
            "(packaged models: detforge.list_models())"
        )
    if kind in LOADERS:
        return LOADERS[kind](path, limits)
    raise WeightsError(
        f"{path}: {_REFUSED.get(kind, 'not a weights file detforge reads (safetensors or a torch .pt zip)')}"
    )


def list_models() -> list[str]:
    """Every packaged model name `detforge.create_model` accepts (each config × each of its scales)."""
    return packaged_model_names()
