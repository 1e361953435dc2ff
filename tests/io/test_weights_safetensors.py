"""detforge's own weights files: bit-exact round trip, atomic writes, one-line errors."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

import detforge
from detforge import fsutil
from detforge.errors import WeightsError
from detforge.io.weights import load, read_weights, save_weights


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = detforge.create_model("yolov8n", num_classes=3, overrides={"head.box_convs": 1})
    with torch.no_grad():  # move every weight and BN statistic off its initial value
        for tensor in model.state_dict().values():
            if tensor.is_floating_point() and tensor.numel() > 16:
                tensor.add_(torch.randn_like(tensor) * 0.1)
    model.names = ["platelet", "rbc", "wbc"]
    return model.eval()


def test_round_trip_is_bit_exact(model, tmp_path):
    path = save_weights(model, tmp_path / "model.safetensors", metadata={"epoch": "7"})
    loaded = detforge.load(path)

    original, restored = model.state_dict(), loaded.state_dict()
    assert list(restored) == list(original)
    for key in original:
        assert restored[key].dtype == original[key].dtype and torch.equal(restored[key], original[key]), key
    assert loaded.config.model_dump(mode="json") | {"names": None} == model.config.model_dump(mode="json") | {
        "names": None
    }
    assert loaded.config.head.kwargs["box_convs"] == 1 and loaded.num_classes == 3
    assert loaded.names == ["platelet", "rbc", "wbc"]
    assert not loaded.training

    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        raw_a, raw_b = loaded.raw(x), model.raw(x)
    assert torch.equal(raw_a.box, raw_b.box) and torch.equal(raw_a.cls, raw_b.cls)
    assert read_weights(path)[1]["epoch"] == "7"


class HalfWriter:
    """A file that writes half of the data, then fails: a crash in the middle of the write."""

    def __init__(self, fh):
        self.fh = fh

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def write(self, data):
        self.fh.write(data[: len(data) // 2])
        self.fh.flush()
        raise OSError("disk full")


@pytest.mark.parametrize("failure", ["mid-write", "before-rename"])
def test_write_is_atomic(model, tmp_path, monkeypatch, failure):
    path = tmp_path / "model.safetensors"
    save_weights(model, path)
    before = path.read_bytes()

    if failure == "mid-write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(fsutil.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    else:

        def crash(fd):
            raise OSError("disk full")

        monkeypatch.setattr(fsutil.os, "fsync", crash)  # data fully written, not yet renamed
    other = detforge.create_model("yolov8n", num_classes=3, overrides={"head.box_convs": 1})
    with pytest.raises(OSError, match="disk full"):
        save_weights(other, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]  # no temp file left behind
    restored = load(path).state_dict()
    assert all(torch.equal(restored[k], v) for k, v in model.state_dict().items())


def test_fused_model_is_not_saved(tmp_path):
    model = detforge.create_model("yolov8n", num_classes=2).eval().fuse()
    with pytest.raises(WeightsError, match="fuse"):
        save_weights(model, tmp_path / "fused.safetensors")
    assert not (tmp_path / "fused.safetensors").exists()


def test_reserved_metadata_is_refused(model, tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_weights(model, tmp_path / "x.safetensors", metadata={"config": "{}"})


def test_pickle_checkpoint_points_to_convert(tmp_path):
    path = tmp_path / "best.pt"
    torch.save({"model": torch.zeros(1)}, path)
    with pytest.raises(WeightsError) as err:
        load(path)
    assert str(err.value) == (
        f"{path} is a pickle checkpoint; convert it first: detforge convert {path} {tmp_path / 'best.safetensors'}"
    )


def test_errors_are_one_line_and_name_the_file(model, tmp_path):
    good = save_weights(model, tmp_path / "good.safetensors")
    tensors, metadata = read_weights(good)

    cases = {}
    cases["missing.safetensors"] = None
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    cases[garbage.name] = "not a readable safetensors file"
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    cases[plain.name] = "without a detforge model config"
    newer = tmp_path / "newer.safetensors"
    save_file(tensors, newer, metadata={**metadata, "format_version": "99"})
    cases[newer.name] = "newer detforge"
    wrong_shape = tmp_path / "wrong_shape.safetensors"
    config = json.loads(metadata["config"])
    config["head"]["num_classes"] = 5
    save_file(tensors, wrong_shape, metadata={**metadata, "config": json.dumps(config), "names": "null"})
    cases[wrong_shape.name] = r"expects \[5"
    missing_key = tmp_path / "missing_key.safetensors"
    save_file({k: v for k, v in tensors.items() if "sppf" not in k}, missing_key, metadata=metadata)
    cases[missing_key.name] = "missing, e.g. .'backbone.sppf"
    bad_config = tmp_path / "bad_config.safetensors"
    config = json.loads(metadata["config"])
    config["neck"]["type"] = "no_such_neck"
    save_file(tensors, bad_config, metadata={**metadata, "config": json.dumps(config)})
    cases[bad_config.name] = "unknown neck 'no_such_neck'"

    for name, pattern in cases.items():
        with pytest.raises(WeightsError) as err:
            load(tmp_path / name)
        message = str(err.value)
        assert "\n" not in message and name in message, message
        if pattern:
            assert re.search(pattern, message), message


def test_saved_tensors_are_plain_state_dict(model, tmp_path):
    path = save_weights(model, tmp_path / "model.safetensors")
    assert load_file(path).keys() == model.state_dict().keys()
