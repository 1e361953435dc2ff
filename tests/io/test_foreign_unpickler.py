"""The restricted unpickler: data and model objects load, anything that would run code is refused."""

from __future__ import annotations

import builtins
import codecs
import collections
import functools
import os
import pathlib
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook

from detforge.errors import UnsafeCheckpointError, WeightsError
from detforge.io.foreign import STANDIN_NAMESPACES, StandIn, load_checkpoint, state_dict_from_standin


class Payload:
    """Pickles as `callable(*args)`: what a malicious checkpoint does to run code on load."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def touch_command(marker) -> str:
    return f"{sys.executable} -c \"open({str(marker)!r}, 'w').close()\""


def touch_code(marker) -> str:
    return f"open({str(marker)!r}, 'w').close()"


PAYLOADS = {
    "os.system": lambda m: Payload(os.system, touch_command(m)),
    "builtins.eval": lambda m: Payload(eval, touch_code(m)),
    "builtins.exec": lambda m: Payload(exec, touch_code(m)),
    "subprocess.Popen": lambda m: Payload(subprocess.Popen, [sys.executable, "-c", touch_code(m)]),
    "builtins.__import__": lambda m: Payload(builtins.__import__, "os"),
    "builtins.getattr": lambda m: Payload(getattr, 1, "real"),
    "functools.partial": lambda m: functools.partial(os.system, touch_command(m)),
    "copyreg-style codec": lambda m: Payload(codecs.encode, "payload", "rot13"),
    "stand-in namespace function": lambda m: Payload(register_module_forward_hook, None),
}


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_malicious_checkpoint_is_refused_without_side_effect(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    # The payload sits next to ordinary data, as it would in a doctored training checkpoint.
    torch.save({"epoch": 3, "weights": torch.ones(2), "model": PAYLOADS[kind](marker)}, path)
    with pytest.raises((UnsafeCheckpointError, WeightsError)) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert not marker.exists()
    if kind != "copyreg-style codec":  # the codec is allowed as a global but only with latin1
        assert isinstance(err.value, UnsafeCheckpointError)
    # Sanity: the same payload really would have run under an unrestricted load.
    if kind in ("os.system", "builtins.eval"):
        torch.load(path, weights_only=False)
        assert marker.exists()


def test_refusal_names_the_global(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save([Payload(os.system, "true")], path)
    with pytest.raises(
        UnsafeCheckpointError, match=rf"evil\.pt: refused to unpickle {os.system.__module__}\.system"
    ):
        load_checkpoint(path)


def test_legacy_pickle_format_is_rejected_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "legacy.pt"
    torch.save({"model": PAYLOADS["os.system"](marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsError, match="legacy"):
        load_checkpoint(path)
    assert not marker.exists()


def test_non_checkpoints_are_rejected(tmp_path):
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), scripted)
    with pytest.raises(WeightsError, match="TorchScript"):
        load_checkpoint(scripted)

    other_zip = tmp_path / "other.pt"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(WeightsError, match="data.pkl"):
        load_checkpoint(other_zip)

    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="not a torch checkpoint"):
        load_checkpoint(text)

    with pytest.raises(WeightsError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_safetensors_file_gets_a_pointer_to_load(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.pt"
    save_file({"w": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match="safetensors file.*detforge.load"):
        load_checkpoint(path)


def test_plain_data_round_trips(tmp_path):
    data = {
        "fp32": torch.randn(3, 4),
        "fp16": torch.randn(5).half(),
        "bf16": torch.randn(2, 2).to(torch.bfloat16),
        "int": torch.arange(6).view(2, 3)[:, 1:],  # a non-contiguous view
        "param": nn.Parameter(torch.randn(3)),
        "ordered": collections.OrderedDict(a=1, b=[1.5, "x"]),
        "set": {1, 2},
        "frozen": frozenset({"a"}),
        "bytes": b"\x00\xffabc",
        "complex": 1 + 2j,
        "np_scalar": np.float64(0.25),
        "np_array": np.arange(4, dtype=np.float32),
        "size": torch.Size([1, 2]),
        "device": torch.device("cpu"),
        "dtype": torch.float16,
        "none": None,
        "path": pathlib.PosixPath("/runs/train/exp"),
        "windows_path": pathlib.PureWindowsPath("C:/runs/exp"),
        "namespace": types.SimpleNamespace(lr=0.01, epochs=3),
    }
    path = tmp_path / "data.pt"
    torch.save(data, path)
    loaded = load_checkpoint(path)
    assert loaded.keys() == data.keys()
    for key in ("fp32", "fp16", "bf16", "int"):
        assert loaded[key].dtype == data[key].dtype and torch.equal(loaded[key], data[key])
    assert isinstance(loaded["param"], nn.Parameter) and torch.equal(loaded["param"], data["param"])
    assert np.array_equal(loaded["np_array"], data["np_array"]) and loaded["np_scalar"] == 0.25
    for key in (
        "ordered",
        "set",
        "frozen",
        "bytes",
        "complex",
        "size",
        "device",
        "dtype",
        "none",
        "namespace",
    ):
        assert loaded[key] == data[key]
    assert loaded["path"] == pathlib.PurePosixPath("/runs/train/exp") and not isinstance(
        loaded["path"], pathlib.Path
    )
    assert loaded["windows_path"] == data["windows_path"]


class Scaler(nn.Module):
    """A module with a persistent and a non-persistent buffer, defined outside torch."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.register_buffer("offset", torch.randn(4))
        self.register_buffer("cache", torch.randn(4), persistent=False)


