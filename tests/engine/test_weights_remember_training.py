"""Weights remember how they were trained: `val`, `predict`, `model.predict` and `model.train` default to
the training image size (an explicit value wins), and a run's config.json says where its weights came from."""

import json

import pytest

import detforge
from detforge.cli import main
from detforge.engine import validate as validate_module
from detforge.engine.train_config import make_train_config
from detforge.engine.trainer import Trainer
from detforge.infer.predictor import Predictor
from detforge.io.weights import read_weights


@pytest.fixture(scope="module")
def trained_96(tiny_data, tiny_model, tmp_path_factory):
    """A tiny model trained 2 epochs at 96 px (the default would be 640)."""
    settings = {"model": str(tiny_model), "data": str(tiny_data), "epochs": 2, "imgsz": 96, "batch": 8,
                "workers": 0, "project": str(tmp_path_factory.mktemp("runs")), "name": "t96", "plots": False,
                "deterministic": True, "seed": 0, "warmup_epochs": 0.5}
    return Trainer(make_train_config(settings)).train()


@pytest.fixture
def loader_sizes(monkeypatch):
    sizes = []
    original = validate_module.build_dataloader

    def spy(*args, **kwargs):
        assert kwargs["batch_size"] == 16  # the run's validation batch: 2 x its training batch of 8
        sizes.append(kwargs["imgsz"])
        return original(*args, **kwargs)

    monkeypatch.setattr(validate_module, "build_dataloader", spy)
    return sizes


def test_weights_store_training_settings_and_load_exposes_them(trained_96):
    stored = json.loads(read_weights(trained_96.best)[1]["train"])
    assert stored["imgsz"] == 96 and stored["epochs"] == 2 and stored["data"]
    model = detforge.load(trained_96.best)
    assert model.meta["train"]["imgsz"] == 96 and model.meta["source"] == str(trained_96.best)


def test_val_without_imgsz_reproduces_the_training_runs_final_metrics(trained_96, tiny_data, loader_sizes, capsys):
    result = detforge.val(str(trained_96.best), str(tiny_data), workers=0, progress=False)
    assert loader_sizes == [96]
    summary = result.summary()
    for key in ("mAP50-95", "mAP50", "precision", "recall"):
        assert summary[key] == pytest.approx(trained_96.metrics[key], abs=1e-9), key

    assert main(["val", "--weights", str(trained_96.best), "--data", str(tiny_data), "--workers", "0", "--json",
                 "--no-plots", "--project", str(trained_96.run_dir / "val")]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert loader_sizes == [96, 96] and cli["mAP50-95"] == pytest.approx(trained_96.metrics["mAP50-95"], abs=1e-9)

    detforge.val(str(trained_96.best), str(tiny_data), imgsz=64, workers=0, progress=False)
    assert loader_sizes[-1] == 64  # an explicit size wins


def test_predict_defaults_to_the_training_size(trained_96):
    model = detforge.load(trained_96.best)
    assert Predictor(model).imgsz == 96 and Predictor(str(trained_96.best)).imgsz == 96
    assert Predictor(model, imgsz=64).imgsz == 64
    assert Predictor(detforge.create_model("yolov8n")).imgsz == 640  # nothing stored: the usual default


def test_model_train_continues_at_the_stored_size_and_config_json_names_the_weights(trained_96, tmp_path):
    model = detforge.load(trained_96.best)
    result = model.train(epochs=1, batch=8, workers=0, project=str(tmp_path), name="again", plots=False)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["train"]["imgsz"] == 96 and config["train"]["data"] == model.meta["train"]["data"]
    assert config["initial_weights"].startswith(str(trained_96.best))
    assert model.meta["source"] == str(result.best)  # the model now carries the new run's weights

    fresh = detforge.build_model(model.config)
    result = fresh.train(data=config["train"]["data"], epochs=1, imgsz=64, batch=8, workers=0,
                         project=str(tmp_path), name="fresh", plots=False)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert "in-memory model" in config["initial_weights"] and config["train"]["imgsz"] == 64
