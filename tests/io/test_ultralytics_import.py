"""Import parity against the `ultralytics` package (dev-only reference, never used by src/).

Builds its YOLOv8n from the YAML with seeded random weights, saves it exactly as its trainer
does (EMA copy in fp16 plus optimizer state, args and metadata), converts it with detforge and
compares raw head outputs and decoded boxes on the same input.
"""

from __future__ import annotations

import datetime
from copy import deepcopy

import numpy as np
import pytest
import torch
from safetensors import safe_open

import detforge
from detforge.cli import main as cli_main
from detforge.errors import WeightsError
from detforge.io.convert import convert, import_checkpoint
from detforge.io.ultralytics_map import map_key, training_sizes
from detforge.models.provenance import default_imgsz, read_training_settings, training_settings

ultralytics = pytest.importorskip("ultralytics")
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.torch_utils import ModelEMA, convert_optimizer_state_dict_to_fp16

NAMES = {i: f"thing{i}" for i in range(80)}


def randomized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random conv weights and BatchNorm affine + running statistics, so that any mis-mapped
    key changes the outputs; the fixed DFL projection (not trainable) is left alone."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d) and module.weight.requires_grad:
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * fan_in**-0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.5)
            elif isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
    return model


def trainer_checkpoint(model: DetectionModel) -> dict:
    """The dict Ultralytics' trainer (`BaseTrainer.save_model`) writes: EMA deep copy in fp16."""
    model.args = get_cfg()
    model.names = NAMES
    ema = ModelEMA(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # creates momentum buffers, leaves the (zero-gradient) weights unchanged
    ema_copy = deepcopy(ema.ema).half()
    ema_copy.criterion = None
    return {
        "epoch": 4,
        "best_fitness": np.float64(0.25),
        "stopper": {"best_fitness": np.float64(0.25), "best_epoch": 3},
        "model": None,
        "ema": ema_copy,
        "updates": ema.updates,
        "optimizer": convert_optimizer_state_dict_to_fp16(deepcopy(optimizer.state_dict())),
        "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict(),
        "train_args": vars(get_cfg()),
        "train_metrics": {"metrics/mAP50(B)": 0.5, "fitness": np.float64(0.25)},
        "train_results": {"epoch": [1.0, 2.0], "train/box_loss": [1.5, 1.2]},
        "date": datetime.datetime.now().astimezone().isoformat(),
        "version": ultralytics.__version__,
        "git": {"root": None, "branch": None, "commit": None, "message": None, "origin": None},
        "license": "AGPL-3.0 (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(path of the trainer-style .pt, reference model: the EMA half → float, eval mode)."""
    torch.manual_seed(0)
    model = randomized(DetectionModel("yolov8n.yaml", nc=80, verbose=False), seed=1)
    path = tmp_path_factory.mktemp("ultralytics") / "last.pt"
    torch.save(trainer_checkpoint(model), path)
    ref = torch.load(path, weights_only=False)["ema"].float().eval()
    return path, ref


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat((boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2), dim=-1)


def test_import_matches_reference_outputs(reference):
    path, ref = reference
    model = import_checkpoint(path)
    assert model.config.name == "yolov8n" and model.num_classes == 80
    assert model.names == [NAMES[i] for i in range(80)]
    assert all(p.dtype == torch.float32 for p in model.parameters())

    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref_decoded, ref_raw = ref(x)  # ([B, 4 + C, N] xywh + scores, {"boxes", "scores", ...})
        raw = model.raw(x)
        decoded = model(x)

    # Raw head outputs, all three levels (16², 8², 4² anchors), box DFL logits and class logits.
    assert raw.box.shape == (1, 336, 64) and raw.cls.shape == (1, 336, 80) and raw.obj is None
    assert (raw.box - ref_raw["boxes"].transpose(1, 2)).abs().max() <= 1e-4
    assert (raw.cls - ref_raw["scores"].transpose(1, 2)).abs().max() <= 1e-4
    assert ref_raw["scores"].std() > 0.1  # the comparison is not between near-constant maps

    # Decoded: detforge gives xyxy pixels + sigmoid scores; the reference gives xywh.
    ref_decoded = ref_decoded.transpose(1, 2)
    torch.testing.assert_close(decoded[..., :4], xywh_to_xyxy(ref_decoded[..., :4]), atol=1e-4, rtol=1e-6)
    assert (decoded[..., 4:] - ref_decoded[..., 4:]).abs().max() <= 1e-4


def test_detforge_load_reads_the_checkpoint_directly(reference):
    path, _ = reference
    assert detforge.load(path).state_dict().keys() == import_checkpoint(path).state_dict().keys()


def test_convert_writes_loadable_safetensors(reference, tmp_path):
    path, ref = reference
    dst = tmp_path / "yolov8n.safetensors"
    converted = convert(path, dst)
    loaded = detforge.load(dst)
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), converted.state_dict().values())
    )
    with safe_open(str(dst), framework="pt") as fh:
        assert fh.metadata()["converted_from"] == "last.pt"
    assert loaded.names[:2] == ["thing0", "thing1"]
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ref_raw = ref(x)[1]
        assert (loaded.raw(x).cls - ref_raw["scores"].transpose(1, 2)).abs().max() <= 1e-4


