"""results.csv / results.png carry what users look for: validation losses and learning rates."""

import math

from detforge.engine.results import ResultsLog, results_panels
from detforge.engine.train_config import make_train_config
from detforge.engine.trainer import Trainer


def test_panels_show_validation_losses_and_learning_rates():
    columns = ["epoch", "train/box", "train/cls", "metrics/mAP50", "val/box", "val/cls", "lr/0", "lr/1",
               "images_per_s"]
    panels = results_panels(columns)
    titles = [title for title, _ in panels]
    assert titles == ["train/box", "train/cls", "metrics/mAP50", "val/box", "val/cls", "learning rate",
                      "images_per_s"]
    assert panels[-2][1] == ["lr/0", "lr/1"]


def test_training_logs_validation_losses_every_validated_epoch(settings):
    result = Trainer(make_train_config({**settings, "epochs": 2, "val_interval": 2, "plots": True})).train()
    rows = ResultsLog(result.run_dir / "results.csv").rows()
    assert len(rows) == 2
    for name in ("box", "cls", "dfl"):
        assert math.isnan(rows[0][f"val/{name}"])  # epoch 1 was not validated
        assert math.isfinite(rows[1][f"val/{name}"]) and rows[1][f"val/{name}"] > 0
    assert any(key.startswith("lr/") for key in rows[0])
    assert (result.run_dir / "results.png").is_file()


def test_rows_with_other_columns_keep_the_files_columns(tmp_path):
    log = ResultsLog(tmp_path / "results.csv")
    log.append({"epoch": 1, "train/box": 2.0})
    log.append({"epoch": 2, "time": 5.0})  # e.g. a run resumed by a version with other columns
    rows = log.rows()
    assert list(rows[1]) == ["epoch", "train/box"] and rows[1]["epoch"] == 2 and math.isnan(rows[1]["train/box"])
