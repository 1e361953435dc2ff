"""Training state for exact resume, stored without pickle.

One safetensors file holds every tensor (model, EMA, optimizer state, RNG states); its
metadata holds the rest as JSON (epoch, optimizer hyper-parameters, scaler, Python/numpy RNG
scalars, configs). Written atomically, so a run killed at any moment — mid-save included —
leaves the previous complete file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from detforge.errors import WeightsError
from detforge.io.weights import write_atomic

STATE_FORMAT = "detforge-train-state"


def _prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().clone().contiguous() for k, v in state.items()}


def _unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """All random generators' states: tensors and JSON-able scalars."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    tensors = {"rng.torch": torch.get_rng_state(), "rng.numpy": torch.from_numpy(np_keys.astype(np.int64))}
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    scalars = {"numpy": [np_name, int(np_pos), int(np_has_gauss), float(np_gauss)],
               "python": [version, list(py_state), py_gauss]}
    return tensors, scalars


def set_rng_state(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    name, pos, has_gauss, gauss = scalars["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, state, py_gauss = scalars["python"]
    random.setstate((version, tuple(state), py_gauss))


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param_id, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{param_id}.{key}"] = value.detach().cpu().clone().contiguous()
            else:
                scalars[f"{param_id}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in _unprefixed("optim", tensors).items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    for key, value in meta["scalars"].items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_train_state(path: str | Path, *, model: torch.nn.Module, ema, optimizer: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler | None, info: dict[str, Any]) -> None:
    """Write the whole training state; `info` holds JSON-able scalars (epoch, configs, fitness)."""
    rng_tensors, rng_scalars = rng_state()
    optim_tensors, optim_meta = optimizer_to_tensors(optimizer)
    tensors = {**_prefixed("model", model.state_dict()), **_prefixed("ema", ema.ema.state_dict()),
               **optim_tensors, **rng_tensors}
    meta = {"info": info, "optimizer": optim_meta, "rng": rng_scalars, "ema_updates": ema.updates,
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None}
    header = {"format": STATE_FORMAT, "state": json.dumps(meta)}
    write_atomic(Path(path), safetensors_bytes(tensors, metadata=header))


def load_train_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a training state file → (tensors, metadata). One-line WeightsError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no training state to resume from; check the run folder")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path}: unreadable training state ({str(err).splitlines()[0]})") from None
    if header.get("format") != STATE_FORMAT:
        raise WeightsError(f"{path}: not a detforge training state file")
    return tensors, json.loads(header["state"])


def restore_train_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], *, model: torch.nn.Module, ema,
                        optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> dict[str, Any]:
    """Put model, EMA, optimizer, scaler and RNGs back; returns the saved `info`."""
    model.load_state_dict(_unprefixed("model", tensors))
    ema.ema.load_state_dict(_unprefixed("ema", tensors))
    ema.updates = meta["ema_updates"]
    optimizer.load_state_dict(optimizer_from_tensors(tensors, meta["optimizer"]))
    if scaler is not None and meta["scaler"] is not None:
        scaler.load_state_dict(meta["scaler"])
    set_rng_state(tensors, meta["rng"])
    return meta["info"]
