"""Label cache: reused while inputs are unchanged, rebuilt when any changes, written atomically,
moved to the user cache folder when the dataset folder is read-only."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from data_helpers import boxes_dataset, yolo_line

from detforge.data import cache, load_dataset_spec, load_split


def _spec(tmp_path: Path):
    return load_dataset_spec(boxes_dataset(tmp_path / "ds", count=4))


def test_second_load_comes_from_the_cache_beside_the_dataset(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    first = load_split(spec, "train")
    assert not first.from_cache
    assert first.cache_file.parent == spec.root / ".detforge-cache" and first.cache_file.exists()
    second = load_split(spec, "train")
    assert second.from_cache
    for name in ("paths", "sizes", "offsets", "boxes", "classes"):
        np.testing.assert_array_equal(getattr(second.store, name), getattr(first.store, name))
    assert second.store.boxes.dtype == np.float32 and second.store.paths.dtype.kind == "U"


@pytest.mark.parametrize("change", ["edit_label", "touch_image", "add_image", "remove_label", "rename_class"])
def test_any_input_change_rebuilds_the_cache(tmp_path: Path, change: str) -> None:
    spec = _spec(tmp_path)
    load_split(spec, "train")
    label = spec.root / "labels" / "train" / "train000.txt"
    image = spec.root / "images" / "train" / "train000.png"
    if change == "edit_label":
        label.write_text(yolo_line(1, (1, 1, 20, 20), 96, 72))
    elif change == "touch_image":
        os.utime(image, ns=(time.time_ns(), time.time_ns() + 10**9))
    elif change == "add_image":
        (spec.root / "images" / "train" / "copy.png").write_bytes(image.read_bytes())
    elif change == "remove_label":
        label.unlink()
    else:
        spec.names[0] = "renamed"
    again = load_split(spec, "train")
    assert not again.from_cache
    if change == "edit_label":
        np.testing.assert_allclose(again.store.record(0).boxes, [[1, 1, 20, 20]], atol=1e-3)
    if change == "add_image":
        assert len(again.store) == 5
    assert load_split(spec, "train").from_cache  # and the rebuilt cache is used next time


def test_crash_while_writing_keeps_the_old_cache_and_leaves_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    spec = _spec(tmp_path)
    good = load_split(spec, "train")
    before = good.cache_file.read_bytes()

    def crash(file, **arrays):
        file.write(b"half a cache")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.save(good.cache_file, "other-key", good.store, good.problems)
    assert good.cache_file.read_bytes() == before
    assert [p.name for p in good.cache_file.parent.iterdir() if p.suffix != ".txt"] == [good.cache_file.name]


def test_damaged_cache_is_ignored_and_rebuilt(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    path = load_split(spec, "train").cache_file
    path.write_bytes(path.read_bytes()[:100])
    again = load_split(spec, "train")
    assert not again.from_cache and len(again.store) == 4
    assert load_split(spec, "train").from_cache


def test_read_only_dataset_caches_in_the_user_folder(tmp_path: Path, cache_dir: Path) -> None:
    spec = _spec(tmp_path)
    for folder in [spec.root, *spec.root.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o555)
    try:
        first = load_split(spec, "train")
        assert cache_dir in first.cache_file.parents and first.cache_file.exists()
        assert not (spec.root / ".detforge-cache").exists()
        assert load_split(spec, "train").from_cache
    finally:
        for folder in [spec.root, *spec.root.rglob("*")]:
            if folder.is_dir():
                folder.chmod(0o755)
