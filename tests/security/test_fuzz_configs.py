"""Config fuzzers: hostile model YAML, training YAML and --set values.

A model config is the packaged yolov8 config (scale n) with random keys replaced, removed or added; a
training config is a mapping of random settings; a --set value is random text. The property: a config
is accepted or refused with one `ConfigError` line (the CLI's exit code 2), never a traceback; building an
accepted model stays within memory bounds (its size is checked on the meta device first).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from security_helpers import PeakMemory, run_cli, run_fuzz

from detforge.config import packaged_configs, parse_override
from detforge.engine.train_config import make_train_config
from detforge.errors import DetforgeError

MiB = 2**20
NUMBERS = st.one_of(st.integers(-3, 300), st.sampled_from([0, -1, 65537, 2**31, 2**63, 10**30]),
                    st.floats(allow_nan=True, allow_infinity=True))
VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
YAML_SNIPPETS = st.sampled_from([
    "[", "{a: 1", "*missing", "&a [*a]", "!!python/object/apply:os.system [id]", "!!binary AAAA", "\x00", "\x1b[2J",
    "a: b: c", "- - - -", "[" * 400 + "]" * 400, "9" * 5000, ".nan", "-.inf", "0o777", "2001-12-14", "~", "'",
])


def _paths(node, prefix=()):
    """Every key path of a nested mapping (sections included)."""
    for key, value in node.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, key))


@pytest.fixture(scope="module")
def base_config() -> dict:
    data = yaml.safe_load(packaged_configs()["yolov8"].read_text())
    data["scale"] = "n"
    return data


@pytest.mark.fuzz
def test_fuzz_model_config(base_config):
    paths = sorted(_paths(base_config), key=str)

    @given(st.lists(st.tuples(st.sampled_from(paths), st.sampled_from(["set", "delete", "add"]), VALUES),
                    min_size=1, max_size=3))
    def check(edits):
        data = yaml.safe_load(yaml.safe_dump(base_config))
        for path, how, value in edits:
            node = data
            for key in path[:-1]:
                node = node.get(key) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                continue
            if how == "delete":
                node.pop(path[-1], None)
            elif how == "add":
                node["extra_" + str(path[-1])] = value
            else:
                node[path[-1]] = value
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.yaml"
            path.write_text(yaml.safe_dump(data, allow_unicode=True))
            with PeakMemory() as peak:
                run_cli(["info", path, "--imgsz", "64", "--json"])
        assert peak.grown < 1024 * MiB, peak.grown

    run_fuzz(check, examples=8)


@pytest.mark.fuzz
def test_fuzz_model_yaml_text(base_config):
    """Raw YAML damage: a snippet spliced into the config text at a random place."""
    text = yaml.safe_dump(base_config)

    @given(st.integers(0, len(text)), YAML_SNIPPETS | st.text(max_size=20))
    def check(at, snippet):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.yaml"
            path.write_text(text[:at] + snippet + text[at:], errors="surrogateescape")
            run_cli(["info", path, "--imgsz", "64", "--json"])

    run_fuzz(check, examples=8)


@pytest.mark.fuzz
def test_fuzz_training_settings_and_set_values():
    keys = st.sampled_from(["epochs", "imgsz", "batch", "lr0", "lrf", "momentum", "augment", "loss", "assigner",
                            "optimizer", "workers", "patience", "mosaic", "data", "model", "overrides", "device"])

    @given(st.dictionaries(keys, VALUES, max_size=4),
           st.lists(st.tuples(st.text(max_size=12), YAML_SNIPPETS | st.text(max_size=12)), max_size=3))
    def check(settings, overrides):
        try:
            make_train_config({"data": "x.yaml", **settings}, "fuzz.yaml")
        except DetforgeError as err:
            assert "\n" not in str(err), err
        for key, value in overrides:
            try:
                parse_override(f"{key}={value}")
            except DetforgeError as err:
                assert "\n" not in str(err), err

    run_fuzz(check, examples=25)


@pytest.mark.fuzz
def test_fuzz_set_on_the_command_line():
    """`info --set KEY=VALUE` with random keys and YAML values: accepted, or one error line."""
    keys = st.sampled_from(["head.num_classes", "head.reg_max", "scales.n.width", "scales.n.depth", "neck.depth",
                            "backbone.stage_channels", "names", "scale", "head", "x.y.z", ""])

    @given(keys, YAML_SNIPPETS | VALUES.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()))
    def check(key, value):
        with PeakMemory() as peak:
            run_cli(["info", "yolov8n", "--imgsz", "64", "--json", "--set", f"{key}={value}"])
        assert peak.grown < 1024 * MiB, peak.grown

    run_fuzz(check, examples=10)