def test_standin_state_dict_matches_the_real_module(tmp_path):
    model = nn.Sequential(Scaler(), nn.BatchNorm2d(4), nn.SiLU(), nn.ModuleList([nn.Linear(4, 2), None]))
    model[1].running_mean.normal_()
    path = tmp_path / "model.pt"
    torch.save({"model": model}, path)

    with pytest.raises(UnsafeCheckpointError, match=f"{__name__}.Scaler"):
        load_checkpoint(path)  # this test module is not an expected model namespace
    loaded = load_checkpoint(path, (*STANDIN_NAMESPACES, __name__))["model"]

    assert (
        isinstance(loaded, StandIn) and repr(loaded) == "<stand-in for torch.nn.modules.container.Sequential>"
    )
    assert not isinstance(loaded, nn.Module)
    state = state_dict_from_standin(loaded)
    expected = model.state_dict()
    assert list(state) == list(expected)  # same order, and "0.cache" (non-persistent) left out
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert loaded._modules["1"].eps == model[1].eps  # plain attributes are kept as state


def test_standin_classes_are_never_imported(tmp_path, monkeypatch):
    class Ghost:
        pass

    Ghost.__module__ = "torch.nn.modules.not_a_real_module"
    Ghost.__qualname__ = "Ghost"
    monkeypatch.setitem(sys.modules, "torch.nn.modules.not_a_real_module", type(sys)("fake"))
    sys.modules["torch.nn.modules.not_a_real_module"].Ghost = Ghost
    ghost = Ghost()
    ghost.value = 7
    path = tmp_path / "ghost.pt"
    torch.save([ghost], path)
    monkeypatch.delitem(sys.modules, "torch.nn.modules.not_a_real_module")

    (loaded,) = load_checkpoint(path)
    assert type(loaded).standin_source == "torch.nn.modules.not_a_real_module.Ghost"
    assert loaded.value == 7
    assert "torch.nn.modules.not_a_real_module" not in sys.modules


def test_state_cannot_shadow_standin_methods(tmp_path, monkeypatch):
    class Sneaky:
        pass

    Sneaky.__module__ = "ultralytics.fake"
    Sneaky.__qualname__ = "Sneaky"
    monkeypatch.setitem(sys.modules, "ultralytics.fake", type(sys)("ultralytics.fake"))
    sys.modules["ultralytics.fake"].Sneaky = Sneaky
    obj = Sneaky()
    obj.__dict__["__setstate__"] = "shadow"
    obj.__dict__["standin_source"] = "spoofed"
    path = tmp_path / "sneaky.pt"
    torch.save(obj, path)

    loaded = load_checkpoint(path)
    assert "__setstate__" not in vars(loaded)
    assert type(loaded).standin_source == "ultralytics.fake.Sneaky"


def test_state_dict_from_non_module_is_an_error():
    with pytest.raises(WeightsError, match="expected a pickled torch module"):
        state_dict_from_standin({"weight": torch.zeros(1)})
