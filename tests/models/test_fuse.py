"""`Detector.fuse()` folds BatchNorm into convs without changing outputs."""

import torch
from torch import nn

import detforge


def randomize_batchnorm(model):
    generator = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=generator) * 0.1)


def test_fuse_keeps_outputs_and_removes_batchnorm():
    for name in ("yolov8n", "yolov8n-coupled", "yolov8n-obj"):
        torch.manual_seed(0)
        model = detforge.create_model(name, num_classes=3).eval()
        randomize_batchnorm(model)
        x = torch.rand(1, 3, 96, 64)
        with torch.no_grad():
            before = model(x)
            model.fuse()
            after = model(x)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert torch.allclose(before, after, atol=1e-4), (name, (before - after).abs().max())


def test_fuse_is_idempotent():
    model = detforge.create_model("yolov8n", num_classes=2).eval().fuse()
    params = sum(p.numel() for p in model.parameters())
    model.fuse()
    assert sum(p.numel() for p in model.parameters()) == params
