"""YOLOv7 assigner: candidate cells (against the official code's), coarse ⊇ fine, dynamic-k matching."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detforge.assign.anchor_candidates import anchor_candidates
from detforge.assign.targets import pad_targets
from detforge.assign.yolov7_ota import YOLOv7Assigner, batched_box_iou

ANCHORS = torch.tensor([[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
                       dtype=torch.float32).view(3, 3, 2)
STRIDES = [8, 16, 32]


def _gts(rows, batch):
    """rows: (image, class, cx, cy, w, h) pixels → padded targets."""
    t = torch.tensor(rows, dtype=torch.float32).view(-1, 6)
    boxes = torch.cat((t[:, 2:4] - t[:, 4:6] / 2, t[:, 2:4] + t[:, 4:6] / 2), 1)
    return pad_targets(boxes, t[:, 1], t[:, 0], batch)


def _cells(cand, image=0):
    v = cand.valid[image]
    return Counter(zip(*(f[image][v].tolist() for f in (cand.level, cand.anchor, cand.cell_y, cand.cell_x))))


box_side = st.integers(min_value=2 * 8, max_value=60 * 8).map(lambda v: v / 8)
centre = st.integers(min_value=0, max_value=128 * 8).map(lambda v: v / 8)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(centre, centre, box_side, box_side), min_size=1, max_size=4))
def test_coarse_candidates_contain_the_fine_ones(boxes):
    gts = _gts([(0, 0, *b) for b in boxes], 1)
    shapes = [(128 // s, 128 // s) for s in STRIDES]
    fine = anchor_candidates(gts.boxes, gts.mask, ANCHORS, STRIDES, shapes, offset=0.5)
    coarse = anchor_candidates(gts.boxes, gts.mask, ANCHORS, STRIDES, shapes, offset=1.0)
    assert not (fine.valid & ~coarse.valid).any()  # same layout: every fine slot is a coarse slot
    # and the cells: (a centre on a cell border makes the fine set name its own cell twice, as the reference)
    assert set(_cells(fine)) <= set(_cells(coarse))


def test_candidates_equal_the_reference():
    reference = pytest.importorskip("yolov7.utils.loss", reason="official YOLOv7 code (yolov7detect) not installed")
    rows = [(0, 1, 20.5, 40.25, 12.0, 30.0), (0, 0, 70.0, 9.75, 50.0, 18.5), (1, 2, 100.25, 100.5, 90.0, 60.0),
            (1, 1, 6.0, 120.0, 10.0, 14.0)]
    gts = _gts(rows, 2)
    det = type("Det", (), {})()
    det.na, det.nl = 3, 3
    det.anchors = ANCHORS / torch.tensor(STRIDES, dtype=torch.float32).view(-1, 1, 1)
    det.hyp = {"anchor_t": 4.0}
    t = torch.tensor(rows)
    targets = torch.cat((t[:, :2], t[:, 2:] / 128), 1)
    maps = [torch.zeros(2, 3, 128 // s, 128 // s, 8) for s in STRIDES]
    for offset, finder in ((0.5, reference.ComputeLossAuxOTA.find_3_positive),
                           (1.0, reference.ComputeLossAuxOTA.find_5_positive)):
        ours = anchor_candidates(gts.boxes, gts.mask, ANCHORS, STRIDES, [m.shape[2:4] for m in maps], offset=offset)
        indices, _ = finder(det, maps, targets)
        for image in range(2):
            theirs = Counter()
            for level, (b, a, gj, gi) in enumerate(indices):
                keep = b == image
                theirs.update(zip([level] * int(keep.sum()), a[keep].tolist(), gj[keep].tolist(), gi[keep].tolist()))
            assert _cells(ours, image) == theirs


def test_anchor_ratio_and_border_limits():
    shapes = [(16, 16), (8, 8), (4, 4)]
    # 200×8 px: ratio > 4 to every anchor of P3/P4 (width), and to every P5 anchor (height)
    gts = _gts([(0, 0, 64.0, 64.0, 200.0, 8.0)], 1)
    assert not anchor_candidates(gts.boxes, gts.mask, ANCHORS, STRIDES, shapes).valid.any()
    # centre in the first cell (at 3/8 of it): no neighbour outside the map; the 3-position set
    # takes no neighbour (the centre is nearer the outside), the 5-position set the right and lower ones
    gts = _gts([(0, 0, 3.0, 3.0, 12.0, 14.0)], 1)  # only the P3 anchors are within the ratio
    fine = anchor_candidates(gts.boxes, gts.mask, ANCHORS, STRIDES, shapes, offset=0.5)
    coarse = anchor_candidates(gts.boxes, gts.mask, ANCHORS, STRIDES, shapes, offset=1.0)
    assert set(_cells(fine)) == {(0, a, 0, 0) for a in range(3)}
    assert set(_cells(coarse)) == {(0, a, y, x) for a in range(3) for y, x in ((0, 0), (0, 1), (1, 0))}


def test_dynamic_k_for_a_single_gt():
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(1, 3, 128 // s, 128 // s, 7, generator=g) for s in STRIDES]
    gts = _gts([(0, 1, 60.0, 50.0, 30.0, 40.0)], 1)
    assigner = YOLOv7Assigner()
    assigned = assigner(maps, ANCHORS, STRIDES, *gts)
    cand = anchor_candidates(gts.boxes, gts.mask, ANCHORS, STRIDES, [m.shape[2:4] for m in maps])
    # k = ⌊Σ of the 10 best IoUs⌋ over the candidates, at least 1
    ious = []
    for level, anchor, y, x in _cells(cand):
        raw = maps[level][0, anchor, y, x]
        s = STRIDES[level]
        xy = (raw[:2].sigmoid() * 2 - 0.5 + torch.tensor([x, y])) * s
        wh = (raw[2:4].sigmoid() * 2) ** 2 * ANCHORS[level, anchor]
        ious.append(batched_box_iou(gts.boxes, torch.cat((xy - wh / 2, xy + wh / 2))[None, None])[0, 0, 0])
    k = max(int(torch.stack(ious).topk(min(10, len(ious))).values.sum()), 1)
    assert len(assigned.level) == k
    assert (assigned.gt == 0).all()
    assert set(zip(assigned.level.tolist(), assigned.anchor.tolist(), assigned.cell_y.tolist(),
                   assigned.cell_x.tolist())) <= set(_cells(cand))


def test_one_gt_per_contested_cell_and_empty_batches():
    g = torch.Generator().manual_seed(1)
    maps = [torch.randn(2, 3, 64 // s, 64 // s, 7, generator=g) for s in STRIDES]
    gts = _gts([(0, 0, 30.0, 30.0, 20.0, 20.0), (0, 1, 31.0, 29.0, 22.0, 18.0)], 2)
    assigned = YOLOv7Assigner()(maps, ANCHORS, STRIDES, *gts)
    assert (assigned.image == 0).all() and len(assigned.level) > 0
    cells = {}
    for key in zip(assigned.level.tolist(), assigned.anchor.tolist(), assigned.cell_y.tolist(),
                   assigned.cell_x.tolist(), assigned.gt.tolist()):
        cells.setdefault(key[:4], set()).add(key[4])
    assert all(len(owners) == 1 for owners in cells.values())
    empty = pad_targets(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 2)
    assert YOLOv7Assigner()(maps, ANCHORS, STRIDES, *empty).level.numel() == 0
