"""Official YOLOv7 checkpoints → detforge: output parity with the reference, strict key map, and
a malicious checkpoint refused. The reference (GPL, dev-only) is built from its own configs with
seeded random weights and saved the way its trainer saves; nothing of it is copied here."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import sys
from pathlib import Path

import pytest
import torch

from detforge.errors import UnsafeCheckpointError, WeightsError
from detforge.io.convert import convert, import_checkpoint
from detforge.io.weights import load
from detforge.io.yolov7_map import model_from_state

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CFG = SHARED / "reference" / "yolov7" / "cfg"


@pytest.fixture(scope="module")
def reference():
    """The reference's modules (`yolov7.models.{yolo,common,experimental}`), or skip."""
    if not CFG.is_dir():
        pytest.skip(f"YOLOv7 reference configs not found at {CFG} (../shared/reference/yolov7/cfg)")
    yolo = pytest.importorskip("yolov7.models.yolo", reason="official YOLOv7 code (yolov7detect) not installed")
    from yolov7.models import common, experimental

    return yolo, common, experimental


@contextlib.contextmanager
def official_module_names(modules):
    """Pickle the reference's classes under the names the official repository gives them
    (`models.yolo.Model`, `models.common.Conv`, ...), as in the released checkpoints."""
    yolo, common, experimental = modules
    renames = {yolo: "models.yolo", common: "models.common", experimental: "models.experimental"}
    saved_modules = {k: sys.modules.get(k) for k in ("models", *renames.values())}
    saved_names = {}
    sys.modules["models"] = sys.modules["yolov7.models"]
    for module, short in renames.items():
        sys.modules[short] = module
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__:
                saved_names[value] = value.__module__
                value.__module__ = short
    try:
        yield
    finally:
        for cls, name in saved_names.items():
            cls.__module__ = name
        for key, value in saved_modules.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


def build_reference(modules, name: str, layout: str = "training", num_classes: int = 80):
    """The reference model from its config with seeded random weights, BN statistics and implicit vectors."""
    torch.manual_seed(0)
    logging.disable(logging.INFO)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = modules[0].Model(str(CFG / layout / f"{name}.yaml"), ch=3, nc=num_classes)
    finally:
        logging.disable(logging.NOTSET)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=g) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=g) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=g) * 0.1)
        for key, param in model.named_parameters():
            if key.endswith("implicit"):
                param.add_(torch.randn(param.shape, generator=g) * 0.1)
    model.names = [f"thing{i}" for i in range(num_classes)]
    return model.eval()


def save_like_trainer(modules, model, path: Path, stripped: bool = False, hyp: dict | None = None) -> Path:
    """`torch.save` of the dict the reference trainer writes (fp16 copies of model and EMA);
    `stripped` as its strip_optimizer leaves released files (EMA moved into 'model')."""
    half = copy.deepcopy(model).half()
    checkpoint = {"epoch": -1 if stripped else 3, "best_fitness": None, "training_results": None,
                  "model": half, "ema": None if stripped else copy.deepcopy(half), "updates": None if stripped else 40,
                  "optimizer": None, "wandb_id": None}
    if hyp is not None:  # set after copying: deepcopy would run a payload's __reduce__
        half.hyp = hyp
    with official_module_names(modules):
        torch.save(checkpoint, path)
    return path


def assert_parity(modules, model, ours, size: int) -> None:
    """Raw maps equal (max |Δ| ≤ 1e-3) and decoded boxes equal, on the fp16-rounded weights."""
    reference = copy.deepcopy(model).half().float().eval()
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        decoded_ref, maps_ref = reference(x)[:2]
        raw = ours.raw(x)
        decoded = ours(x)
    assert len(raw.maps) == len(maps_ref)
    for a, b in zip(raw.maps, maps_ref):
        assert a.shape == b.shape and (a - b).abs().max() <= 1e-3
    xy, wh = decoded_ref[..., :2], decoded_ref[..., 2:4]
    boxes_ref = torch.cat((xy - wh / 2, xy + wh / 2), -1)
    assert (decoded[..., :4] - boxes_ref).abs().max() <= 1e-2  # pixels
    assert (decoded[..., 4:] - decoded_ref[..., 5:] * decoded_ref[..., 4:5]).abs().max() <= 1e-4


