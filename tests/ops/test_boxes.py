"""Box encoding helpers shared by the heads and the loss."""

import torch

from detforge.ops.boxes import dfl_decode, distance_to_xyxy, xyxy_to_distance


def test_dfl_decode_reads_the_expected_bin():
    reg_max = 16
    logits = torch.full((2, 4, reg_max), -1e4)
    bins = torch.tensor([[0, 3, 7, 15], [5, 5, 1, 2]])
    logits.scatter_(-1, bins.unsqueeze(-1), 0.0)  # all mass on one bin per side
    assert torch.allclose(dfl_decode(logits.flatten(-2), reg_max), bins.float())


def test_dfl_decode_of_uniform_logits_is_the_middle_bin():
    out = dfl_decode(torch.zeros(3, 5, 4 * 16), 16)
    assert out.shape == (3, 5, 4)
    assert torch.allclose(out, torch.full_like(out, 7.5))


def test_dfl_decode_mixes_two_bins():
    probs = torch.tensor([0.0, 0.7, 0.3, 0.0]).clamp(min=1e-12)
    logits = probs.log().repeat(4)
    assert torch.allclose(dfl_decode(logits, 4), torch.full((4,), 1.3), atol=1e-5)


def test_distance_to_xyxy_by_hand():
    anchor = torch.tensor([[100.0, 50.0]])
    dist = torch.tensor([[10.0, 20.0, 30.0, 40.0]])  # left, top, right, bottom
    assert torch.equal(distance_to_xyxy(anchor, dist), torch.tensor([[90.0, 30.0, 130.0, 90.0]]))


def test_distance_round_trip_with_broadcast_anchors():
    anchors = torch.rand(7, 2) * 100
    dist = torch.rand(3, 7, 4) * 50
    boxes = distance_to_xyxy(anchors, dist)
    assert boxes.shape == (3, 7, 4)
    assert torch.allclose(xyxy_to_distance(anchors, boxes), dist, atol=1e-4)


def test_head_dfl_module_is_the_one_decode():
    """The head's DFL module and the loss decode through the same function (`ops.boxes.dfl_decode`)."""
    from detforge.models.heads.base import DFL

    logits = torch.randn(2, 7, 4 * 16)
    assert torch.equal(DFL(16)(logits), dfl_decode(logits, 16))
