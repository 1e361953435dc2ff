"""The loader contract the engine consumes: batch dict, rectangular validation batches that map
back to the original labels, reproducible epochs, close-mosaic, and memory that stays flat."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import boxes_dataset, write_yolo, yolo_line

from detforge.data import AugmentConfig, build_dataloader, letterbox, load_dataset_spec

STILL = {"degrees": 0.0, "translate": 0.0, "scale": 0.0, "shear": 0.0, "perspective": 0.0, "fliplr": 0.0,
             "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return boxes_dataset(tmp_path / "ds", count=10, size=(96, 72), split_names=("train", "val"))


def test_training_batch_has_the_contract_types_and_boxes_inside(data: Path) -> None:
    loader = build_dataloader(data, "train", imgsz=64, batch_size=4, workers=0, progress=False)
    batch = next(iter(loader))
    assert set(batch) == {"img", "boxes", "cls", "batch_idx", "paths", "ori_shapes", "ratio_pad"}
    assert batch["img"].dtype == torch.uint8 and batch["img"].shape == (4, 3, 64, 64)
    assert batch["img"].is_contiguous()
    m = len(batch["cls"])
    assert batch["boxes"].shape == (m, 4) and batch["boxes"].dtype == torch.float32
    assert batch["cls"].dtype == torch.int64 and batch["batch_idx"].dtype == torch.int64
    assert batch["batch_idx"].shape == (m,) and set(batch["batch_idx"].tolist()) <= {0, 1, 2, 3}
    assert (batch["boxes"][:, 2:] > batch["boxes"][:, :2]).all()
    assert batch["boxes"].min() >= 0 and batch["boxes"].max() <= 64
    assert len(batch["paths"]) == 4 and all(Path(p).exists() for p in batch["paths"])
    assert batch["ori_shapes"] == [(72, 96)] * 4 and len(batch["ratio_pad"]) == 4


def test_validation_rect_batches_are_minimal_and_map_back_to_the_labels(tmp_path: Path) -> None:
    items = []
    for i, (w, h) in enumerate([(100, 50), (96, 60), (40, 90), (50, 100), (64, 64)]):
        box = (w * 0.1, h * 0.2, w * 0.7, h * 0.9)
        items.append((f"im{i}.png", np.zeros((h, w, 3), np.uint8), yolo_line(i % 3, box, w, h)))
    spec = load_dataset_spec(write_yolo(tmp_path, {"val": items}))
    loader = build_dataloader(spec, "val", imgsz=64, batch_size=2, augment=False, rect=True, shuffle=False,
                              workers=0, progress=False)
    seen = 0
    for batch in loader:
        b, _, h, w = batch["img"].shape
        assert h % 32 == 0 and w % 32 == 0 and max(h, w) == 64
        for i in range(b):
            (oh, ow), (ratio, (pad_w, pad_h)) = batch["ori_shapes"][i], batch["ratio_pad"][i]
            assert round(ow * ratio) + pad_w <= w and round(oh * ratio) + pad_h <= h
            assert min(w - round(ow * ratio), h - round(oh * ratio)) < 32  # no stride of spare padding
            back = ((batch["boxes"][batch["batch_idx"] == i] - torch.tensor([pad_w, pad_h] * 2)) / ratio).numpy()
            np.testing.assert_allclose(back, [[ow * 0.1, oh * 0.2, ow * 0.7, oh * 0.9]], atol=0.5 / ratio + 1e-3)
            seen += 1
    assert seen == 5


def test_same_seed_same_batches_new_epoch_new_batches(data: Path) -> None:
    def first_two_epochs(seed: int, workers: int):
        loader = build_dataloader(data, "train", imgsz=64, batch_size=5, workers=workers, seed=seed, progress=False)
        return [next(iter(loader)) for _ in range(2)]

    a, b, c = first_two_epochs(0, 0), first_two_epochs(0, 0), first_two_epochs(1, 0)
    assert torch.equal(a[0]["img"], b[0]["img"]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    assert not torch.equal(a[0]["img"], a[1]["img"])  # epoch 2 draws differently
    assert not torch.equal(a[0]["img"], c[0]["img"])  # another seed draws differently
    w1, w2 = first_two_epochs(0, 2), first_two_epochs(0, 2)  # worker processes: same again
    assert torch.equal(w1[1]["img"], w2[1]["img"]) and w1[0]["paths"] == w2[0]["paths"]


def test_set_epoch_resumes_the_same_epoch(data: Path) -> None:
    loader = build_dataloader(data, "train", imgsz=64, batch_size=5, workers=0, progress=False)
    epochs = [next(iter(loader))["img"] for _ in range(3)]
    loader.set_epoch(2)
    assert torch.equal(next(iter(loader))["img"], epochs[2])


def test_close_mosaic_reaches_persistent_workers(data: Path) -> None:
    hyp = AugmentConfig(mosaic=1.0, **STILL)
    loader = build_dataloader(data, "train", imgsz=96, batch_size=10, workers=1, shuffle=False, hyp=hyp,
                              progress=False)
    store = loader.dataset.store

    def plain(i: int) -> torch.Tensor:  # what a non-mosaic sample is with every other augmentation off
        import cv2

        image, _, _ = letterbox(cv2.imread(store.path(i)), 96)
        return torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)

    mosaic_batch = next(iter(loader))
    assert not any(torch.equal(mosaic_batch["img"][i], plain(i)) for i in range(10))
    loader.dataset.close_mosaic()
    assert loader.persistent_workers
    batch = next(iter(loader))  # built by the same worker process as before
    for i in range(10):
        assert torch.equal(batch["img"][i], plain(i))


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _family(pid: int) -> list[int]:
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children += [int(c) for c in f.read().split()]
    return [pid, *children]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
def test_memory_stays_flat_over_epochs(tmp_path: Path) -> None:
    data = boxes_dataset(tmp_path / "ds", count=48, size=(128, 96))
    loader = build_dataloader(data, "train", imgsz=128, batch_size=4, workers=2, progress=False)
    usage = []
    for _ in range(6):  # a leak of one image per sample would add ~9 MB over epochs 2-6
        for _batch in loader:
            pass
        usage.append(sum(_rss_mb(p) for p in _family(os.getpid())))
    assert usage[-1] - usage[1] < 4, f"RSS grew epoch over epoch: {[round(u, 1) for u in usage]} MB"


@pytest.mark.parametrize("shuffle", [True, False])
def test_distributed_ranks_split_the_epoch_between_them(data: Path, monkeypatch, shuffle: bool) -> None:
    import torch.distributed as dist

    from detforge.data.loader import KeySampler

    dataset = build_dataloader(data, "train", imgsz=64, batch_size=2, workers=0, progress=False).dataset
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 2)
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr(dist, "get_rank", lambda *a, r=rank: r)
        sampler = KeySampler(dataset, shuffle=shuffle, seed=0, distributed=True)
        first, second = [k.index for k in sampler], [k.index for k in sampler]
        assert len(first) == len(sampler) == 5
        assert (first != second) == shuffle  # shuffled epochs differ, validation order does not
        if not shuffle:
            assert first == list(range(rank * 5, rank * 5 + 5))  # one contiguous run per rank
        seen.append(set(first))
    assert seen[0] | seen[1] == set(range(10)) and not seen[0] & seen[1]
