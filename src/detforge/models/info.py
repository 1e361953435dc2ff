"""Parameter and FLOP accounting per part (backbone, neck, each head branch).

FLOPs count multiply-adds ×2 of every convolution and linear layer, and of the DFL projection,
on one image of the given size — the convention the YOLO papers report (YOLOv8n: 8.7 GFLOPs at
640). BatchNorm, activations and pooling are not counted, so the figure is the same before and
after `fuse()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from detforge.models.heads.base import DFL


@dataclass
class PartInfo:
    name: str
    params: int
    gflops: float
    outputs: list[list[int]] = field(default_factory=list)


@dataclass
class ModelInfo:
    name: str
    imgsz: int
    parts: list[PartInfo]
    params: int
    gflops: float

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        rows = [("part", "params", "GFLOPs", "output shapes")]
        for p in self.parts:
            shapes = "  ".join("x".join(map(str, s)) for s in p.outputs)
            rows.append((p.name, f"{p.params:,}", f"{p.gflops:.2f}", shapes))
        rows.append(("total", f"{self.params:,}", f"{self.gflops:.1f}", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            "  ".join(cell.ljust(w) if i in (0, 3) else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
            for r in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        return f"{self.name} at {self.imgsz}x{self.imgsz}\n" + "\n".join(lines)


def _layer_flops(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        return 2 * output.numel() * k
    if isinstance(module, nn.Linear):
        return 2 * output.numel() * module.in_features
    if isinstance(module, DFL):
        return 2 * output.numel() * module.reg_max
    return 0


def part_groups(model: nn.Module) -> dict[str, list[str]]:
    """Module-name prefixes making up each reported part: backbone, neck, and each head branch."""
    groups = {"backbone": ["backbone"], "neck": ["neck"]}
    head_children = [name for name, child in model.head.named_children() if any(True for _ in child.parameters())]
    for name in head_children:  # e.g. box_branches, cls_branches, obj_preds, dfl
        groups[f"head.{name}"] = [f"head.{name}"]
    if getattr(model, "aux", None) is not None:  # auxiliary heads: training only, no inference FLOPs
        groups["aux (training only)"] = ["aux"]
    return groups


@torch.no_grad()
def model_info(model: nn.Module, imgsz: int = 640) -> ModelInfo:
    """Run one `[1, 3, imgsz, imgsz]` forward pass with hooks and tally params/FLOPs per part."""
    flops: dict[str, int] = {}
    outputs: dict[str, list[list[int]]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear, DFL)):
            hooks.append(module.register_forward_hook(
                lambda m, _i, out, name=name: flops.__setitem__(name, flops.get(name, 0) + _layer_flops(m, out))
            ))
    for part in ("backbone", "neck"):
        hooks.append(getattr(model, part).register_forward_hook(
            lambda _m, _i, out, part=part: outputs.__setitem__(part, [list(t.shape) for t in out])
        ))
    for name, child in model.head.named_children():
        for level in child if isinstance(child, nn.ModuleList) else []:
            last = level[-1] if isinstance(level, nn.Sequential) and len(level) else level
            hooks.append(last.register_forward_hook(
                lambda _m, _i, out, part=f"head.{name}": outputs.setdefault(part, []).append(list(out.shape))
            ))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        head_out = model(torch.zeros(1, 3, imgsz, imgsz, device=param.device, dtype=param.dtype))
        outputs["head"] = [list(head_out.shape)]
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    params = dict(model.named_parameters())
    parts = []
    for part, prefixes in part_groups(model).items():
        def inside(key: str, prefixes=prefixes) -> bool:
            return any(key == p or key.startswith(p + ".") for p in prefixes)

        parts.append(PartInfo(
            part,
            sum(v.numel() for k, v in params.items() if inside(k)),
            sum(v for k, v in flops.items() if inside(k)) / 1e9,
            outputs.get(part, []),
        ))
    parts.append(PartInfo("head (decoded)", 0, 0.0, outputs["head"]))
    name = getattr(model.config, "name", type(model).__name__) if model.config is not None else "model"
    return ModelInfo(name, imgsz, parts, sum(p.numel() for p in params.values()), sum(flops.values()) / 1e9)
