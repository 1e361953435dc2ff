"""Import official YOLOv7 checkpoints (`yolov7*.pt`) into detforge's named parts.

The reference stores a model as one flat list of layers (`model.{index}.{...}`). detforge's
YOLOv7 is the same network made of named parts (backbone stages, ELAN blocks, neck levels,
IDetect head, aux head), so the import walks our parts in the order the reference builds its
layers and pairs them one to one: every reference layer that holds tensors must meet exactly
one of ours with exactly the same tensor names and shapes, and every one of our tensors must be
filled — anything else is refused with a message naming the layer. The architecture is
recognised from the index of the detection layer (one per packaged model and layout), the class
count and anchors from that layer's tensors, and the activation from the pickled modules.

Both layouts are read: training (IDetect / IAuxDetect with implicit knowledge and the P6 aux
heads) and deploy (plain Detect, no aux heads). The checkpoint is unpickled by
`io.foreign.load_checkpoint` (no code runs); this module only reads tensors and a few plain
attributes (`names`, activation class names) from the resulting stand-ins.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detforge.errors import WeightsError
from detforge.io.foreign import StandIn, state_dict_from_standin
from detforge.models.blocks.down import MPDown
from detforge.models.blocks.elan import ELAN
from detforge.models.blocks.rep import RepConv
from detforge.models.blocks.spp import SPPCSPC
from detforge.models.build import create_model
from detforge.models.detector import Detector
from detforge.models.layers import ConvBNAct

logger = logging.getLogger(__name__)

YOLOV7_NAMESPACES = ("models", "yolov7.models")
"""Where the reference's classes live: `models.*` (the official repository), `yolov7.models.*` (its pip package)."""

# Index of the detection layer → packaged model (training layout, then deploy layout).
DETECT_INDEX = {
    77: "yolov7-tiny", 105: "yolov7", 121: "yolov7x",
    122: "yolov7-w6", 144: "yolov7-e6", 166: "yolov7-d6", 265: "yolov7-e6e",
    118: "yolov7-w6", 140: "yolov7-e6", 162: "yolov7-d6", 261: "yolov7-e6e",
}
ACTIVATIONS = {"SiLU": "silu", "LeakyReLU": "leaky_relu", "ReLU": "relu"}
CONV_KEYS = ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked")
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Target:
    """One of our tensors (or group `group` of `groups` equal row blocks of it, for E-ELAN)."""

    key: str
    group: int = 0
    groups: int = 1


Layer = dict[str, Target]  # reference key suffix within one layer → our tensor


def is_yolov7_checkpoint(checkpoint: Any) -> bool:
    """True when the checkpoint dict holds a model pickled from the reference's namespaces."""
    if not isinstance(checkpoint, dict):
        return False
    return any(
        isinstance(v, StandIn) and type(v).standin_source.startswith(tuple(ns + "." for ns in YOLOV7_NAMESPACES))
        for v in checkpoint.values()
    )


def _conv(prefix: str, group: int = 0, groups: int = 1) -> Layer:
    return {k: Target(f"{prefix}.{k}", group, groups) for k in CONV_KEYS}


def _nested(**parts: Layer) -> Layer:
    return {f"{name}.{k}": t for name, layer in parts.items() for k, t in layer.items()}


