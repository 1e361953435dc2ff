"""The pickle-free training state restores model, EMA, optimizer and every RNG exactly."""

import json
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from detforge.engine.checkpoint import load_train_state, restore_train_state, save_train_state
from detforge.engine.ema import ModelEMA
from detforge.engine.optim import build_optimizer
from detforge.errors import WeightsError


def setup(seed=0, optimizer="sgd"):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    opt = build_optimizer(model, optimizer, 0.01, 0.9, 1e-4)
    return model, ModelEMA(model, tau=3.0), opt


def step(model, ema, opt):
    x = torch.rand(2, 3, 6, 6)
    model(x).square().mean().backward()
    opt.step()
    opt.zero_grad()
    ema.update(model)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_round_trip_continues_identically(tmp_path, optimizer):
    model, ema, opt = setup(optimizer=optimizer)
    for _ in range(3):
        step(model, ema, opt)
    random.seed(5)
    np.random.seed(5)
    save_train_state(tmp_path / "state.safetensors", model=model, ema=ema, optimizer=opt, scaler=None,
                     info={"epoch": 2, "note": "x"})
    # continue the original
    for _ in range(2):
        step(model, ema, opt)
    expected = ([p.clone() for p in model.parameters()], [p.clone() for p in ema.ema.parameters()],
                random.random(), float(np.random.rand()))

    model2, ema2, opt2 = setup(seed=123, optimizer=optimizer)
    torch.manual_seed(999)
    random.seed(0)
    info = restore_train_state(*load_train_state(tmp_path / "state.safetensors", info={}), model=model2, ema=ema2,
                               optimizer=opt2, scaler=None)
    assert info == {"epoch": 2, "note": "x"} and ema2.updates == 3
    for _ in range(2):
        step(model2, ema2, opt2)
    assert all(torch.equal(a, b) for a, b in zip(expected[0], model2.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(expected[1], ema2.ema.parameters()))
    assert (random.random(), float(np.random.rand())) == expected[2:]


def test_file_is_not_a_pickle_and_bad_files_are_one_line(tmp_path):
    model, ema, opt = setup()
    path = tmp_path / "state.safetensors"
    save_train_state(path, model=model, ema=ema, optimizer=opt, scaler=None, info={})
    assert path.read_bytes()[:1] != b"\x80"
    with pytest.raises(WeightsError, match="no training state"):
        load_train_state(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="junk.safetensors"):
        load_train_state(tmp_path / "junk.safetensors")


def corrupt(path, tensors=None, **meta_changes):
    """Rewrite a saved state with some tensors replaced and some metadata keys replaced (None: removed)."""
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["state"])
    for dotted, value in meta_changes.items():
        *parents, leaf = dotted.split("__")
        node = meta
        for key in parents:
            node = node[key]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    state = load_file(str(path))
    state.update(tensors or {})
    save_file(state, str(path), metadata={"format": "detforge-train-state", "state": json.dumps(meta)})


INFO = {"epoch": 1, "best_fitness": 0.5, "epochs_without_gain": 0, "loss_history": [], "train_config": {}}


@pytest.mark.parametrize(("tensors", "changes", "message"), [
    (None, {"info__epoch": None}, "'info.epoch' is missing"),
    (None, {"info__epoch": "1"}, "'info.epoch' is a str"),
    (None, {"optimizer": None}, "'optimizer' is missing"),
    (None, {"rng__numpy": [1, 2]}, "random generator states have the wrong length"),
    ({"rng.torch": torch.zeros(7, dtype=torch.uint8)}, {}, "RuntimeError"),
    ({"rng.numpy": torch.zeros(3, dtype=torch.int64)}, {}, "Error: "),
    ({"model.0.weight": torch.zeros(1, 2)}, {}, "size mismatch"),
    ({"model.0.weight": torch.zeros(4, 3, 3, 3, dtype=torch.bool)}, {}, None),
])
def test_corrupt_states_are_one_line_errors_naming_the_file(tmp_path, tensors, changes, message):
    model, ema, opt = setup()
    path = tmp_path / "last_state.safetensors"
    save_train_state(path, model=model, ema=ema, optimizer=opt, scaler=None, info=INFO)
    corrupt(path, tensors, **changes)
    rng = torch.get_rng_state()
    try:
        restore_train_state(*load_train_state(path), model=model, ema=ema, optimizer=opt, scaler=None)
    except WeightsError as err:
        text = str(err)
        assert text.startswith(f"{path}: corrupt training state") and "\n" not in text
        assert message is None or message in text
    else:
        assert message is None  # a bool tensor of the right shape is cast, as load_state_dict does
    torch.set_rng_state(rng)


def test_state_metadata_that_is_not_json_is_one_line(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "last_state.safetensors"
    for state in ("{not json", "[" * 100_000, "5"):
        save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "detforge-train-state", "state": state})
        with pytest.raises(WeightsError, match="corrupt training state"):
            load_train_state(path)
