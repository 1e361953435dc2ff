"""`detforge ablate`: a 1-epoch 2-variant grid on tiny synthetic data writes the table and plots; a second call
retrains nothing; the grid and axis parsing."""

import json

import pytest

from detforge.cli import main
from detforge.engine import ablation
from detforge.engine.ablation import build_grid, parse_vary
from detforge.engine.callbacks import Callback
from detforge.engine.results import ResultsLog
from detforge.errors import ConfigError


def test_grid_axes_and_changes():
    grid = build_grid(parse_vary(["match=off,on", "head=coupled,decoupled-obj"]), [0, 1])
    assert len(grid) == 8 and grid[0].folder == "match-off_head-coupled_seed0"
    obj_matched = next(v for v in grid if v.values == {"match": "on", "head": "decoupled-obj"} and v.seed == 1)
    assert obj_matched.model_overrides[0].startswith("head=")
    assert "head.match_params=true" in obj_matched.model_overrides
    assert obj_matched.settings == {"loss": {"type": "yolox_obj"}}
    assert build_grid({"lr_mult.cls": ["2"], "aux": ["on"]}, [0])[0].settings == {"lr_mult": {"cls": 2}, "aux": True}
    with pytest.raises(ConfigError, match="given twice"):
        parse_vary(["head=coupled", "head=hybrid"])


def test_ablate_grid_writes_table_and_plots_and_is_resumable(tiny_data, tiny_model, tmp_path, capsys, monkeypatch):
    argv = ["ablate", "--data", str(tiny_data), "--base", str(tiny_model), "--vary", "head=coupled,decoupled",
            "--epochs", "1", "--imgsz", "64", "--batch", "8", "--workers", "0", "--set", "plots=false",
            "--set", "warmup_epochs=0.5", "--set", "probe_every=1", "--project", str(tmp_path), "--name", "grid",
            "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = out["rows"]
    assert [r["variant"] for r in rows] == ["head=coupled", "head=decoupled"]
    for row in rows:
        assert row["params"] > row["head_params"] > 0 and row["gflops"] > 0 and row["latency_ms"] > 0
        assert row["map50_95"] is not None and row["best_epoch"] == 1 and "map50" in row and "recall" in row
    assert "probe_head_shared" in rows[0] and "probe_head_shared" not in rows[1]  # only coupled shares head convs
    grid = tmp_path / "grid"
    for name in ("ablation.md", "ablation.csv", "ablation.json", "map_vs_epoch.png", "map_vs_latency.png"):
        assert (grid / name).is_file(), name
    assert "| head=coupled |" in (grid / "ablation.md").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished variant was retrained")

    monkeypatch.setattr(ablation.Trainer, "train", no_training)
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["map50_95"] for r in again["rows"]] == [r["map50_95"] for r in rows]
    assert all(r["train_min"] > 0 and r["scored_on"] == "val, best epoch" for r in again["rows"])

    assert main([*argv, "--split", "val"]) == 0  # the best weights scored afresh on a split: still no retraining
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert [r["scored_on"] for r in scored] == ["val", "val"]
    assert "mAP50-95 (val)" in (grid / "ablation.md").read_text()


def test_an_interrupted_variant_resumes(tiny_data, tiny_model, tmp_path, monkeypatch):
    settings = {"epochs": 2, "imgsz": 64, "batch": 8, "workers": 0, "plots": False, "warmup_epochs": 0.5,
                "deterministic": True}

    class Kill(Callback):
        def on_checkpoint_saved(self, trainer, epoch, path):
            raise KeyboardInterrupt

    original = ablation.Trainer.build_callbacks

    def killing(self):
        callbacks = original(self)
        callbacks.add(Kill())
        return callbacks

    monkeypatch.setattr(ablation.Trainer, "build_callbacks", killing)
    with pytest.raises(KeyboardInterrupt):
        ablation.ablate(str(tiny_data), str(tiny_model), {"head": ["coupled"]}, [0], settings, str(tmp_path), "g")
    folder = tmp_path / "g" / "head-coupled_seed0"
    assert not (folder / "summary.json").exists() and (folder / "weights" / "last_state.safetensors").exists()
    monkeypatch.setattr(ablation.Trainer, "build_callbacks", original)
    result = ablation.ablate(str(tiny_data), str(tiny_model), {"head": ["coupled"]}, [0], settings, str(tmp_path), "g")
    assert [r["epoch"] for r in ResultsLog(folder / "results.csv").rows()] == [1, 2]  # resumed, not redone
    assert result.runs[0]["epochs"] == 2
