"""Turning a trained model into its deployed self: every inference-only rewrite in one place.

`deploy_model` (and `Detector.deploy`, which calls it) runs, in order:

1. `eval()`;
2. fuse: the model's own `fuse()` — a `Detector` asks every submodule that has one, so each
   block owns how it folds (BatchNorm into conv, re-parameterized branches, implicit knowledge);
3. training-only parts go: the detector's optional `aux` module (auxiliary heads) is set to
   None and every submodule's `remove_training_parts()` hook is called;
4. optional move to a device / dtype;
5. for `target="torch"` only: channels-last memory (oneDNN's native layout), activations that
   overwrite their conv's output, and on CPU (float32 or bfloat16) each conv block packed into
   one oneDNN call (`pack_convs`, checked against the eager outputs before it is kept).

`target="export"` stops after step 4: the packed oneDNN ops cannot be traced by ONNX or
TorchScript, and in-place or layout changes buy nothing in a traced graph. Both targets give
the eager model's outputs up to float rounding.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import nn

from detforge.models.layers import ConvBNAct

logger = logging.getLogger(__name__)

Target = Literal["torch", "export"]
TARGETS = ("torch", "export")
# dtype -> how far packed outputs may move from the eager ones on the probe (absolute and relative)
PACKING_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 3e-2}


@torch.no_grad()
def fuse_parts(model: nn.Module) -> nn.Module:
    """Call `fuse()` on every submodule of `model` (not `model` itself) that has one; returns `model`."""
    for module in list(model.modules()):
        if module is not model and callable(getattr(module, "fuse", None)):
            module.fuse()
    return model


def remove_training_parts(model: nn.Module) -> nn.Module:
    """Drop what only training uses: the `aux` module (auxiliary heads) and whatever each
    submodule's `remove_training_parts()` hook removes. Returns `model`."""
    if getattr(model, "aux", None) is not None:
        model.aux = None
    for module in list(model.modules()):
        if module is not model and callable(getattr(module, "remove_training_parts", None)):
            module.remove_training_parts()
    return model


@torch.no_grad()
def deploy_model(model: nn.Module, target: Target = "torch", device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, fuse: bool = True) -> nn.Module:
    """Rewrite `model` in place for inference and return it (see the module docstring for the steps).

    Works on any `nn.Module`: a model with its own `fuse()` is fused by it, otherwise each
    submodule's `fuse()` is called. `fuse=False` keeps the unfused convs (and skips packing,
    which needs fused blocks). Copy the model first if the original must stay trainable.
    """
    if target not in TARGETS:
        from detforge.errors import DetforgeError

        raise DetforgeError(f"deploy target {target!r} is unknown; use one of {', '.join(TARGETS)}")
    model.eval()
    if fuse:
        own_fuse = getattr(model, "fuse", None)
        if callable(own_fuse):
            own_fuse()
        else:
            fuse_parts(model)
    remove_training_parts(model)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    if target == "torch":
        inplace_activations(model)
        model.to(memory_format=torch.channels_last)
        params = next(model.parameters(), None)
        if fuse and params is not None and params.device.type == "cpu":
            pack_convs(model)  # float32 and bfloat16; other dtypes stay eager
    return model


def inplace_activations(model: nn.Module) -> None:
    """Let each conv block's activation overwrite the conv output it is given (inference only).

    That output is a fresh tensor nobody else holds, so nothing changes but one less large
    allocation per block; never do this to a model that will be trained.
    """
    for module in model.modules():
        if isinstance(module, ConvBNAct) and hasattr(module.act, "inplace"):
            module.act.inplace = True


class PackedConvAct(nn.Module):
    """A conv (optionally followed by SiLU) as one oneDNN call on CPU.

    The weight is reordered once into oneDNN's blocked layout instead of on every call, and the
    activation runs as the conv's post-op instead of another pass over memory: about 15% less
    time per forward than eager PyTorch. These are the oneDNN ops PyTorch's own CPU compiler
    (inductor) emits; the arithmetic is the eager layers' (`pack_convs` checks the outputs).
    Not traceable to ONNX/TorchScript: `deploy(target="export")` never creates it.
    """

    def __init__(self, conv: nn.Conv2d, silu: bool):
        super().__init__()
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.attr = "swish" if silu else "none"
        self.weight = torch.ops.mkldnn._reorder_convolution_weight(
            conv.weight.detach(), self.padding, self.stride, self.dilation, self.groups)
        self.bias = None if conv.bias is None else conv.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, self.padding, self.stride,
                                                       self.dilation, self.groups, self.attr, [], "")


def _packable(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, name, module) of every fused `ConvBNAct` with SiLU or no activation, and of every other
    plain zero-padded `nn.Conv2d` (e.g. a head's prediction convs).

    LeakyReLU blocks (YOLOv7-tiny) stay eager: oneDNN's `leaky_relu` post-op measured about 25%
    slower per forward than the eager conv + in-place LeakyReLU (CPU thread time, 320 px, 1 thread).
    """
    found = []
    for parent in model.modules():
        if isinstance(parent, ConvBNAct):
            continue  # its conv is packed with the block
        for name, child in parent.named_children():
            fused_block = (isinstance(child, ConvBNAct) and isinstance(child.bn, nn.Identity)
                           and isinstance(child.act, (nn.SiLU, nn.Identity)) and child.conv.padding_mode == "zeros")
            plain_conv = type(child) is nn.Conv2d and child.padding_mode == "zeros"
            if fused_block or plain_conv:
                found.append((parent, name, child))
    return found


def pack_convs(model: nn.Module) -> int:
    """Swap the fused conv blocks and plain convs of a CPU float32 or bfloat16 model for `PackedConvAct`s,
    in place.

    Checked on a small input first: if this PyTorch build lacks the oneDNN ops or the outputs
    move by more than float rounding, the model is left as it was (so is a model of another dtype).
    Returns the number swapped.
    """
    targets = _packable(model)
    if not targets or not torch.backends.mkldnn.is_available():
        return 0
    dtype = next(model.parameters()).dtype  # a packable conv has a weight
    tolerance = PACKING_TOLERANCE.get(dtype)
    if tolerance is None:
        return 0
    stride = max(int(s) for s in getattr(model, "strides", [32]))
    probe = torch.rand(1, 3, 2 * stride, 3 * stride, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = model(probe)
        try:
            for parent, name, child in targets:
                packed = (PackedConvAct(child.conv, isinstance(child.act, nn.SiLU)) if isinstance(child, ConvBNAct)
                          else PackedConvAct(child, silu=False))
                setattr(parent, name, packed)
            ok = torch.allclose(model(probe), expected, rtol=tolerance, atol=tolerance)
        except (RuntimeError, AttributeError) as err:
            logger.debug("oneDNN conv packing unavailable (%s); running eager convs", err)
            ok = False
    if not ok:
        for parent, name, child in targets:
            setattr(parent, name, child)
        return 0
    return len(targets)
