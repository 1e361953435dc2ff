"""Regression tests for the checkpoint findings of issue 8, one per attack (each failed before the fix).

Every test also runs under conftest's `process_unchanged`: torch, pathlib and builtins behave the
same afterwards.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
import zipfile

import ckpt_payloads as pay
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from security_helpers import PeakMemory, assert_one_line_error, assert_unchanged, run_cli, snapshot

import detforge
from detforge.errors import WeightsError
from detforge.io.convert import import_checkpoint
from detforge.io.foreign import load_checkpoint, state_dict_from_standin
from detforge.io.ultralytics_map import TRAINING_SIZES, training_sizes

MiB = 1 << 20


def one_line_error(call, *args, match: str = "") -> str:
    with pytest.raises(WeightsError) as err:
        call(*args)
    message = str(err.value)
    assert "\n" not in message and message.strip() == message, message
    assert match in message, message
    return message


# -- item 1: container confusion ---------------------------------------------------------------------------

def test_tar_zip_polyglot_touches_no_file(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("secret")
    victim.chmod(0o600)
    poly = tmp_path / "poly.pt"
    poly.write_bytes(pay.polyglot(victim, pay.saved({"w": torch.ones(2)})))
    assert zipfile.is_zipfile(poly)  # what the old check asked: the appended zip fooled it
    out = tmp_path / "out"
    before = snapshot(tmp_path, skip=[out])

    for call in (detforge.load, load_checkpoint, import_checkpoint):
        one_line_error(call, poly, match="tar archive")
    assert_one_line_error(run_cli(["convert", poly, out / "x.safetensors"]), "poly.pt")
    assert_one_line_error(run_cli(["info", poly]), "poly.pt")

    assert_unchanged(before, snapshot(tmp_path, skip=[out]))
    assert victim.read_text() == "secret" and victim.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("case", ["data before the zip", "trailing data", "two folders", "dot-dot", "duplicate"])
def test_inconsistent_zip_layouts_are_refused(tmp_path, case):
    good = pay.torch_zip(pay.pickle_program(pay.P.NONE))
    data = {
        "data before the zip": b"PK\x03\x04" + b"\x00" * 60 + good,
        "trailing data": good + b"junk",
        "two folders": pay.torch_zip(pay.pickle_program(pay.P.NONE), extra={"other/data.pkl": b"x"}),
        "dot-dot": pay.torch_zip(pay.pickle_program(pay.P.NONE), extra={"archive/../evil": b"x"}),
        "duplicate": None,
    }[case]
    if data is None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it writes
            data = pay.torch_zip(pay.pickle_program(pay.P.NONE), extra={"archive/data.pkl": b"x"})
    path = tmp_path / "odd.pt"
    path.write_bytes(data)
    one_line_error(load_checkpoint, path)
    assert load_checkpoint(_write(tmp_path / "fine.pt", good)) is None  # the same archive, well-formed


def _write(path, data):
    path.write_bytes(data)
    return path


# -- item 2: allow-listed globals stay inert ---------------------------------------------------------------

NEGATE_DEFAULTS = pay.P.MARK + pay.P.NEWTRUE + pay.P.NONE + pay.P.NONE + pay.P.TUPLE


@pytest.mark.parametrize(
    ("module", "name", "attribute", "value"),
    [
        ("torch._utils", "_rebuild_tensor_v2", "__defaults__", NEGATE_DEFAULTS),
        ("pathlib", "PurePosixPath", "__str__", pay.global_("builtins", "set")),
        ("pathlib", "PosixPath", "_flavour", pay.P.NONE),
        ("collections", "OrderedDict", "__setitem__", pay.P.NONE),
        ("torch", "float32", "is_floating_point", pay.P.NONE),
        ("torch", "Size", "__len__", pay.P.NONE),
    ],
)
def test_build_on_an_allowed_global_is_refused(tmp_path, module, name, attribute, value):
    path = tmp_path / "evil.pt"
    data_pkl = pay.build_on_global(module, name, attribute, value)
    path.write_bytes(pay.torch_zip(data_pkl, pay.tensor_pickle()[1]))
    defaults = torch._utils._rebuild_tensor_v2.__defaults__
    one_line_error(load_checkpoint, path, match="evil.pt")
    assert torch._utils._rebuild_tensor_v2.__defaults__ == defaults
    assert str(pathlib.PurePosixPath("/a") / "b") == "/a/b"
    saved = tmp_path / "plain.pt"
    torch.save({"t": torch.tensor([1.0, -2.0])}, saved)
    assert torch.load(saved, weights_only=True)["t"].tolist() == [1.0, -2.0]


def test_reduce_never_reaches_the_real_callables(tmp_path):
    """The pickle's own `_rebuild_tensor_v2` is our function: the real torch one is never on the stack."""
    path = tmp_path / "w.pt"
    body, storages = pay.tensor_pickle()
    path.write_bytes(pay.torch_zip(pay.pickle_program(body), storages))
    assert load_checkpoint(path)["w"].tolist() == [1.0, 2.0]
    grab = pay.pickle_program(pay.global_("torch._utils", "_rebuild_tensor_v2"))
    path.write_bytes(pay.torch_zip(grab))
    assert load_checkpoint(path) is not torch._utils._rebuild_tensor_v2


