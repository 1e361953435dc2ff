"""Mosaic partners: four distinct photos per mosaic from the first batch of a pass on, reproducibly."""

from __future__ import annotations

from pathlib import Path

from data_helpers import boxes_dataset

from detforge.data import build_dataloader


def record_partners(loader) -> list[list[int]]:
    """Wrap the dataset's partner choice (workers=0: same process) to log every mosaic's four tiles."""
    dataset, mosaics = loader.dataset, []
    choose = dataset._mosaic_partners

    def logged(index, rng):
        partners = choose(index, rng)
        mosaics.append([index, *partners])
        return partners

    dataset._mosaic_partners = logged
    return mosaics


def one_pass(data: Path, epoch: int = 0) -> list[list[int]]:
    loader = build_dataloader(data, "train", imgsz=64, batch_size=8, workers=0, progress=False, seed=3)
    mosaics = record_partners(loader)
    loader.set_epoch(epoch)
    for _ in loader:
        pass
    return mosaics


def test_no_mosaic_repeats_a_photo_even_while_the_buffer_is_cold(tmp_path: Path) -> None:
    mosaics = one_pass(boxes_dataset(tmp_path / "ds", count=40, size=(64, 48)))
    assert len(mosaics) == 40  # mosaic probability 1.0 by default
    assert all(len(set(tiles)) == 4 for tiles in mosaics)
    first_batch = {i for tiles in mosaics[:8] for i in tiles}
    assert len(first_batch) >= 16  # 32 tiles; a cold buffer of 3-4 photos gave 11


def test_partners_depend_only_on_seed_and_epoch(tmp_path: Path) -> None:
    data = boxes_dataset(tmp_path / "ds", count=24, size=(64, 48))
    assert one_pass(data, epoch=1) == one_pass(data, epoch=1)
    assert one_pass(data, epoch=1) != one_pass(data, epoch=2)


def test_tiny_split_still_builds_mosaics(tmp_path: Path) -> None:
    mosaics = one_pass(boxes_dataset(tmp_path / "ds", count=2, size=(64, 48)))
    assert len(mosaics) == 2 and all(len(tiles) == 4 for tiles in mosaics)