class _Layout:
    """Our tensors grouped per reference layer, in the reference's layer order."""

    def __init__(self, model: Detector):
        self.names = {id(m): n for n, m in model.named_modules()}
        self.layers: list[Layer] = []
        self._model(model)

    def name(self, module: nn.Module) -> str:
        return self.names[id(module)]

    def conv(self, module: ConvBNAct) -> None:
        self.layers.append(_conv(self.name(module)))

    def down(self, module: nn.Module) -> None:
        if isinstance(module, ConvBNAct):
            self.conv(module)
        elif isinstance(module, MPDown) and module.kind == "downc":  # one DownC layer
            n = self.name
            self.layers.append(_nested(cv1=_conv(n(module.reduce)), cv2=_conv(n(module.down)),
                                       cv3=_conv(n(module.pool_conv))))
        elif isinstance(module, MPDown):  # MP, then three Conv layers
            for part in (module.pool_conv, module.reduce, module.down):
                self.conv(part)
        elif not isinstance(module, nn.MaxPool2d):
            raise WeightsError(f"no YOLOv7 layout for down-sampler {type(module).__name__}")

    def elan(self, block: ELAN) -> None:
        g = block.cardinality
        for k in range(g):  # the reference lays out an E-ELAN's groups as separate ELANs
            for part in (block.stem_a, block.stem_b, *block.convs, block.transition):
                if not isinstance(part, ConvBNAct):
                    raise WeightsError(f"{self.name(part)}: the reference's ELANs have plain convs only")
                self.layers.append(_conv(self.name(part), k, g))

    def spp(self, block: SPPCSPC) -> None:
        n = self.name
        if block.lite:  # YOLOv7-tiny writes it out as four Conv layers
            for part in (block.shortcut, block.reduce[0], block.merge[0], block.project):
                self.conv(part)
            return
        self.layers.append(_nested(
            cv1=_conv(n(block.reduce[0])), cv2=_conv(n(block.shortcut)), cv3=_conv(n(block.reduce[1])),
            cv4=_conv(n(block.reduce[2])), cv5=_conv(n(block.merge[0])), cv6=_conv(n(block.merge[1])),
            cv7=_conv(n(block.project)),
        ))

    def out_conv(self, module: nn.Module) -> None:
        if isinstance(module, ConvBNAct):
            return self.conv(module)
        if not isinstance(module, RepConv):
            raise WeightsError(f"{self.name(module)}: no YOLOv7 layout for {type(module).__name__}")
        p = self.name(module)
        layer = {"rbr_dense.0.weight": Target(f"{p}.dense.conv.weight"),
                 "rbr_1x1.0.weight": Target(f"{p}.pointwise.conv.weight")}
        for k in BN_KEYS:
            layer[f"rbr_dense.1.{k}"] = Target(f"{p}.dense.bn.{k}")
            layer[f"rbr_1x1.1.{k}"] = Target(f"{p}.pointwise.bn.{k}")
            if module.identity is not None:
                layer[f"rbr_identity.{k}"] = Target(f"{p}.identity.{k}")
        self.layers.append(layer)

    def _model(self, model: Detector) -> None:
        backbone, neck, head = model.backbone, model.neck, model.head
        for module in backbone.stem:
            if isinstance(module, ConvBNAct):
                self.conv(module)
        for down, block in backbone.stages:
            self.down(down)
            self.elan(block)
        self.spp(neck.spp)
        for reduce, lateral, block in zip(neck.reduce, neck.lateral, neck.top_down):
            self.conv(reduce)
            self.conv(lateral)
            self.elan(block)
        for down, block in zip(neck.downsample, neck.bottom_up):
            self.down(down)
            self.elan(block)
        for module in neck.out_convs:
            self.out_conv(module)
        if model.aux is not None:
            for stem in model.aux.stems:
                self.conv(stem)
        detect: Layer = {}
        for i in range(len(head.preds)):
            detect[f"m.{i}.weight"] = Target(f"head.preds.{i}.weight")
            detect[f"m.{i}.bias"] = Target(f"head.preds.{i}.bias")
            if head.implicit_a is not None:
                detect[f"ia.{i}.implicit"] = Target(f"head.implicit_a.{i}.implicit")
                detect[f"im.{i}.implicit"] = Target(f"head.implicit_m.{i}.implicit")
            if model.aux is not None:
                detect[f"m2.{i}.weight"] = Target(f"aux.preds.{i}.weight")
                detect[f"m2.{i}.bias"] = Target(f"aux.preds.{i}.bias")
        detect["anchor_grid"] = Target("head.anchors")
        self.layers.append(detect)


def yolov7_layout(model: Detector) -> list[Layer]:
    """Our state-dict keys per reference layer that holds tensors, in the reference's layer order."""
    return _Layout(model).layers


def _reference_layers(state: dict[str, torch.Tensor], path: Path) -> dict[int, dict[str, torch.Tensor]]:
    layers: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, tensor in state.items():
        match = re.fullmatch(r"model\.(\d+)\.(.+)", key)
        if match is None:
            raise WeightsError(f"{path}: tensor {key!r} is outside the model's layer list; not a YOLOv7 model")
        layers[int(match[1])][match[2]] = tensor
    return dict(sorted(layers.items()))


def _activation(model: StandIn, path: Path) -> str:
    """The activation of the first conv layer (YOLOv7-tiny: LeakyReLU(0.1), the others: SiLU)."""
    for module in _walk(model):
        source = type(module).standin_source
        name = source.rsplit(".", 1)[-1]
        if source.startswith("torch.nn.modules.activation.") and name in ACTIVATIONS:
            slope = module.__dict__.get("negative_slope", 0.1)
            if name == "LeakyReLU" and slope != 0.1:
                raise WeightsError(f"{path}: LeakyReLU slope {slope!r} is not YOLOv7-tiny's 0.1")
            return ACTIVATIONS[name]
    raise WeightsError(f"{path}: no SiLU / LeakyReLU / ReLU activation found in the model")


def _walk(module: Any, depth: int = 0):
    if not isinstance(module, StandIn) or depth > 64:
        return
    yield module
    for child in (module.__dict__.get("_modules") or {}).values():
        yield from _walk(child, depth + 1)


def _class_names(model: StandIn, num_classes: int) -> list[str] | None:
    names = model.__dict__.get("names")
    if isinstance(names, (list, tuple)) and len(names) == num_classes and all(isinstance(n, str) for n in names):
        return list(names)
    return None


