"""Distribution Focal Loss against a hand-computed value."""

import math

import pytest
import torch

from detforge.losses.dfl import dfl_loss
from detforge.ops.boxes import dfl_decode


def log_softmax_of_range(n):
    """log-softmax of logits [0, 1, ..., n-1]: i − log Σ e^j."""
    norm = math.log(sum(math.exp(j) for j in range(n)))
    return [i - norm for i in range(n)]


def test_hand_computed_value():
    lsm = log_softmax_of_range(4)
    logits = torch.arange(4.0).repeat(4).unsqueeze(0)  # [1, 16]: each side's logits are 0, 1, 2, 3
    target = torch.tensor([[1.3, 0.0, 2.5, 2.0]])
    per_side = [
        -(0.7 * lsm[1] + 0.3 * lsm[2]),  # 1.3 → bins 1 and 2, weights 0.7 / 0.3
        -lsm[0],  # exactly on bin 0
        -(0.5 * lsm[2] + 0.5 * lsm[3]),
        -lsm[2],
    ]
    assert dfl_loss(logits, target, reg_max=4).item() == pytest.approx(sum(per_side) / 4, rel=1e-5)


def test_targets_beyond_the_last_bin_are_clamped():
    lsm = log_softmax_of_range(16)
    logits = torch.arange(16.0).repeat(4).unsqueeze(0)
    target = torch.full((1, 4), 40.0)  # clamped to 14.99: 1% on bin 14, 99% on bin 15
    expected = -(0.01 * lsm[14] + 0.99 * lsm[15])
    assert dfl_loss(logits, target).item() == pytest.approx(expected, rel=1e-4)


def test_minimised_where_the_decoded_distance_equals_the_target():
    target = torch.tensor([[3.25, 0.5, 7.0, 11.9]])
    logits = torch.zeros(1, 64, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=20.0)
    for _ in range(300):
        opt.zero_grad()
        dfl_loss(logits, target).sum().backward()
        opt.step()
    assert torch.allclose(dfl_decode(logits.detach(), 16), target, atol=0.05)


def test_shape_per_box():
    assert dfl_loss(torch.randn(5, 64), torch.rand(5, 4) * 15).shape == (5,)
