"""Decoupled, objectness, coupled and hybrid heads share one interface and decode correctly."""

import torch

import detforge
from detforge.models.heads import CoupledHead, DecoupledHead, HybridHead

CHANNELS, STRIDES = [16, 32, 64], [8, 16, 32]


def features(batch=2, size=64):
    return [torch.rand(batch, c, size // s, size // s) for c, s in zip(CHANNELS, STRIDES)]


def test_every_head_has_the_same_interface():
    heads = [
        DecoupledHead(CHANNELS, STRIDES, num_classes=5),
        DecoupledHead(CHANNELS, STRIDES, num_classes=5, objectness=True),
        CoupledHead(CHANNELS, STRIDES, num_classes=5),
        CoupledHead(CHANNELS, STRIDES, num_classes=5, objectness=True),
        HybridHead(CHANNELS, STRIDES, num_classes=5),
    ]
    feats = features()
    for head in heads:
        raw = head.train()(feats)
        assert raw.box.shape == (2, 84, 64) and raw.cls.shape == (2, 84, 5)
        assert (raw.obj is not None) == head.has_objectness
        if raw.obj is not None:
            assert raw.obj.shape == (2, 84, 1)
        assert head.eval()(feats).shape == (2, 84, 9)


def test_branch_depth_and_width_are_separate():
    head = DecoupledHead(CHANNELS, STRIDES, num_classes=3, box_convs=3, cls_convs=1, box_width=24, cls_width=40)
    assert len(head.box_branches[0]) == 4 and len(head.cls_branches[0]) == 2
    assert head.box_branches[0][0].conv.out_channels == 24
    assert head.cls_branches[0][0].conv.out_channels == 40


def test_hybrid_shares_first_convs():
    head = HybridHead(CHANNELS, STRIDES, num_classes=3, shared_convs=2)
    assert len(head.shared[0]) == 2
    assert head.box_branches[0][0].conv.in_channels == CHANNELS[0]


def test_coupled_last_layer_emits_all_channels():
    head = CoupledHead(CHANNELS, STRIDES, num_classes=3, objectness=True)
    assert head.branches[0][-1].out_channels == 4 * 16 + 3 + 1


def test_decode_places_boxes_at_anchor_plus_distances():
    head = DecoupledHead([8], [8], num_classes=1, reg_max=4).eval()
    raw = head.raw([torch.zeros(1, 8, 2, 2)])
    # make every distance exactly bin 2 (stride units) → 16 px on each side of the anchor
    raw.box = torch.full_like(raw.box, -50.0)
    raw.box.view(1, 4, 4, 4)[..., 2] = 50.0
    out = head.decode(raw)
    anchor = raw.anchor_points[3]  # cell (1, 1) → centre (12, 12)
    assert anchor.tolist() == [12.0, 12.0]
    assert torch.allclose(out[0, 3, :4], torch.tensor([-4.0, -4.0, 28.0, 28.0]), atol=1e-4)


def test_objectness_multiplies_class_scores():
    head = DecoupledHead([8], [8], num_classes=2, objectness=True).eval()
    raw = head.raw([torch.rand(1, 8, 2, 2)])
    expected = raw.cls.sigmoid() * raw.obj.sigmoid()
    assert torch.allclose(head.decode(raw)[..., 4:], expected)


def test_head_design_configs_change_only_the_head():
    base = detforge.create_model("yolov8n")
    for name in ("yolov8n-coupled", "yolov8n-hybrid", "yolov8n-obj"):
        other = detforge.create_model(name)
        assert sum(p.numel() for p in other.backbone.parameters()) == sum(p.numel() for p in base.backbone.parameters())
        assert type(other.head) is not type(base.head) or other.head.has_objectness
