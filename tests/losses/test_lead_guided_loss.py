"""YOLOv8 loss with an auxiliary head: coarse lead-guided TAL labels, aux weight, upper bound."""

from __future__ import annotations

import dataclasses

import torch

from detforge.assign.targets import pad_targets
from detforge.losses.detection import DetectionLoss
from detforge.models.heads.base import HeadOutput, make_anchors

POINTS, STRIDES = make_anchors([(8, 8), (4, 4), (2, 2)], [8, 16, 32], "cpu", torch.float32)
BOXES = torch.tensor([[10.0, 12.0, 40.0, 30.0], [30.0, 30.0, 60.0, 62.0], [4.0, 40.0, 14.0, 60.0], [8, 8, 56, 56]])
CLS = torch.tensor([0.0, 1.0, 2.0, 1.0])
BATCH_IDX = torch.tensor([0.0, 0.0, 0.0, 1.0])


def _output(seed, obj=False):
    g = torch.Generator().manual_seed(seed)
    n = len(POINTS)
    return HeadOutput(torch.randn(2, n, 64, generator=g).requires_grad_(),
                      torch.randn(2, n, 3, generator=g).requires_grad_(),
                      torch.randn(2, n, 1, generator=g).requires_grad_() if obj else None, POINTS, STRIDES)


def _with_aux(lead, aux):
    return dataclasses.replace(lead, aux=aux)


def test_aux_weight_zero_is_exactly_the_plain_loss():
    lead, aux = _output(0), _output(1)
    plain_total, plain_items = DetectionLoss(num_classes=3)(lead, BOXES, CLS, BATCH_IDX)
    plain_grads = torch.autograd.grad(plain_total, (lead.box, lead.cls))
    total, items = DetectionLoss(num_classes=3, aux_weight=0.0)(_with_aux(lead, aux), BOXES, CLS, BATCH_IDX)
    grads = torch.autograd.grad(total, (lead.box, lead.cls))
    assert torch.equal(total, plain_total) and items.keys() == plain_items.keys()
    assert all(torch.equal(a, b) for a, b in zip(grads, plain_grads))


def test_aux_terms_use_coarse_labels_from_the_lead_head():
    lead, aux = _output(2, obj=True), _output(3, obj=True)
    loss = DetectionLoss(num_classes=3)
    total, items = loss(_with_aux(lead, aux), BOXES, CLS, BATCH_IDX)
    gts = pad_targets(BOXES, CLS, BATCH_IDX, 2)
    fine = loss._assign(loss.assigner, lead, gts)
    coarse = loss._assign(loss.coarse_assigner, lead, gts)
    lead_terms, aux_terms = loss._head_terms(lead, fine), loss._head_terms(aux, coarse)
    for name in ("box", "dfl", "cls", "obj"):
        assert torch.allclose(items[name], lead_terms[name] + 0.25 * aux_terms[name])
    assert torch.allclose(total, sum(items.values()) * 2)
    assert coarse.fg_mask.sum() > fine.fg_mask.sum()  # coarse labels: more positives
    grads = torch.autograd.grad(total, (aux.box, aux.cls, aux.obj))
    assert all(g.abs().sum() > 0 for g in grads)
    # independent assignment (the ablation) follows the aux head's predictions instead
    other = _output(4, obj=True)
    independent = DetectionLoss(num_classes=3, lead_guided=False)
    _, own = independent(_with_aux(lead, other), BOXES, CLS, BATCH_IDX)
    _, guided = loss(_with_aux(lead, other), BOXES, CLS, BATCH_IDX)
    assert own["cls"] != guided["cls"]


def test_upper_bound_only_lowers_the_aux_terms_targets():
    lead, aux = _output(5), _output(6)
    _, plain = DetectionLoss(num_classes=3)(_with_aux(lead, aux), BOXES, CLS, BATCH_IDX)
    _, bounded = DetectionLoss(num_classes=3, upper_bound=True)(_with_aux(lead, aux), BOXES, CLS, BATCH_IDX)
    assert plain.keys() == bounded.keys()
    assert any(plain[k] != bounded[k] for k in plain)
