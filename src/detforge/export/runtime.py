"""Exported detectors run by another engine, shaped like a `Detector` for the predictor and `val`.

A `RuntimeModel` is an `nn.Module` whose forward takes `images [B, 3, H, W]` (float, 0..1) and
returns `[B, N, 4 + C]` like a detector in eval mode, and which carries `names`, `strides`,
`num_classes`; `fuse()` / `deploy()` do nothing (the file is already deployed). So the
`Predictor`, its pre/post-processing, `Results` and `detforge val` run it unchanged.

What it adds for the engine: a file exported with a fixed shape gets every batch cut into
chunks of its batch size and padded (bottom/right, grey 114 like the letterbox) to its input
size — boxes keep their coordinates; and a file with in-graph NMS (`[B, max_det, 6]`) is turned
back into one-hot score rows, on which the predictor's NMS keeps every detection as it is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detforge.errors import ExportError

logger = logging.getLogger(__name__)

PAD_VALUE = 114 / 255
MAX_NAMES = 100_000


class RuntimeModel(nn.Module):
    """Base class: subclasses open the file and implement `run(array) -> array`."""

    backend = "runtime"

    def __init__(self, path: str | Path, metadata: dict[str, str]):
        super().__init__()
        self.path = Path(path)
        self.metadata = dict(metadata)
        source = str(path)
        try:
            names = json.loads(metadata["names"])
            strides = [int(s) for s in json.loads(metadata["strides"])]
            imgsz = [int(s) for s in json.loads(metadata["imgsz"])]
            batch = int(metadata.get("batch", "1"))
            dynamic = bool(json.loads(metadata.get("dynamic", "false")))
        except (KeyError, ValueError, TypeError) as err:
            raise ExportError(f"{source}: missing or corrupt detforge metadata ({err}); re-export the model "
                              "with `detforge export`") from None
        if (not isinstance(names, list) or not 0 < len(names) <= MAX_NAMES
                or not all(isinstance(n, str) and len(n) <= 256 for n in names)
                or not strides or len(imgsz) != 2 or batch < 1):
            raise ExportError(f"{source}: implausible detforge metadata (names/strides/imgsz/batch); re-export it")
        self.names = names
        self.strides = strides
        self.num_classes = len(names)
        self.imgsz = tuple(imgsz)
        self.batch = batch
        self.dynamic = dynamic
        self.nms = metadata.get("output") == "nms"
        self.config = None
        self.aux = None
        # predict / val default their imgsz to the model's (detforge.models.provenance): the exported size
        self.meta = {"source": source, "train": {"imgsz": max(self.imgsz)}}
        # A parameter gives the module a device and dtype, as code reading next(model.parameters()) expects.
        self.probe = nn.Parameter(torch.zeros(()), requires_grad=False)

    def __deepcopy__(self, memo) -> RuntimeModel:
        return self  # the engine's compiled model is read-only and shared; nothing to copy

    def fuse(self) -> RuntimeModel:
        return self

    def deploy(self, target: str = "torch", device=None, dtype=None) -> RuntimeModel:
        self._check_device(device, dtype)
        return self

    def _check_device(self, device, dtype) -> None:
        if device is not None and torch.device(device).type != "cpu":
            raise ExportError(f"{self.path}: the {self.backend} backend runs on the CPU here; use --device cpu")
        if dtype is not None and dtype != torch.float32:
            raise ExportError(f"{self.path}: the {self.backend} backend takes float32 images; drop --half "
                              "(export with --half to store float16 weights)")

    def run(self, images: np.ndarray) -> np.ndarray:
        """`[b, 3, h, w]` float32 → the file's output for that batch."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, 3, H, W]` float in 0..1 → `[B, N, 4 + C]` xyxy input pixels + class scores (CPU float32)."""
        images = x.detach().to("cpu", torch.float32).contiguous().numpy()
        if not self.dynamic:
            images = self._pad_to_input(images)
        step = len(images) if self.dynamic else self.batch
        outputs = []
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            count = len(chunk)
            if count < step:
                chunk = np.concatenate((chunk, np.zeros((step - count, *chunk.shape[1:]), chunk.dtype)))
            outputs.append(np.asarray(self.run(np.ascontiguousarray(chunk)), dtype=np.float32)[:count])
        out = torch.from_numpy(np.concatenate(outputs))
        return self._nms_rows_to_scores(out) if self.nms else out

    def _pad_to_input(self, images: np.ndarray) -> np.ndarray:
        height, width = self.imgsz
        h, w = images.shape[-2:]
        if h == height and w == width:
            return images
        if h > height or w > width:
            raise ExportError(
                f"{self.path} takes {height}x{width} images but got {h}x{w}; predict with --imgsz "
                f"{max(height, width)} or export with --dynamic"
            )
        padded = np.full((*images.shape[:2], height, width), PAD_VALUE, dtype=images.dtype)
        padded[..., :h, :w] = images
        return padded

    def _nms_rows_to_scores(self, rows: torch.Tensor) -> torch.Tensor:
        """`[B, K, 6]` (box, score, class) → `[B, K, 4 + C]` with the score in its class column."""
        scores = torch.zeros(*rows.shape[:2], self.num_classes, dtype=rows.dtype)
        classes = rows[..., 5:6].long().clamp(0, self.num_classes - 1)
        scores.scatter_(2, classes, rows[..., 4:5])
        return torch.cat((rows[..., :4], scores), dim=2)

    def extra_repr(self) -> str:
        return f"{self.backend}: {self.path.name}, input {list(self.imgsz)}, batch {self.batch}, dynamic={self.dynamic}"


class OnnxRuntimeModel(RuntimeModel):
    """An ONNX file run by onnxruntime on the CPU (all graph optimizations on)."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None):
        from detforge.export.formats import read_onnx_checked

        proto = read_onnx_checked(path)
        super().__init__(path, {p.key: p.value for p in proto.metadata_props})
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError("onnxruntime is not installed; pip install 'detforge[export]'") from None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.input_type = np.float16 if "float16" in self.session.get_inputs()[0].type else np.float32

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: images.astype(self.input_type, copy=False)})[0]


class OpenVinoModel(RuntimeModel):
    """An OpenVINO IR (`.xml` + `.bin`) compiled for the CPU plugin, latency hint."""

    backend = "openvino"

    def __init__(self, path: str | Path, hint: str = "LATENCY"):
        try:
            import openvino as ov
        except ImportError:
            raise ExportError("openvino is not installed; pip install openvino") from None
        from detforge.export.formats import openvino_paths

        xml, _ = openvino_paths(path)
        core = ov.Core()
        model = core.read_model(str(xml))
        info = model.get_rt_info()
        section = info["detforge"] if "detforge" in list(info.keys()) else {}
        meta = {str(k): model.get_rt_info(["detforge", str(k)]).astype(str) for k in dict(section)}
        super().__init__(xml, meta)
        self.compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": hint})
        self.request = self.compiled.create_infer_request()

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.request.infer([images])[self.compiled.output(0)].copy()


class TorchScriptModel(RuntimeModel):
    """A TorchScript file (`torch.jit.save`): needs torch only. Only load files you trust: the
    archive holds a program that torch runs."""

    backend = "torchscript"

    def __init__(self, path: str | Path):
        import warnings

        extra = {"detforge.json": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        try:
            meta = json.loads(extra["detforge.json"] or "{}")
        except json.JSONDecodeError:
            meta = {}
        super().__init__(path, meta)
        self.module = module.eval()

    def run(self, images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.from_numpy(images)).numpy()
