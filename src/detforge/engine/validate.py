"""Score a model on a dataset split: the loop the trainer runs every epoch (`run_validation`) and the
standalone form behind `detforge val` (`val`), so both report exactly the same numbers."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

import torch
from torch import nn

from detforge.data import build_dataloader, load_dataset_spec
from detforge.data.preprocess import Preprocess
from detforge.device import half_dtype, select_device
from detforge.errors import DataError
from detforge.eval import evaluate
from detforge.infer.postprocess import non_max_suppression, scale_boxes_to_original
from detforge.io.convert import load_detector
from detforge.models.deploy import deploy_model
from detforge.models.detector import Detector, max_stride
from detforge.models.provenance import default_imgsz, training_settings
from detforge.progress import progress_bar

log = logging.getLogger(__name__)


def images_to_float(images: torch.Tensor, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 `[B, 3, H, W]` → float in 0..1 on `device` (the loader keeps images uint8 to save memory)."""
    return images.to(device, non_blocking=True).to(dtype) / 255.0


@torch.no_grad()
def run_validation(model: nn.Module, loader, names: list[str], device: torch.device, conf: float = 0.001,
                   iou: float = 0.7, max_det: int = 300, progress: bool = True, loss_fn=None, half: bool = False):
    """Predict every validation image, map boxes back to original pixels, return an `EvalResult`.

    With `loss_fn` (the training loss), the validation losses are computed from the same forward
    pass and returned as `EvalResult.losses` (mean per batch, e.g. box / cls / dfl).

    A `Detector` runs as a deployed copy (BatchNorm folded, on CPU each conv block one oneDNN call): the
    same boxes up to float rounding, ~20% less time per validation; `model` itself is left as it is.
    Other modules (e.g. an ONNX Runtime session behind `load_runtime`) run as given. `half`: a
    `Detector`'s copy runs in half precision (`detforge.device.half_dtype`), as `predict --half` runs it.
    """
    model.eval()
    with_loss = loss_fn is not None and _loss_ready(model)  # decided before deploying drops the aux heads
    dtype = next(model.parameters()).dtype
    if isinstance(model, Detector):
        dtype = half_dtype(device) if half else dtype
        model = deploy_model(copy.deepcopy(model), dtype=dtype)
    elif half:
        log.warning("half precision applies to detforge weights; an exported model runs in the precision it was "
                    "exported with")
    predictions, ground_truths = [], []
    loss_sums: dict[str, float] = {}
    batches = 0
    for batch in progress_bar(loader, desc="  validating", leave=False, disable=not progress):
        images = images_to_float(batch["img"], device, dtype)
        raw = None
        if with_loss:
            raw = model.raw(images)  # one forward pass for both the loss and the boxes
            output = model.head.decode(raw)
            _, items = loss_fn(raw, *(batch[k].to(device) for k in ("boxes", "cls", "batch_idx")))
            for k, v in items.items():
                loss_sums[k] = loss_sums.get(k, 0.0) + float(v)
            batches += 1
        else:
            output = model(images)
        detections = non_max_suppression(output.float(), conf, iou, max_det, multi_label=True)
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
    result = evaluate(predictions, ground_truths, names)
    if batches:
        result = dataclasses.replace(result, losses={k: v / batches for k, v in loss_sums.items()})
    return result


def _loss_ready(model: nn.Module) -> bool:
    """Whether the validation pass can give the loss its input: a head with `raw`/`decode` and no training-only
    auxiliary heads (their loss needs the aux outputs, which an eval-mode model does not compute)."""
    return (hasattr(model, "raw") and hasattr(getattr(model, "head", None), "decode")
            and getattr(model, "aux", None) is None)