@pytest.mark.parametrize("name", ["yolov7-tiny", "yolov7"])
def test_training_checkpoint_converts_with_output_parity(reference, tmp_path, name):
    model = build_reference(reference, name)
    ckpt = save_like_trainer(reference, model, tmp_path / f"{name}.pt", stripped=name != "yolov7-tiny")
    out = convert(ckpt, tmp_path / f"{name}.safetensors")
    assert out.config.name == name and out.names[:2] == ["thing0", "thing1"]
    ours = load(tmp_path / f"{name}.safetensors").eval()
    assert_parity(reference, model, ours, 64)
    # the deployed (fused, implicit folded) model still matches
    assert_parity(reference, model, copy.deepcopy(ours).deploy(target="export"), 64)


def test_deploy_layout_checkpoint(reference, tmp_path):
    model = build_reference(reference, "yolov7-tiny", "deploy", num_classes=3)
    ours = import_checkpoint(save_like_trainer(reference, model, tmp_path / "tiny-deploy.pt", stripped=True))
    assert ours.head.implicit_a is None and ours.num_classes == 3
    assert_parity(reference, model, ours, 64)


@pytest.mark.slow
def test_p6_checkpoint_with_aux_head(reference, tmp_path):
    model = build_reference(reference, "yolov7-w6", num_classes=2)
    ours = import_checkpoint(save_like_trainer(reference, model, tmp_path / "w6.pt", stripped=True))
    assert ours.aux is not None and len(ours.aux.preds) == 4
    assert_parity(reference, model, ours, 128)
    # the aux maps equal the reference's training-mode aux outputs
    x = torch.rand(1, 3, 128, 128)
    reference_half = copy.deepcopy(model).half().float()
    for m in (reference_half, ours):
        m.train()
        for bn in (b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)):
            bn.eval()
    with torch.no_grad():
        ref_maps = reference_half(x)
        aux = ours(x).aux.maps
    for a, b in zip(aux, ref_maps[4:]):
        assert (a - b).abs().max() <= 1e-3


def test_modified_checkpoint_is_refused(reference, tmp_path):
    model = build_reference(reference, "yolov7-tiny", num_classes=2)
    with torch.no_grad():
        model.model[2].conv.weight = torch.nn.Parameter(torch.zeros(8, 64, 1, 1))
    with pytest.raises(WeightsError, match=r"model\.2\.conv\.weight has shape \(8, 64, 1, 1\)"):
        import_checkpoint(save_like_trainer(reference, model, tmp_path / "bad.pt"))


class Payload:
    """Unpickling this runs a shell command — what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_checkpoint_is_refused_before_anything_runs(reference, tmp_path):
    model = build_reference(reference, "yolov7-tiny", num_classes=2)
    marker = tmp_path / "pwned"
    evil = save_like_trainer(reference, model, tmp_path / "evil.pt", hyp={"lr0": 0.01, "callback": Payload(marker)})
    with pytest.raises(UnsafeCheckpointError, match="refused to unpickle"):
        convert(evil, tmp_path / "evil.safetensors")
    assert not marker.exists() and not (tmp_path / "evil.safetensors").exists()


P6 = ("yolov7-w6", "yolov7-e6", "yolov7-d6", "yolov7-e6e")


@pytest.mark.parametrize("layout", ["training", "deploy"])
@pytest.mark.parametrize("name", [
    "yolov7-tiny", "yolov7", "yolov7x", *(pytest.param(n, marks=pytest.mark.slow) for n in P6)])
def test_every_model_and_layout_maps_strictly(reference, name, layout):
    """The key map places every tensor of each reference model (shapes checked, all of ours filled)."""
    model = build_reference(reference, name, layout, num_classes=3).half().float()  # as a checkpoint holds it
    ours = model_from_state(model.state_dict(), f"{name}-{layout}", "leaky_relu" if "tiny" in name else "silu")
    assert ours.config.name == name and ours.num_classes == 3
    assert (ours.aux is not None) == (layout == "training" and name in P6)
    assert (ours.head.implicit_a is not None) == (layout == "training")
    if name == "yolov7-e6e":  # E-ELAN groups are sliced out of the reference's parallel ELANs
        assert_parity(reference, model, ours, 128)


def test_predictor_reads_official_checkpoint(reference, tmp_path):
    import numpy as np

    from detforge.infer.predictor import Predictor

    model = build_reference(reference, "yolov7-tiny", num_classes=2)
    ckpt = save_like_trainer(reference, model, tmp_path / "tiny.pt", stripped=True)
    predictor = Predictor(str(ckpt), imgsz=64, conf=1e-9)
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    result = predictor(image)[0]
    assert predictor.names == ["thing0", "thing1"] and len(result.boxes) > 0