def test_expanded_view_cannot_amplify_a_storage(tmp_path):
    """A 4-byte storage viewed as 2^40 elements with stride 0: refused before anyone copies it."""
    body, storages = pay.tensor_pickle()
    body = body.replace(pay.binint(2) + pay.P.TUPLE1 + pay.binint(1) + pay.P.TUPLE1,
                        pay.P.LONG1 + b"\x06" + (1 << 40).to_bytes(6, "little") + pay.P.TUPLE1 + pay.binint(0)
                        + pay.P.TUPLE1)
    path = tmp_path / "expand.pt"
    path.write_bytes(pay.torch_zip(pay.pickle_program(body), storages))
    one_line_error(load_checkpoint, path, match="expanded view")


def test_storage_size_must_match_its_member(tmp_path):
    body, _ = pay.tensor_pickle()
    path = tmp_path / "short.pt"
    path.write_bytes(pay.torch_zip(pay.pickle_program(body), {"0": b"\x00" * 4}))  # numel 2 × 4 bytes declared
    one_line_error(load_checkpoint, path, match="declares 8 bytes")


# -- item 4: safetensors headers whose length is 0x80 mod 256 ------------------------------------------------

def test_safetensors_with_0x80_header_length_loads(tmp_path):
    """The issue's example: yolov8n with names ["cat" + "s" * k, "dog"] for the k that makes the header
    length ≡ 0x80 (mod 256). The names appear twice in the header, which safetensors pads to 8 bytes,
    so 4 more characters add exactly 8 bytes."""
    model = detforge.create_model("yolov8n", num_classes=2, overrides={"head.box_convs": 1})
    model.names = ["cat" + "s" * 55, "dog"]
    path = detforge.save_weights(model, tmp_path / "w.safetensors")
    length = int.from_bytes(path.read_bytes()[:8], "little")
    model.names = ["cat" + "s" * (55 + 4 * (((0x80 - length) % 256) // 8)), "dog"]
    path = detforge.save_weights(model, tmp_path / "w.safetensors")
    assert path.read_bytes()[0] == 0x80
    assert detforge.load(path).names == model.names


# -- item 5: bounded cost ----------------------------------------------------------------------------------

def test_deflate_bomb_is_refused_before_inflating(tmp_path):
    path = pay.deflate_bomb(tmp_path / "bomb.pt")
    assert path.stat().st_size < 400_000
    start = time.perf_counter()
    with PeakMemory() as peak:
        one_line_error(load_checkpoint, path, match="zip bomb")
    assert time.perf_counter() - start < 2 and peak.grown < 64 * MiB


def test_deflated_member_lying_about_its_size_stops_at_the_declared_size(tmp_path):
    body, _ = pay.tensor_pickle()
    data = bytearray(pay.torch_zip(pay.pickle_program(body), {"0": bytes(8 << 20)}, compress=zipfile.ZIP_DEFLATED))
    path = tmp_path / "liar.pt"
    path.write_bytes(data)
    # ratio refused first; with a generous ratio the declared size (8 MiB ≠ 8 bytes) is refused
    one_line_error(load_checkpoint, path)


def test_member_count_is_bounded_before_the_directory_is_read(tmp_path):
    from detforge.io.limits import Limits

    files = {str(i): b"" for i in range(50)}
    path = _write(tmp_path / "many.pt", pay.torch_zip(pay.pickle_program(pay.P.NONE), files))
    assert load_checkpoint(path) is None
    one_line_error(load_checkpoint, path, (), Limits(max_members=20), match="declares 53 members")


def test_allocation_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "alloc.pt"
    path.write_bytes(pay.torch_zip(pay.allocation_bomb()))
    assert path.stat().st_size < 8000 and len(pay.allocation_bomb()) < 8000
    start = time.perf_counter()
    with PeakMemory() as peak:
        one_line_error(load_checkpoint, path, match="bytearray")
    assert time.perf_counter() - start < 1 and peak.grown < 32 * MiB


def test_memo_amplification_hits_the_allocation_budget(tmp_path):
    path = tmp_path / "amp.pt"
    path.write_bytes(pay.torch_zip(pay.memo_amplification()))
    start = time.perf_counter()
    with PeakMemory() as peak:
        one_line_error(load_checkpoint, path, match="allocates more than")
    assert time.perf_counter() - start < 5 and peak.grown < 64 * MiB


def test_shared_child_graph_is_refused_instantly(tmp_path):
    path = tmp_path / "shared.pt"
    path.write_bytes(pay.module_chain(40, shared=True))  # 2^40 paths from a few KB
    assert path.stat().st_size < 16_000
    start = time.perf_counter()
    model = load_checkpoint(path)
    one_line_error(state_dict_from_standin, model, match="appears twice")
    one_line_error(detforge.load, path)
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize("payload", ["lists", "modules", "tuple key"])
def test_deep_graphs_end_in_one_line_not_recursion_error(tmp_path, payload):
    data = {
        "lists": lambda: pay.torch_zip(pay.deep_lists(200_000)),
        "modules": lambda: pay.module_chain(20_000, shared=False),
        "tuple key": lambda: pay.torch_zip(pay.deep_tuple_key(200_000)),
    }[payload]()
    path = tmp_path / "deep.pt"
    path.write_bytes(data)
    limit = sys.getrecursionlimit()
    one_line_error(load_checkpoint, path)
    one_line_error(detforge.load, path)
    assert sys.getrecursionlimit() == limit


# -- items 5/6: what an imported checkpoint's yaml and a safetensors header may say ------------------------

class DetectionModel:
    """Pickles like an Ultralytics model (class ultralytics.nn.tasks.DetectionModel) without Ultralytics."""


DetectionModel.__module__ = "ultralytics.nn.tasks"


@pytest.fixture
def fake_ultralytics(monkeypatch):
    module = type(sys)("ultralytics.nn.tasks")
    module.DetectionModel = DetectionModel
    monkeypatch.setitem(sys.modules, "ultralytics.nn.tasks", module)




@pytest.mark.parametrize(
    ("nc", "backbone", "match"),
    [
        (10**12, [], "nc"),
        ("80", [], "nc"),
        (2.5, [], "nc"),
        (-1, [], "nc"),
        (True, [], "nc"),
        (3, "Conv", "not a list of layers"),
        (3, [[1]], "layer rows"),
        (3, [[-1, 10**30, "Conv", []]], "out of range"),
        (3, [[-1, float("nan"), "Conv", []]], "out of range"),
    ],
)
def test_odd_yaml_values_in_an_imported_checkpoint(tmp_path, fake_ultralytics, nc, backbone, match):
    model = DetectionModel()
    model.yaml = {"nc": nc, "scale": "n", "backbone": backbone, "head": []}
    model._modules, model._parameters, model._buffers = {}, {}, {}
    path = tmp_path / "odd.pt"
    torch.save({"model": model, "ema": None}, path)
    one_line_error(detforge.load, path, match=match)


@pytest.fixture(scope="module")
def detforge_weights(tmp_path_factory):
    model = detforge.create_model("yolov8n", num_classes=2, overrides={"head.box_convs": 1})
    model.names = ["a", "b"]
    path = detforge.save_weights(model, tmp_path_factory.mktemp("w") / "good.safetensors")
    tensors, metadata = detforge.io.read_weights(path)
    return tensors, metadata


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("names", '{"a": 1}', "names is not a list of strings"),
        ("names", "[1, 2]", "names is not a list of strings"),
        ("names", '"ab"', "names is not a list of strings"),
        ("names", "[" * 100_000, "corrupt detforge metadata"),
        ("format_version", "abc", "format_version"),
        ("format_version", "1e9", "format_version"),
        ("format_version", "", "format_version"),
        ("config", "[]", "not a mapping"),
        ("config", "{" * 50_000, "corrupt detforge metadata"),
    ],
)
def test_wrong_metadata_types_in_safetensors(tmp_path, detforge_weights, key, value, match):
    tensors, metadata = detforge_weights
    path = tmp_path / "odd.safetensors"
    save_file(tensors, path, metadata={**metadata, key: value})
    one_line_error(detforge.load, path, match=match)


@pytest.mark.parametrize(
    ("num_classes", "match"),
    [(10**9, "out of range"), (100_000, "at most 65,536"), (9_000, "expects"), (0, "num_classes")],
)
def test_huge_class_count_in_an_embedded_config(tmp_path, detforge_weights, num_classes, match):
    tensors, metadata = detforge_weights
    config = json.loads(metadata["config"])
    config["head"]["num_classes"] = num_classes
    path = tmp_path / "big.safetensors"
    save_file(tensors, path, metadata={**metadata, "config": json.dumps(config), "names": "null"})
    with PeakMemory() as peak:
        one_line_error(detforge.load, path, match=match)
    assert peak.grown < 200 * MiB  # the 9000-class head is built on the meta device only


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"dtype": "F32", "shape": [1 << 30], "data_offsets": [0, 4 << 30]}, "does not fit its data"),
        ({"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}, "malformed entry"),  # found by the fuzzer
        ({"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}, "malformed entry"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "data section size"),
    ],
)
def test_safetensors_header_is_checked_before_reading(tmp_path, entry, match):
    path = tmp_path / "liar.safetensors"
    header = json.dumps({"w": entry}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\x00" * 8)
    one_line_error(detforge.load, path, match=match)


_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
                       | st.binary(max_size=8), lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["imgsz", "batch", "data", "names"]) | st.text(max_size=6), _values,
                       max_size=5) | _values)
def test_a_checkpoints_train_args_give_only_bounded_sizes(train_args):
    """`train_args` of a downloaded checkpoint is attacker data: only bounded plain ints become settings."""
    kept = training_sizes(train_args)
    assert set(kept) <= set(TRAINING_SIZES)
    assert all(type(v) is int and 0 < v <= TRAINING_SIZES[k] for k, v in kept.items())
