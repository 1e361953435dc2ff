"""YOLOv7 loss: parity with the official ComputeLossOTA / ComputeLossAuxOTA, and the upper bound."""

from __future__ import annotations

import pytest
import torch
from yolov7_reference import (
    P5_ANCHORS,
    P5_STRIDES,
    P6_ANCHORS,
    P6_STRIDES,
    StubModel,
    head_output,
    make_case,
    reference_hyp,
)

from detforge.assign.targets import pad_targets
from detforge.assign.yolov7_ota import YOLOv7Assigner
from detforge.errors import ConfigError, DataError
from detforge.losses.yolov7 import YOLOv7Loss, cell_keys, coarse_caps
from detforge.registry import ASSIGNERS, LOSSES

TOL = 1e-4

# (seed, gts per image, classes, image size, levels): fixed cases.
CASES = [
    (0, (2, 3), 3, 128, "p5"),
    (1, (3, 1), 5, 128, "p5"),
    (2, (4,), 1, 64, "p5"),
    (3, (2, 2, 1), 80, 128, "p5"),
    (4, (3, 2), 3, 256, "p6"),
    # crowded: many cells proposed by two gts, whose equal-cost copies must be broken as the reference does
    (7, (8, 8), 3, 64, "p5"),
    (11, (8, 8), 3, 64, "p5"),
]
IDS = [f"seed{c[0]}-{sum(c[1])}gts-nc{c[2]}-{c[3]}px-{c[4]}" for c in CASES]


def _case(seed, per_image, nc, imgsz, levels):
    anchors, strides = (P5_ANCHORS, P5_STRIDES) if levels == "p5" else (P6_ANCHORS, P6_STRIDES)
    return make_case(seed, per_image, nc, imgsz, anchors, strides)


def _ours(case, maps, aux_maps=None, **keys):
    out = head_output(maps, case.anchors, case.strides, aux_maps)
    return YOLOv7Loss(**keys)(out, case.boxes, case.cls, case.batch_idx)


def _grads(maps):
    return [m.clone().requires_grad_() for m in maps]


@pytest.mark.parametrize("case_args", CASES, ids=IDS)
def test_lead_loss_equals_reference_with_gradients(case_args):
    reference = pytest.importorskip("yolov7.utils.loss", reason="official YOLOv7 code (yolov7detect) not installed")
    case = _case(*case_args)
    stub = StubModel(case.nc, case.anchors, case.strides, reference_hyp(case.nc, len(case.strides), case.imgsz))
    ref_maps, our_maps = _grads(case.maps), _grads(case.maps)
    ref_total, ref_items = reference.ComputeLossOTA(stub)(ref_maps, case.reference_targets, case.imgs)
    ref_total.backward()
    total, items = _ours(case, our_maps)
    total.backward()
    assert abs(total.item() - ref_total.item()) < TOL
    for name, ref_value in zip(("box", "obj", "cls"), ref_items[:3].tolist()):
        assert abs(items[name].item() - ref_value) < TOL, name
    for ref_map, our_map in zip(ref_maps, our_maps):
        assert (ref_map.grad - our_map.grad).abs().max().item() < TOL


@pytest.mark.parametrize("case_args", CASES, ids=IDS)
def test_aux_loss_equals_reference_with_gradients(case_args):
    reference = pytest.importorskip("yolov7.utils.loss", reason="official YOLOv7 code (yolov7detect) not installed")
    case = _case(*case_args)
    g = torch.Generator().manual_seed(100 + case_args[0])
    aux = [torch.randn(m.shape, generator=g) for m in case.maps]
    stub = StubModel(case.nc, case.anchors, case.strides, reference_hyp(case.nc, len(case.strides), case.imgsz))
    ref_maps, our_maps = _grads(case.maps + aux), _grads(case.maps + aux)
    ref_total, _ = reference.ComputeLossAuxOTA(stub)(ref_maps, case.reference_targets, case.imgs)
    ref_total.backward()
    levels = len(case.strides)
    total, _ = _ours(case, our_maps[:levels], our_maps[levels:])
    total.backward()
    assert abs(total.item() - ref_total.item()) < TOL
    for ref_map, our_map in zip(ref_maps, our_maps):
        assert (ref_map.grad - our_map.grad).abs().max().item() < TOL