def _fill(model: Detector, layers: list[Layer], reference: dict[int, dict[str, torch.Tensor]], path: Path) -> None:
    """Copy every reference tensor into its place; refuse unknown, missing or mis-shaped tensors."""
    if len(layers) != len(reference):
        raise WeightsError(
            f"{path}: the checkpoint has {len(reference)} layers with weights, detforge's {model.config.name} "
            f"has {len(layers)}; the file is a modified YOLOv7"
        )
    state = {k: v.clone() for k, v in model.state_dict().items()}
    filled: set[str] = set()
    for (index, tensors), layer in zip(reference.items(), layers):
        extra = sorted(set(tensors) - set(layer) - {"anchors"})
        missing = sorted(set(layer) - set(tensors))
        if extra or missing:
            raise WeightsError(
                f"{path}: layer model.{index} does not match detforge's {model.config.name} "
                f"(unexpected {extra[:3]}, missing {missing[:3]}); the file is a modified YOLOv7"
            )
        for suffix, target in layer.items():
            source = tensors[suffix]
            dest = state[target.key]
            if suffix == "anchor_grid":
                source = source.reshape(dest.shape) if source.numel() == dest.numel() else source
            elif target.groups > 1 and dest.ndim > 0:
                rows = dest.shape[0] // target.groups
                dest = dest[target.group * rows:(target.group + 1) * rows]
            if tuple(source.shape) != tuple(dest.shape):
                raise WeightsError(
                    f"{path}: model.{index}.{suffix} has shape {tuple(source.shape)}, detforge's {target.key} "
                    f"needs {tuple(dest.shape)}; the file is a modified YOLOv7"
                )
            dest.copy_(source.to(dest.dtype))
            filled.add(target.key)
    if "aux.anchors" in state:  # the aux head shares the lead head's anchors
        state["aux.anchors"].copy_(state["head.anchors"])
        filled.add("aux.anchors")
    unfilled = sorted(set(state) - filled)
    if unfilled:
        raise WeightsError(f"{path}: no weights for {unfilled[:3]} in the checkpoint")
    model.load_state_dict(state, strict=True)


def import_yolov7(checkpoint: Any, path: str | Path) -> Detector:
    """Build the detforge model equal to an unpickled official YOLOv7 checkpoint (training or
    deploy layout); uses the EMA weights when present, fp16 → fp32. Returns it in eval mode."""
    path = Path(path)
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"{path}: expected a YOLOv7 checkpoint dict, got {type(checkpoint).__name__}")
    source = checkpoint.get("ema") if isinstance(checkpoint.get("ema"), StandIn) else checkpoint.get("model")
    if not isinstance(source, StandIn):
        raise WeightsError(f"{path}: no 'ema' or 'model' entry holding a model; not a YOLOv7 checkpoint")
    state = state_dict_from_standin(source)
    num_classes = _detect_outputs(state, path)
    return model_from_state(state, path, _activation(source, path), _class_names(source, num_classes))


def _detect_outputs(state: dict[str, torch.Tensor], path: Path) -> int:
    """Class count of the reference state dict's detection layer (0 when it has none)."""
    reference = _reference_layers(state, path)
    detect = reference[next(reversed(reference))] if reference else {}
    if "anchor_grid" not in detect or "m.0.weight" not in detect:
        return 0
    anchors = detect["anchor_grid"].numel() // 2 // sum(1 for k in detect if re.fullmatch(r"m\.\d+\.weight", k))
    return detect["m.0.weight"].shape[0] // max(anchors, 1) - 5


def model_from_state(state: dict[str, torch.Tensor], path: str | Path, act: str = "silu",
                     names: list[str] | None = None) -> Detector:
    """The detforge model equal to a reference YOLOv7 state dict (`model.{index}.…` keys) whose
    convs use activation `act` (YOLOv7-tiny: leaky_relu). Strict: see the module docstring."""
    path = Path(path)
    reference = _reference_layers(state, path)
    detect_index = next(reversed(reference), None)
    detect = reference.get(detect_index, {})
    name = DETECT_INDEX.get(detect_index)
    if name is None or "anchor_grid" not in detect or "m.0.weight" not in detect:
        raise WeightsError(
            f"{path}: not one of the YOLOv7 architectures detforge knows (detection layer at index {detect_index}); "
            f"supported: {', '.join(sorted(set(DETECT_INDEX.values())))}"
        )
    grid = detect["anchor_grid"].float()
    levels = sum(1 for k in detect if re.fullmatch(r"m\.\d+\.weight", k))
    anchors = grid.reshape(levels, -1, 2)
    outputs = detect["m.0.weight"].shape[0]
    if outputs % anchors.shape[1] or outputs // anchors.shape[1] <= 5:
        raise WeightsError(f"{path}: detection layer has {outputs} outputs, not anchors × (5 + classes)")
    num_classes = outputs // anchors.shape[1] - 5
    deploy = "ia.0.implicit" not in detect
    overrides: dict[str, Any] = {
        "head.anchors": [[round(v, 4) for v in level.flatten().tolist()] for level in anchors],
        "head.implicit": not deploy,
    }
    if "m2.0.weight" not in detect:
        overrides["aux"] = None
    for part in ("backbone", "neck"):
        overrides[f"{part}.act"] = act
    model = create_model(name, num_classes=num_classes, overrides=overrides, names=names)
    _fill(model, yolov7_layout(model), reference, path)
    logger.debug("imported %s (%s layout, %d classes) from %s", name, "deploy" if deploy else "training",
                 num_classes, path)
    return model.eval()
