"""The packaged YOLOv8 family reproduces the reference architecture."""

import pytest
import torch

import detforge

# Reference: Ultralytics YOLOv8 detection models, 80 classes: parameter counts, and GFLOPs at 640
# as its counter reports them for the fused models today (its older docs round l to 165.2).
REFERENCE = {
    "n": (3_157_200, 8.7439872),
    "s": (11_166_560, 28.602624),
    "m": (25_902_640, 78.9367296),
    "l": (43_691_520, 165.1485184),
    "x": (68_229_648, 257.8043392),
}


@pytest.mark.parametrize("scale", list(REFERENCE))
def test_param_count_and_flops_match_reference(scale):
    model = detforge.create_model(f"yolov8{scale}")
    params, gflops = REFERENCE[scale]
    assert sum(p.numel() for p in model.parameters()) == params
    # conv FLOPs scale exactly with the number of output pixels, so 64 px × 100 = 640 px
    assert model.info(64).gflops * 100 == pytest.approx(gflops, rel=1e-9)


def test_flops_agree_with_ultralytics_counter():
    tasks = pytest.importorskip("ultralytics.nn.tasks")
    torch_utils = pytest.importorskip("ultralytics.utils.torch_utils")
    reference = tasks.DetectionModel("yolov8n.yaml", verbose=False).fuse(verbose=False)
    ours = detforge.create_model("yolov8n").info(640).gflops
    assert ours == pytest.approx(torch_utils.get_flops(reference, 640), rel=1e-9)


def test_output_shapes_train_and_eval():
    model = detforge.create_model("yolov8n", num_classes=3)
    x = torch.rand(2, 3, 128, 96)
    raw = model.train()(x)
    n = (16 * 12) + (8 * 6) + (4 * 3)
    assert raw.box.shape == (2, n, 64) and raw.cls.shape == (2, n, 3) and raw.obj is None
    assert raw.anchor_points.shape == (n, 2) and raw.strides.tolist()[:1] == [8.0]
    out = model.eval()(x)
    assert out.shape == (2, n, 4 + 3)
    assert (out[..., 4:] >= 0).all() and (out[..., 4:] <= 1).all()
    assert (out[..., 2] >= out[..., 0]).all() and (out[..., 3] >= out[..., 1]).all()


def test_p2_variant_adds_a_stride_4_level():
    model = detforge.create_model("yolov8n-p2", num_classes=2)
    assert model.strides == [4, 8, 16, 32]
    out = model.eval()(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2, 6)


def test_packaged_names_all_build():
    from detforge.config import packaged_model_names

    names = packaged_model_names()
    assert {"yolov8n", "yolov8x", "yolov8s-p2", "yolov8n-coupled", "yolov8m-hybrid", "yolov8l-obj"} <= set(names)
    for name in [n for n in names if n.startswith("yolov8n")]:
        assert detforge.create_model(name, num_classes=4).eval()(torch.rand(1, 3, 64, 64)).shape[-1] == 8
