"""Run a model over a validation loader and score it with COCO metrics."""

from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

from detforge.eval import evaluate
from detforge.infer.postprocess import non_max_suppression, scale_boxes_to_original


def images_to_float(images: torch.Tensor, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 `[B, 3, H, W]` → float in 0..1 on `device` (the loader keeps images uint8 to save memory)."""
    return images.to(device, non_blocking=True).to(dtype) / 255.0


@torch.no_grad()
def validate(model: nn.Module, loader, names: list[str], device: torch.device, conf: float = 0.001,
             iou: float = 0.7, max_det: int = 300, progress: bool = True):
    """Predict every validation image, map boxes back to original pixels, return an `EvalResult`."""
    model.eval()
    dtype = next(model.parameters()).dtype
    predictions, ground_truths = [], []
    for batch in tqdm(loader, desc="  validating", leave=False, disable=not progress):
        output = model(images_to_float(batch["img"], device, dtype))
        detections = non_max_suppression(output, conf, iou, max_det, multi_label=True)
        for i, det in enumerate(detections):
            ratio, pad = batch["ratio_pad"][i]
            shape = batch["ori_shapes"][i]
            image_id = len(ground_truths)
            gt = batch["boxes"][batch["batch_idx"] == i]
            ground_truths.append({
                "image_id": image_id, "height": shape[0], "width": shape[1],
                "boxes": scale_boxes_to_original(gt, ratio, pad, shape).numpy(),
                "classes": batch["cls"][batch["batch_idx"] == i].numpy(),
            })
            det = det.cpu()
            predictions.append({
                "image_id": image_id, "boxes": scale_boxes_to_original(det[:, :4], ratio, pad, shape).numpy(),
                "scores": det[:, 4].numpy(), "classes": det[:, 5].long().numpy(),
            })
    return evaluate(predictions, ground_truths, names)