def test_cli_convert_end_to_end(reference, tmp_path, capsys):
    path, _ = reference
    dst = tmp_path / "out" / "model.safetensors"
    assert cli_main(["convert", str(path), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "yolov8n" in out and "80" in out and "3,157,200" in out and str(dst) in out
    assert detforge.load(dst).num_classes == 80

    assert cli_main(["convert", str(tmp_path / "missing.pt"), str(dst)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "missing.pt: no such file" in err and "\n" not in err


def test_released_style_checkpoint_uses_model_entry(tmp_path):
    """`strip_optimizer` output (what released .pt files look like): model in fp16, ema None."""
    model = randomized(DetectionModel("yolov8n.yaml", nc=3, verbose=False), seed=3).eval()
    model.names = {0: "cat", 1: "dog", 2: "bird"}
    path = tmp_path / "best.pt"
    torch.save({"model": deepcopy(model).half(), "ema": None, "optimizer": None, "epoch": -1}, path)
    imported = import_checkpoint(path)
    assert imported.names == ["cat", "dog", "bird"] and imported.num_classes == 3
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref_raw = model.half().float()(x)[1]
        assert (imported.raw(x).box - ref_raw["boxes"].transpose(1, 2)).abs().max() <= 1e-4


def test_other_architectures_are_refused(tmp_path):
    path = tmp_path / "yolo11n.pt"
    torch.save({"model": DetectionModel("yolo11n.yaml", nc=80, verbose=False).half(), "ema": None}, path)
    with pytest.raises(WeightsError, match="not YOLOv8 detect.*C3k2"):
        import_checkpoint(path)


def test_modified_dfl_is_refused(tmp_path):
    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    with torch.no_grad():
        model.model[-1].dfl.conv.weight.mul_(2)
    path = tmp_path / "dfl.pt"
    torch.save({"model": model, "ema": None}, path)
    with pytest.raises(WeightsError, match="dfl.conv.weight is not the fixed 0..15 projection"):
        import_checkpoint(path)


def test_plain_state_dict_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(DetectionModel("yolov8n.yaml", nc=2, verbose=False).state_dict(), path)
    with pytest.raises(WeightsError, match="not a recognised training checkpoint"):
        import_checkpoint(path)


def test_key_map_examples():
    assert map_key("model.0.conv.weight") == "backbone.stem.conv.weight"
    assert map_key("model.4.m.1.cv2.bn.running_var") == "backbone.stages.1.1.blocks.1.conv2.bn.running_var"
    assert map_key("model.9.cv1.conv.weight") == "backbone.sppf.reduce.conv.weight"
    assert map_key("model.18.cv2.bn.bias") == "neck.bottom_up.0.project.bn.bias"
    assert map_key("model.22.cv3.2.2.bias") == "head.cls_branches.2.2.bias"
    for bad in ("model.10.weight", "model.22.one2one_cv2.0.0.conv.weight", "model.2.m.0.cv3.conv.weight"):
        with pytest.raises(KeyError):
            map_key(bad)


def test_hostile_training_sizes_are_dropped_end_to_end(reference, tmp_path):
    checkpoint = torch.load(reference[0], weights_only=False)
    checkpoint["train_args"].update(imgsz=10**12, batch="16")
    torch.save(checkpoint, tmp_path / "odd.pt")
    convert(tmp_path / "odd.pt", tmp_path / "odd.safetensors")
    assert read_training_settings(tmp_path / "odd.safetensors") == {}
    assert default_imgsz(detforge.load(tmp_path / "odd.safetensors"), None) == 640


def test_the_reference_training_size_is_carried_over(reference, tmp_path):
    """val/export of a converted checkpoint default to the size the reference trained it at, as for ours."""
    checkpoint = torch.load(reference[0], weights_only=False)
    checkpoint["train_args"].update(imgsz=320, batch=8)
    torch.save(checkpoint, tmp_path / "320.pt")
    assert training_settings(import_checkpoint(tmp_path / "320.pt")) == {"imgsz": 320, "batch": 8}
    convert(tmp_path / "320.pt", tmp_path / "320.safetensors")
    assert read_training_settings(tmp_path / "320.safetensors") == {"imgsz": 320, "batch": 8}
    assert default_imgsz(detforge.load(tmp_path / "320.safetensors"), None) == 320


@pytest.mark.parametrize("args", [None, "imgsz=320", {"imgsz": "320"}, {"imgsz": [320, 256]}, {"imgsz": True},
                                  {"imgsz": 10**9, "batch": -1}, {"imgsz": 0.5, "batch": 2**70}])
def test_odd_reference_training_sizes_are_left_out(args):
    assert training_sizes(args) == {}
