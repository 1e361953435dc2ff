"""TorchScript export: the dependency-free format (torch alone loads and runs it).

The deployed model's export graph (`ExportGraph`, the same one ONNX traces) is traced with
`torch.jit.trace` and saved with detforge's metadata as the archive's extra file
`detforge.json`. Load it with `torch.jit.load(path)` anywhere, or `detforge.load(path)` to
get names and the predictor. A TorchScript archive holds a program: load only files you trust.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch

from detforge.export.deploy import check_output, deployed_copy
from detforge.models.detector import max_stride

logger = logging.getLogger(__name__)


def export_torchscript(model, path: str | Path, imgsz: int | tuple[int, int] = 640, batch: int = 1,
                       dynamic: bool = False, half: bool = False, source: str = "model") -> Path:
    """Trace the deployed model at `imgsz` / `batch` and save it to `path`. The traced graph
    takes any batch and size (its anchors are computed from the input shape); `dynamic` only
    records that in the metadata. `half` stores float16 weights (run it on a GPU then)."""
    from detforge.export.onnx import input_size, model_metadata, traceable

    path = Path(path)
    net = deployed_copy(model, source)
    shape = input_size(imgsz, max_stride(net))
    example = torch.rand(batch, 3, *shape)
    check_output(net, example, source)
    graph = traceable(net, example, source)
    if half:
        graph, example = graph.half(), example.half()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, example, check_trace=False)
    meta = model_metadata(net, shape, batch, dynamic, "boxes_scores", {"weights": "float16"} if half else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        torch.jit.save(traced, str(path), _extra_files={"detforge.json": json.dumps(meta)})
    logger.info("exported %s: TorchScript, input %s", path, [batch, 3, *shape])
    return path
