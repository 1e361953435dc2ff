"""`Detector.deploy()`: the deployed model computes what the eager model computes, minus training parts."""

import copy

import pytest
import torch
from torch import nn

import detforge
from detforge.errors import DetforgeError
from detforge.models.deploy import PackedConvAct, deploy_model


def varied_model(name="yolov8n", num_classes=3):
    """A model whose weights and BN statistics are not the init's (so fusing has something to fold)."""
    torch.manual_seed(0)
    model = detforge.create_model(name, num_classes=num_classes).eval()
    with torch.no_grad():
        for key, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if key.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif tensor.is_floating_point() and not key.endswith("bins"):
                tensor.add_(torch.randn_like(tensor) * 0.05)
    return model


class TrainingOnly(nn.Module):
    """Stands in for a block with a training-only branch (e.g. a head's auxiliary convs)."""

    def __init__(self):
        super().__init__()
        self.extra = nn.Conv2d(1, 1, 1)
        self.removed = False

    def remove_training_parts(self):
        self.extra = None
        self.removed = True


@pytest.mark.parametrize("target", ["torch", "export"])
def test_deployed_outputs_equal_eager(target):
    for name in ("yolov8n", "yolov8n-obj"):
        model = varied_model(name)
        x = torch.rand(2, 3, 96, 128)
        with torch.no_grad():
            expected = model(x)
        deployed = copy.deepcopy(model).deploy(target)
        assert not deployed.training
        assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
        packed = any(isinstance(m, PackedConvAct) for m in deployed.modules())
        assert packed == (target == "torch" and torch.backends.mkldnn.is_available())
        with torch.inference_mode():
            torch.testing.assert_close(deployed(x.contiguous(memory_format=torch.channels_last)), expected,
                                       atol=1e-3, rtol=1e-3)


def test_deploy_drops_training_parts():
    model = varied_model()
    model.aux = nn.Conv2d(3, 3, 1)
    model.head.extra_part = TrainingOnly()
    deployed = model.deploy("export")
    assert deployed is model and model.aux is None and model.head.extra_part.removed
    assert not any(k.startswith("aux.") for k in model.state_dict())


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_export_target_stays_traceable():
    model = varied_model()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    deployed = copy.deepcopy(model).deploy(target="export")
    with torch.no_grad():
        traced = torch.jit.trace(deployed, x, check_trace=False)
        torch.testing.assert_close(traced(x), expected, atol=1e-4, rtol=1e-4)


def test_unknown_target_is_a_one_line_error():
    with pytest.raises(DetforgeError, match="torch, export"):
        varied_model().deploy("tensorrt")


def test_plain_module_with_own_fuse_is_fused_by_it():
    class Fusable(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.fused = False

        def fuse(self):
            self.fused = True

        def forward(self, x):
            return self.conv(x)

    module = deploy_model(Fusable(), target="export")
    assert module.fused and not module.training
