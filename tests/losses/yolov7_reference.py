"""Helpers to run the official YOLOv7 losses (`yolov7detect`, GPL, dev-only) beside ours.

The reference losses read anchors, strides and hyper-parameters from a model object; a stub with
just those attributes stands in for a built model. Cases put box centres and sizes on a 1/32-px
grid and use power-of-two image sizes, so the reference's normalised xywh targets and our xyxy
pixel targets describe exactly the same boxes.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

P5_ANCHORS = torch.tensor([[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
                          dtype=torch.float32).view(3, 3, 2)
P5_STRIDES = [8, 16, 32]
P6_ANCHORS = torch.tensor([[19, 27, 44, 40, 38, 94], [96, 68, 86, 152, 180, 137], [140, 301, 303, 264, 238, 542],
                           [436, 615, 739, 380, 925, 792]], dtype=torch.float32).view(4, 3, 2)
P6_STRIDES = [8, 16, 32, 64]


class _StubDetect(nn.Module):
    def __init__(self, nc: int, anchors: torch.Tensor, strides: list[int]):
        super().__init__()
        self.nc, self.nl, self.na = nc, anchors.shape[0], anchors.shape[1]
        self.stride = torch.tensor(strides, dtype=torch.float32)
        self.register_buffer("anchors", anchors / self.stride.view(-1, 1, 1))  # the reference keeps cell units


class StubModel(nn.Module):
    """What `ComputeLossOTA(model)` reads: `hyp`, `gr`, a parameter (for the device), `model[-1]`."""

    def __init__(self, nc: int, anchors: torch.Tensor, strides: list[int], hyp: dict):
        super().__init__()
        self.model = nn.ModuleList([_StubDetect(nc, anchors, strides)])
        self.hyp, self.gr = hyp, 1.0
        self.anchor_param = nn.Parameter(torch.zeros(1))


def reference_hyp(nc: int, nl: int, imgsz: int) -> dict:
    """The reference's scratch hyp after its train.py rescales box/cls/obj for nl, nc and imgsz."""
    return {"box": 0.05 * 3 / nl, "obj": 0.7 * (imgsz / 640) ** 2 * 3 / nl, "cls": 0.3 * nc / 80 * 3 / nl,
            "cls_pw": 1.0, "obj_pw": 1.0, "fl_gamma": 0.0, "anchor_t": 4.0, "label_smoothing": 0.0}


def make_case(seed: int, per_image: tuple[int, ...], nc: int = 3, imgsz: int = 128,
              anchors: torch.Tensor = P5_ANCHORS, strides: list[int] = P5_STRIDES):
    """Random raw maps `[B, A, H, W, 5 + C]` per level and targets in both conventions."""
    g = torch.Generator().manual_seed(seed)
    maps = [torch.randn(len(per_image), anchors.shape[1], imgsz // s, imgsz // s, 5 + nc, generator=g)
            for s in strides]
    rows = []
    for image, count in enumerate(per_image):
        for _ in range(count):
            w, h = (torch.randint(4 * 32, imgsz // 2 * 32, (2,), generator=g) / 32).tolist()
            cx = torch.randint(int(w * 16) + 1, int((imgsz - w / 2) * 32), (1,), generator=g).item() / 32
            cy = torch.randint(int(h * 16) + 1, int((imgsz - h / 2) * 32), (1,), generator=g).item() / 32
            rows.append([image, torch.randint(0, nc, (1,), generator=g).item(), cx, cy, w, h])
    t = torch.tensor(rows, dtype=torch.float32).view(-1, 6)
    boxes = torch.cat((t[:, 2:4] - t[:, 4:6] / 2, t[:, 2:4] + t[:, 4:6] / 2), 1)
    reference_targets = torch.cat((t[:, :2], t[:, 2:6] / imgsz), 1)  # image, class, normalised xywh
    return SimpleNamespace(maps=maps, boxes=boxes, cls=t[:, 1].clone(), batch_idx=t[:, 0].clone(),
                           reference_targets=reference_targets, imgs=torch.zeros(len(per_image), 3, imgsz, imgsz),
                           anchors=anchors, strides=strides, nc=nc, imgsz=imgsz)


def head_output(maps, anchors, strides, aux_maps=None):
    """Duck-typed `AnchorHeadOutput` (maps, anchors, strides, aux)."""
    aux = None if aux_maps is None else SimpleNamespace(maps=aux_maps, anchors=anchors, strides=strides, aux=None)
    return SimpleNamespace(maps=maps, anchors=anchors, strides=strides, aux=aux)