def val(model, data, split: str = "val", imgsz: int | None = None, batch: int | None = None, conf: float | None = None,
        iou: float | None = None, max_det: int | None = None, coco_max_dets: int = 100, device: str = "cpu",
        workers: int = 2,
        save_dir: str | Path | None = None, plots: bool = True, save_json: bool = False, progress: bool = True,
        preprocess: str | Preprocess | None = None, half: bool = False):
    """Evaluate `model` (a `Detector` or a weights path) on `split` of `data` (a data.yaml, COCO json,
    VOC folder); returns an `EvalResult`.

    imgsz, batch, conf / iou / max_det (NMS): by default those the model was trained and validated with
    (stored in its weights; the run validated with batches of 2 x its training batch, which decides how
    rectangular batches are padded), else 640, 16 and the usual mAP protocol (0.001, 0.7, 300), so `val`
    of a run's weights reproduces the run's numbers; an explicit value wins. coco_max_dets:
    COCO's per-image cap when scoring (100 is the COCO protocol; 300 scores every kept box, as
    Ultralytics does). save_dir: where plots (`plots=True`) and `predictions.json` (`save_json=True`,
    COCO results with the dataset's image and category ids) go. preprocess: "detforge" (default) or
    "reference" (Ultralytics' validation input, pixel for pixel: full JPEG decode, sizes rounded up,
    half a stride more padding per rectangular batch; see data/preprocess.py and docs/predict.md). half:
    score the model in half precision, as `predict --half` runs it (see `run_validation`).
    """
    detector = model if isinstance(model, nn.Module) else load_detector(model)
    spec = load_dataset_spec(data)
    if detector.num_classes != spec.nc:
        raise DataError(
            f"{spec.path}: the dataset has {spec.nc} classes but the model predicts {detector.num_classes}; "
            "evaluate on the dataset the model was trained for"
        )
    if list(detector.names) != list(spec.names):
        log.warning("%s: the model's class names differ from the dataset's (model: %s; dataset: %s); "
                    "scores are per class index — check the model was trained on this dataset",
                    spec.path, _preview(detector.names), _preview(spec.names))
    trained = training_settings(detector)
    imgsz = default_imgsz(detector, imgsz)
    conf = trained.get("val_conf", 0.001) if conf is None else conf
    iou = trained.get("val_iou", 0.7) if iou is None else iou
    max_det = trained.get("max_det", 300) if max_det is None else max_det
    batch = (2 * trained["batch"] if isinstance(trained.get("batch"), int) else 16) if batch is None else batch
    device = select_device(device)
    stride = max_stride(detector)
    loader = build_dataloader(spec, split=split, imgsz=imgsz, batch_size=batch, augment=False, rect=True,
                              workers=workers, shuffle=False, stride=stride, progress=progress,
                              preprocess=preprocess)
    net = detector.to(device)
    with torch.inference_mode():
        result = run_validation(net, loader, spec.names, device, conf, iou, max_det, progress=progress, half=half)
    dataset = loader.dataset
    paths = [dataset.store.path(int(dataset.order[i])) for i in range(len(dataset))]
    image_ids, category_ids = _dataset_ids(spec, split, paths)
    records = [dataclasses.replace(r, image_id=image_ids[r.image_id]) for r in result.records]
    if coco_max_dets != 100:
        result = _rescore(records, spec.names, coco_max_dets)
    else:
        result = dataclasses.replace(result, records=records)
    if save_dir is not None:
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        if plots:
            result.save_plots(save_dir)
        if save_json:
            result.to_coco_results(save_dir / "predictions.json", category_ids)
        (save_dir / "metrics.json").write_text(json.dumps(result.summary(), indent=2))
    return result


def _preview(names, limit: int = 5) -> str:
    shown = ", ".join(map(str, list(names)[:limit]))
    return shown + (f", ... ({len(names)})" if len(names) > limit else "")


def _rescore(records, names, max_dets):
    """Evaluate the same boxes again with another COCO per-image cap."""
    predictions = [{"image_id": r.image_id, "boxes": r.boxes, "scores": r.scores, "classes": r.classes}
                   for r in records]
    truths = [{"image_id": r.image_id, "width": r.width, "height": r.height, "boxes": r.gt_boxes,
               "classes": r.gt_classes} for r in records]
    return evaluate(predictions, truths, names, max_dets=max_dets)


def _dataset_ids(spec, split: str, paths: list[str]) -> tuple[list, list[int] | None]:
    """Per loader position the dataset's image id, and per class its category id.

    A COCO dataset keeps its json's ids; otherwise an image's id is its file stem (an int when it
    is numeric) and class c is category c + 1.
    """
    if spec.format == "coco":
        (json_path,) = spec.require_split(split)
        data = json.loads(Path(json_path).read_text(encoding="utf-8"))
        by_name = {Path(im["file_name"]).name: im["id"] for im in data["images"]}
        categories = sorted(int(c["id"]) for c in data["categories"])
        return [by_name.get(Path(p).name, Path(p).stem) for p in paths], categories
    stems = [Path(p).stem for p in paths]
    return [int(s) if s.isnumeric() else s for s in stems], None


def __getattr__(name: str):
    """`validate` was this function's old name (it clashed with `detforge.data.validate.check_labels`);
    kept for a while."""
    if name == "validate":
        import warnings

        warnings.warn("detforge.engine.validate.validate is now run_validation", DeprecationWarning, stacklevel=2)
        return run_validation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
