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
from detforge.limits import short

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


# What the trainer's `info` holds (key → type), checked before a resume touches anything.
RESUME_INFO: dict[str, Any] = {"epoch": int, "best_fitness": (int, float), "epochs_without_gain": int,
                               "loss_history": list, "train_config": dict}


def load_train_state(path: str | Path,
                     info: dict[str, Any] = RESUME_INFO) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a training state file → (tensors, metadata). One-line WeightsError on any problem, including
    metadata without the keys (and types) a resume needs; `info`: what the saved `info` must hold."""
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
    try:
        meta = json.loads(header["state"])
    except (KeyError, ValueError, RecursionError) as err:
        raise _corrupt(path, f"metadata is not JSON: {short(str(err), 80)}") from None
    problem = _meta_problem(meta, tensors, {**_META_SCHEMA, "info": info})
    if problem:
        raise _corrupt(path, problem)
    meta["source"] = str(path)  # for the errors of restore_train_state
    return tensors, meta


# What the metadata must hold: key → required type (a dict means a nested mapping checked the same way).
_META_SCHEMA: dict[str, Any] = {
    "info": RESUME_INFO,
    "optimizer": {"param_groups": list, "scalars": dict},
    "rng": {"numpy": list, "python": list},
    "ema_updates": int,
    "scaler": (dict, type(None)),
}


def _meta_problem(meta: Any, tensors: dict[str, torch.Tensor], schema: dict = _META_SCHEMA, where: str = "") -> str:
    """What is wrong with the metadata's shape ('' if nothing), checked before anything is restored."""
    if not isinstance(meta, dict):
        return f"{where or 'metadata'} is not a mapping"
    for key, kind in schema.items():
        if key not in meta:
            return f"'{where}{key}' is missing"
        problem = (_meta_problem(meta[key], tensors, kind, f"{where}{key}.") if isinstance(kind, dict) else
                   "" if isinstance(meta[key], kind) and not isinstance(meta[key], bool) else
                   f"'{where}{key}' is a {type(meta[key]).__name__}")
        if problem:
            return problem
    if where:
        return ""
    if len(meta["rng"]["numpy"]) != 4 or len(meta["rng"]["python"]) != 3:
        return "random generator states have the wrong length"
    for key in ("rng.torch", "rng.numpy"):
        if key not in tensors:
            return f"tensor '{key}' is missing"
    return ""


def _corrupt(path: str | Path, problem: str) -> WeightsError:
    return WeightsError(
        f"{path}: corrupt training state ({problem}); it cannot be resumed — start a new run, e.g. with "
        "--weights set to its last.safetensors"
    )


def restore_train_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], *, model: torch.nn.Module, ema,
                        optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> dict[str, Any]:
    """Put model, EMA, optimizer, scaler and RNGs back; returns the saved `info`.

    A state whose tensors do not fit (wrong shapes, a random-generator state of the wrong size) is a
    one-line WeightsError naming the file, not a traceback."""
    try:
        model.load_state_dict(_unprefixed("model", tensors))
        ema.ema.load_state_dict(_unprefixed("ema", tensors))
        ema.updates = meta["ema_updates"]
        optimizer.load_state_dict(optimizer_from_tensors(tensors, meta["optimizer"]))
        if scaler is not None and meta["scaler"] is not None:
            scaler.load_state_dict(meta["scaler"])
        set_rng_state(tensors, meta["rng"])
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, OverflowError) as err:
        problem = " ".join(str(err).split())
        raise _corrupt(meta.get("source", "training state"),
                       f"{err.__class__.__name__}: {short(problem, 160)}") from None
    return meta["info"]
