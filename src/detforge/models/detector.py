"""`Detector`: backbone → neck → head, plus what belongs to the whole model (fuse, deploy, info)."""

from __future__ import annotations

import torch
from torch import nn

from detforge.errors import SourceError
from detforge.models.deploy import Target, deploy_model, fuse_parts
from detforge.models.heads.base import DetectionHead, HeadOutput


def max_stride(model) -> int:
    """The coarsest output stride of a detector (or an exported runtime): image sides, and the sides of
    rectangular batches, must be multiples of it."""
    return max(int(s) for s in model.strides)


class Detector(nn.Module):
    """A detector assembled from three parts.

    `forward(x)` with `x: [B, 3, H, W]` (RGB, 0..1, H and W multiples of the largest stride)
    returns the head's `HeadOutput` in training mode and `[B, N, 4 + C]` (xyxy pixels + class
    scores) in eval mode. `raw(x)` always returns the `HeadOutput`.
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, head: DetectionHead, config=None,
                 names: list[str] | None = None):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.config = config
        self.names = list(names) if names else [f"class{i}" for i in range(head.num_classes)]
        # Optional auxiliary heads (an nn.Module), used only in training; `deploy()` drops them.
        self.aux: nn.Module | None = None

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def strides(self) -> list[int]:
        return self.head.strides

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.neck(self.backbone(x))

    def raw(self, x: torch.Tensor) -> HeadOutput:
        return self.head.raw(self.features(x))

    def forward(self, x: torch.Tensor) -> HeadOutput | torch.Tensor:
        if not isinstance(x, torch.Tensor):  # model("img.jpg"), model(array): what predict() is for
            raise SourceError(
                f"a Detector called directly takes an image tensor [B, 3, H, W] (RGB, 0..1), not "
                f"{type(x).__name__}; to detect objects in images use model.predict({_short(x)})"
            )
        if not (self.training and self.aux is not None):
            return self.head(self.features(x))
        # Training with auxiliary heads: they read the neck's aux maps (`forward_with_aux`, e.g. the
        # YOLOv7 neck's top-down maps) or, for a neck without them, its outputs; `out.aux` holds theirs.
        features = self.backbone(x)
        split = getattr(self.neck, "forward_with_aux", None)
        neck_out, aux_in = split(features) if split is not None else (self.neck(features), None)
        out = self.head(neck_out)
        out.aux = self.aux(aux_in if aux_in is not None else neck_out)
        return out

    @torch.no_grad()
    def fuse(self) -> Detector:
        """Fold every BatchNorm into its conv (and, for parts that have them, re-parameterize
        branches) for faster inference. Outputs are unchanged up to float rounding."""
        fuse_parts(self)
        return self

    def deploy(self, target: Target = "torch", device: torch.device | str | None = None,
               dtype: torch.dtype | None = None) -> Detector:
        """Make this model its deployed self, in place, and return it: eval, fused, training-only
        parts (`aux`, `remove_training_parts()` hooks) removed, optionally moved to `device`/`dtype`.

        target="torch" (the predictor's) also applies the eager speed-ups: channels-last memory,
        in-place activations and, on CPU float32, oneDNN-packed convs. target="export" keeps the
        model traceable by ONNX / TorchScript / torch.export. Outputs equal the eager model's up
        to float rounding. Copy first (`copy.deepcopy`) if this model must stay trainable.
        """
        return deploy_model(self, target, device=device, dtype=dtype)

    def train(self, mode: bool = True, **settings):
        """`nn.Module.train(mode)`; given training settings — `model.train(data="data.yaml", epochs=10)` —
        trains this model (its architecture and weights) and loads the best weights back into it."""
        if not settings:
            return super().train(mode)
        from detforge.engine.trainer import train_model

        return train_model(self, **settings)

    def val(self, data: str, **settings):
        """COCO metrics of this model on a dataset split; see `detforge.val`."""
        from detforge.engine.validate import val

        return val(self, data, **settings)

    def predict(self, source, **settings):
        """Predict images, folders, globs or videos; see `detforge.Predictor`. With `save_dir=...` the
        results are also saved there as `detforge predict` saves them (`save_txt`, `save_json`, ...)."""
        from detforge.infer.predictor import predict

        return predict(self, source, **settings)

    def export(self, format: str = "onnx", **settings):
        """Export the deployed model (ONNX, OpenVINO IR, TorchScript) and return the file's path;
        see `detforge.export.export` for the settings. This model is left as it is."""
        from detforge.export import export

        return export(self, format, **settings)

    def info(self, imgsz: int = 640):
        """Per-part parameter / FLOP table; see `detforge.models.info.model_info`."""
        from detforge.models.info import model_info

        return model_info(self, imgsz)


def _short(x) -> str:
    text = repr(x) if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__") else "source"
    return text if len(text) <= 60 else "source"
