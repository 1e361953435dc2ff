"""Fuzzers for checkpoint and weights loading (issue 8): mutate real files, load them, check the property.

Seeds are real files: a torch.save'd training-style checkpoint (modules, tensors, numpy scalars, paths,
an optimizer-like state) and a detforge safetensors file. Mutations: random bytes in data.pkl, hostile
opcodes spliced in at opcode boundaries, zip record fields, and safetensors header JSON values.

Property for every input: `detforge.load` / `load_checkpoint` either returns or raises a one-line
`DetforgeError`; no file in the watched folder changes; `torch._utils`, `pathlib` and tensor loading behave
the same afterwards (checked per example here, and fully per test by conftest's `process_unchanged`);
peak memory stays within a bound proportional to the file size. Short budget by default; `make fuzz`
(`DETFORGE_FUZZ_SECONDS`) runs them for longer.
"""

from __future__ import annotations

import collections
import io
import json
import pathlib
import pickle
import pickletools
import struct
import zipfile

import ckpt_payloads as pay
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from security_helpers import PeakMemory, assert_unchanged, run_fuzz, snapshot
from torch import nn

import detforge
from detforge.errors import DetforgeError
from detforge.io.foreign import load_checkpoint, state_dict_from_standin

MiB = 1 << 20
pytestmark = pytest.mark.fuzz


def seed_checkpoint() -> dict:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.SiLU(), nn.ModuleList([nn.Linear(4, 2)]))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model[0].weight.grad = torch.ones_like(model[0].weight)
    optimizer.step()  # momentum buffers: an optimizer state like a training checkpoint's
    return {
        "epoch": 3,
        "model": model,
        "optimizer": optimizer.state_dict(),
        "best_fitness": np.float64(0.5),
        "array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "train_args": {"data": pathlib.PurePosixPath("/data/x.yaml"), "imgsz": 640, "names": {0: "a"}},
        "ordered": collections.OrderedDict(a=(1, 2.5), b=b"\x00\xff"),
        "half": torch.randn(3).half(),
    }


SEED = pay.saved(seed_checkpoint())


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


SEED_FILES = members(SEED)
PKL = next(name for name in SEED_FILES if name.endswith("/data.pkl"))
OPCODE_STARTS = [pos for _, _, pos in pickletools.genops(SEED_FILES[PKL])]

