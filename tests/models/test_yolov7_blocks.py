"""YOLOv7-family blocks: each block's fuse() keeps its outputs; E-ELAN is g ELANs summed; the
planned re-parameterization rule refuses identity branches on concatenation paths."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from yolov7_helpers import randomize

from detforge.errors import ConfigError
from detforge.models.blocks import (
    EELAN,
    ELAN,
    SPPCSPC,
    ImplicitA,
    ImplicitM,
    MPDown,
    ReOrg,
    RepConv,
    RepConvN,
    downsample,
    fold_implicit,
    rep_conv,
)
from detforge.models.deploy import fuse_parts
from detforge.models.layers import ConvBNAct


def assert_fuse_keeps_output(block: nn.Module, x: torch.Tensor) -> nn.Module:
    block = randomize(block).eval()
    with torch.no_grad():
        before = block(x)
        fuse_parts(block)
        if callable(getattr(block, "fuse", None)):
            block.fuse()
        after = block(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    assert (before - after).abs().max() < 1e-4
    return block


@pytest.mark.parametrize("c_in,c_out,stride,groups", [(8, 8, 1, 1), (8, 16, 1, 1), (8, 8, 2, 1), (8, 8, 1, 2)])
def test_repconv_fuses_to_one_3x3(c_in, c_out, stride, groups):
    block = RepConv(c_in, c_out, stride, groups)
    assert (block.identity is not None) == (c_in == c_out and stride == 1)
    fused = assert_fuse_keeps_output(block, torch.randn(2, c_in, 12, 10))
    convs = [m for m in fused.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].kernel_size == (3, 3) and convs[0].bias is not None


def test_repconvn_has_no_identity_and_fuses():
    block = RepConvN(8, 8)
    assert block.identity is None
    assert_fuse_keeps_output(block, torch.randn(1, 8, 9, 9))


def test_implicit_folds_into_conv():
    torch.manual_seed(0)
    conv, ia, im = nn.Conv2d(6, 10, 1), ImplicitA(6), ImplicitM(10)
    randomize(nn.ModuleList([ia, im]))
    x = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        before = im(conv(ia(x)))
        fold_implicit(conv, ia, im)
        assert (conv(x) - before).abs().max() < 1e-5


@pytest.mark.parametrize("depth,every", [(4, 2), (2, 1), (6, 2), (4, 1)])
def test_elan_fuses_and_has_expected_width(depth, every):
    block = ELAN(16, 24, hidden=8, depth=depth, width=4, every=every)
    taps = len(range(depth - 1, -1, -every))
    assert block.transition.conv.in_channels == 2 * 8 + taps * 4
    assert_fuse_keeps_output(block, torch.randn(1, 16, 8, 8))


def test_eelan_equals_summed_elans():
    """E-ELAN with g groups (group conv, shuffle, merge) computes g independent ELANs, summed."""
    torch.manual_seed(0)
    eelan = randomize(EELAN(12, 10, hidden=4, depth=4, width=6, every=2, cardinality=2)).eval()
    singles = [ELAN(12, 10, hidden=4, depth=4, width=6, every=2).eval() for _ in range(2)]
    for k, single in enumerate(singles):
        for name, tensor in single.state_dict().items():
            source = eelan.state_dict()[name]
            if tensor.ndim == 0:
                continue
            rows = tensor.shape[0]
            tensor.copy_(source[k * rows:(k + 1) * rows])
    x = torch.randn(2, 12, 8, 8)
    with torch.no_grad():
        assert (eelan(x) - sum(s(x) for s in singles)).abs().max() < 1e-5
    assert_fuse_keeps_output(eelan, x)


@pytest.mark.parametrize("kind,c_out", [("mp", 16), ("downc", 16), ("conv", 12), ("maxpool", 8)])
def test_downsamplers_halve_and_fuse(kind, c_out):
    block = downsample(kind, 8, c_out)
    x = torch.randn(1, 8, 16, 12)
    fused = assert_fuse_keeps_output(copy.deepcopy(block), x)
    assert fused(x).shape == (1, c_out, 8, 6)
    if kind == "downc":
        assert block.reduce.conv.out_channels == 8  # DownC: hidden = c_in
    if kind == "mp":
        assert isinstance(block, MPDown) and block.reduce.conv.out_channels == c_out // 2


@pytest.mark.parametrize("lite", [False, True])
def test_sppcspc_fuses(lite):
    block = SPPCSPC(16, 8, lite=lite)
    assert sum(isinstance(m, ConvBNAct) for m in block.modules()) == (4 if lite else 7)
    assert_fuse_keeps_output(block, torch.randn(1, 16, 13, 13))


def test_reorg_is_space_to_depth():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    y = ReOrg()(x)
    assert y.shape == (1, 8, 2, 2)
    assert torch.equal(y[:, :2], x[..., ::2, ::2]) and torch.equal(y[:, 2:4], x[..., 1::2, ::2])


def test_leaky_relu_selectable():
    assert isinstance(ConvBNAct(3, 4, act="leaky_relu").act, nn.LeakyReLU)
    with pytest.raises(ConfigError, match="unknown activation"):
        ConvBNAct(3, 4, act="gelu2")


def test_planned_reparam_refuses_identity_on_concat_path():
    with pytest.raises(ConfigError, match=r"backbone\.stages\.1\.elan\.convs\.0: a RepConv with an identity branch "
                                          r"feeds a concat"):
        ELAN(16, 16, hidden=8, depth=4, conv="repconv", name="backbone.stages.1.elan")
    swapped = ELAN(16, 16, hidden=8, depth=4, conv="repconv", swap_identity=True)
    assert all(isinstance(c, RepConvN) for c in swapped.convs)
    assert_fuse_keeps_output(swapped, torch.randn(1, 16, 8, 8))
    # no identity possible (channels change) → a RepConv is fine anywhere; on a plain output it keeps its identity
    assert type(rep_conv("repconv", 8, 16, feeds="concat")) is RepConv
    assert rep_conv("repconv", 8, 8).identity is not None
    with pytest.raises(ConfigError, match="feeds a residual"):
        rep_conv("repconv", 8, 8, feeds="residual", where="x")