def test_aux_weight_zero_is_the_plain_lead_loss():
    case = _case(*CASES[0])
    aux = [torch.randn_like(m) for m in case.maps]
    plain, _ = _ours(case, case.maps)
    ignored, _ = _ours(case, case.maps, aux, aux_weight=0.0)
    assert ignored.item() == plain.item()


def test_no_targets_trains_objectness_only():
    case = _case(*CASES[0])
    maps = _grads(case.maps)
    out = head_output(maps, case.anchors, case.strides)
    total, items = YOLOv7Loss()(out, torch.zeros(0, 4), torch.zeros(0), torch.zeros(0))
    total.backward()
    assert items["box"].item() == 0 and items["cls"].item() == 0 and items["obj"].item() > 0
    assert all(torch.isfinite(m.grad).all() for m in maps)


def test_gains_follow_the_reference_rescaling():
    loss = YOLOv7Loss()
    box, obj, cls = loss.gains(num_levels=4, num_classes=20, imgsz=320)
    assert box == pytest.approx(0.05 * 3 / 4)
    assert obj == pytest.approx(0.7 * 0.25 * 3 / 4)
    assert cls == pytest.approx(0.3 * 20 / 80 * 3 / 4)
    assert YOLOv7Loss(rescale=False).gains(4, 20, 320) == (0.05, 0.7, 0.3)


def test_registered_and_checked():
    assert LOSSES.get("yolov7") is YOLOv7Loss and ASSIGNERS.get("yolov7_ota") is YOLOv7Assigner
    with pytest.raises(ConfigError, match="yolov7_ota"):
        YOLOv7Loss(assigner=torch.nn.Identity())
    case = _case(*CASES[0])
    with pytest.raises(DataError, match="class id 3"):
        YOLOv7Loss()(head_output(case.maps, case.anchors, case.strides), case.boxes, case.cls * 0 + 3,
                     case.batch_idx)


@pytest.mark.parametrize("seed", range(6))
def test_upper_bound_keeps_coarse_only_targets_below_fine_ones(seed):
    """With the bound, no coarse-only positive's objectness target exceeds its gt's fine targets."""
    case = make_case(seed, (4, 3), nc=3, imgsz=64)
    aux = [torch.randn_like(m) for m in case.maps]
    gts = pad_targets(case.boxes, case.cls, case.batch_idx, 2)
    assigner = YOLOv7Assigner()
    loss = YOLOv7Loss(upper_bound=True)
    fine = assigner(case.maps, case.anchors, case.strides, *gts, topk=20)
    coarse = assigner(case.maps, case.anchors, case.strides, *gts, offset=1.0, topk=20)
    fine_targets = loss._head_terms(case.maps, case.anchors, case.strides, fine, gts).obj_targets
    caps = coarse_caps(fine, fine_targets, coarse, case.maps, gts)
    coarse_targets = loss._head_terms(aux, case.anchors, case.strides, coarse, gts, caps).obj_targets
    coarse_only = ~torch.isin(cell_keys(coarse, case.maps), cell_keys(fine, case.maps))
    assert coarse_only.any()
    for image, gt, target in zip(coarse.image[coarse_only], coarse.gt[coarse_only], coarse_targets[coarse_only]):
        mine = (fine.image == image) & (fine.gt == gt)
        if mine.any():
            assert target <= fine_targets[mine].min() + 1e-7
    unbounded = loss._head_terms(aux, case.anchors, case.strides, coarse, gts).obj_targets
    assert (coarse_targets <= unbounded).all()


def test_upper_bound_changes_only_the_aux_objectness():
    case = make_case(7, (4, 3), nc=3, imgsz=64)
    aux = [torch.randn_like(m) for m in case.maps]
    _, plain = _ours(case, case.maps, aux)
    _, bounded = _ours(case, case.maps, aux, upper_bound=True)
    assert plain["box"] == bounded["box"] and plain["cls"] == bounded["cls"]