HOSTILE_SNIPPETS = [
    pay.global_("os", "system") + pay.unicode("true") + pickle.TUPLE1 + pickle.REDUCE,
    pay.global_("builtins", "eval") + pay.unicode("1") + pickle.TUPLE1 + pickle.REDUCE,
    pay.global_("torch._utils", "_rebuild_tensor_v2") + pickle.NONE + pickle.EMPTY_DICT
    + pay.unicode("__defaults__") + pickle.NONE + pickle.SETITEM + pickle.TUPLE2 + pickle.BUILD,
    pay.global_("pathlib", "PurePosixPath") + pickle.EMPTY_DICT + pay.unicode("x") + pickle.NONE + pickle.SETITEM
    + pickle.BUILD,
    pay.global_("builtins", "bytearray") + pickle.BININT + struct.pack("<i", 1 << 30) + pickle.TUPLE1
    + pickle.REDUCE,
    pay.global_("torch", "Size") + pickle.EMPTY_TUPLE + pickle.NEWOBJ,
    pay.global_("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.EMPTY_DICT
    + pay.unicode("__class__") + pickle.NONE + pickle.SETITEM + pickle.BUILD,
    pay.global_("numpy.core.multiarray", "_reconstruct") + pay.global_("numpy", "ndarray")
    + pickle.BININT + struct.pack("<i", 1 << 30) + pickle.TUPLE1 + pay.unicode("b") + pickle.TUPLE3 + pickle.REDUCE,
    pickle.EMPTY_LIST * 300 + pickle.APPEND * 299,
    pickle.MARK + pay.unicode("storage") + pay.global_("torch", "FloatStorage") + pay.unicode("0")
    + pay.unicode("cpu") + pickle.BININT + struct.pack("<i", 1 << 28) + pickle.TUPLE + pickle.BINPERSID,
    pickle.EXT1 + b"\x01",
    pickle.BINGET + b"\xff",
    pickle.EMPTY_DICT + pickle.EMPTY_TUPLE + pickle.TUPLE1 * 5000 + pickle.NONE + pickle.SETITEM,
    pickle.FRAME + struct.pack("<Q", 1 << 62),
    pickle.BINBYTES8 + struct.pack("<Q", 1 << 60),
    pickle.LONG4 + struct.pack("<i", 1 << 24),
    pickle.STOP,
    pickle.POP * 3,
    pickle.MARK * 50,
]


def check_property(path: pathlib.Path, watched: pathlib.Path, loaders=(load_checkpoint,)) -> None:
    """Load `path` with each loader: result or one-line DetforgeError; nothing else changes."""
    before = snapshot(watched)
    defaults = torch._utils._rebuild_tensor_v2.__defaults__
    budget = 256 * MiB + 64 * path.stat().st_size
    for loader in loaders:
        with PeakMemory() as peak:
            try:
                result = loader(path)
            except DetforgeError as err:
                message = str(err)
                assert message and "\n" not in message, message
            else:
                if isinstance(result, dict) and isinstance(result.get("model"), detforge.io.foreign.StandIn):
                    try:
                        state_dict_from_standin(result["model"])
                    except DetforgeError as err:
                        assert "\n" not in str(err)
                del result
        assert peak.grown < budget, (peak.grown, budget)
    assert torch._utils._rebuild_tensor_v2.__defaults__ == defaults
    assert str(pathlib.PurePosixPath("/a") / "b") == "/a/b"
    assert_unchanged(before, snapshot(watched))


@pytest.fixture
def dirs(tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "victim.txt").write_text("secret")
    (watched / "victim.txt").chmod(0o600)
    return tmp_path, watched


def test_seed_loads(dirs):
    tmp, _ = dirs
    path = tmp / "seed.pt"
    path.write_bytes(SEED)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["array"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert sorted(state_dict_from_standin(loaded["model"])) == sorted(seed_checkpoint()["model"].state_dict())


def test_fuzz_pickle_bytes(dirs):
    tmp, watched = dirs
    path = tmp / "mutant.pt"
    pkl = SEED_FILES[PKL]

    @given(st.lists(st.tuples(st.integers(0, len(pkl) - 1), st.integers(0, 255), st.sampled_from("rid")),
                    min_size=1, max_size=8))
    def check(edits):
        data = bytearray(pkl)
        for pos, byte, kind in edits:
            pos = min(pos, len(data) - 1)
            if kind == "r":
                data[pos] = byte
            elif kind == "i":
                data.insert(pos, byte)
            elif len(data) > 1:
                del data[pos]
        path.write_bytes(rezip({**SEED_FILES, PKL: bytes(data)}))
        check_property(path, watched)

    run_fuzz(check, examples=25)


def test_fuzz_hostile_opcodes(dirs):
    tmp, watched = dirs
    path = tmp / "spliced.pt"
    pkl = SEED_FILES[PKL]

    @given(st.lists(st.tuples(st.sampled_from(OPCODE_STARTS), st.sampled_from(HOSTILE_SNIPPETS)),
                    min_size=1, max_size=3))
    def check(splices):
        data = pkl
        for pos, snippet in sorted(splices, reverse=True):
            data = data[:pos] + snippet + data[pos:]
        path.write_bytes(rezip({**SEED_FILES, PKL: data}))
        check_property(path, watched, loaders=(load_checkpoint, detforge.load))

    run_fuzz(check, examples=25)


def test_fuzz_zip_records(dirs):
    """Random bytes in the local headers, central directory and end record (where the sizes and offsets are)."""
    tmp, watched = dirs
    path = tmp / "zip.pt"
    size = len(SEED)
    eocd = SEED.rindex(b"PK\x05\x06")
    central = SEED.index(b"PK\x01\x02")
    regions = [(0, 64), (central, eocd + 22)]

    @given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=4)),
                    min_size=1, max_size=6), st.booleans())
    def check(edits, truncate):
        data = bytearray(SEED)
        for region, offset, patch in edits:
            start, end = regions[region]
            pos = start + offset % (end - start)
            data[pos:pos + len(patch)] = patch
        if truncate:
            data = data[: size - 1 - edits[0][1] % 200]
        path.write_bytes(bytes(data))
        check_property(path, watched, loaders=(load_checkpoint, detforge.load))

    run_fuzz(check, examples=25)


def test_fuzz_container_prefixes(dirs):
    """Whatever comes first (tar header, pickle, safetensors length, zip magic), a seed zip appended."""
    tmp, watched = dirs
    path = tmp / "prefix.pt"

    @given(st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80" + b"\x00" * 7 + b"{", pay.polyglot(
        watched / "victim.txt", b"")[:1024]]), st.binary(max_size=64))
    def check(prefix, noise):
        path.write_bytes(prefix + noise + SEED)
        check_property(path, watched, loaders=(load_checkpoint, detforge.load))

    run_fuzz(check, examples=15)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    model = detforge.create_model("yolov8n", num_classes=2, overrides={"head.box_convs": 1})
    model.names = ["a", "b"]
    path = detforge.save_weights(model, tmp_path_factory.mktemp("seed") / "seed.safetensors")
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]), data[8 + length:]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)


def test_fuzz_safetensors_header(dirs, weights_file):
    """Replace values anywhere in the header (tensor entries, metadata strings, the embedded config)."""
    tmp, watched = dirs
    header, body = weights_file
    path = tmp / "mutant.safetensors"
    keys = sorted(header)

    @given(st.lists(st.tuples(st.sampled_from(keys), st.sampled_from(["dtype", "shape", "data_offsets", "*"]),
                              JSON_VALUES), min_size=1, max_size=3),
           st.sampled_from(["names", "config", "format_version", "format"]), JSON_VALUES, st.booleans())
    def check(edits, meta_key, meta_value, edit_config):
        mutated = json.loads(json.dumps(header))
        for key, field, value in edits:
            if key == "__metadata__":
                continue
            if field == "*":
                mutated[key] = value
            elif isinstance(mutated[key], dict):
                mutated[key][field] = value
        meta = mutated["__metadata__"]
        if edit_config:
            config = json.loads(meta["config"])
            config["head"]["num_classes"] = meta_value
            meta["config"] = json.dumps(config)
        else:
            meta[meta_key] = meta_value if isinstance(meta_value, str) else json.dumps(meta_value)
        raw = json.dumps(mutated).encode()
        path.write_bytes(len(raw).to_bytes(8, "little") + raw + body)
        check_property(path, watched, loaders=(detforge.load,))

    run_fuzz(check, examples=12)
