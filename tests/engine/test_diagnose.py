"""`detforge diagnose` on a saved model: probe numbers, the alignment report and its plot; the report's
statistics against hand-computed cases."""

import json

import numpy as np
import pytest

import detforge
from detforge.cli import main
from detforge.eval.alignment import alignment_report, spearman


def test_spearman_and_report_by_hand():
    assert spearman(np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.6, 0.9])) == pytest.approx(1.0)
    assert spearman(np.array([0.1, 0.2, 0.3]), np.array([0.9, 0.6, 0.5])) == pytest.approx(-1.0)
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.random(50).round(1), rng.random(50)  # ties in a
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
    pairs = {"score": np.array([0.25, 0.64, 0.5, 0.5]), "iou": np.array([0.5, 1.0, 0.2, 0.4]),
             "cls": np.array([0, 0, 1, 1])}
    report = alignment_report(pairs, ["a", "b"], alpha=0.5, beta=2.0)
    assert report.positives == 4 and report.per_class["a"]["positives"] == 2
    assert report.per_class["a"]["spearman"] == pytest.approx(1.0)
    assert report.per_class["b"]["mean_iou"] == pytest.approx(0.3)
    metric = pairs["score"] ** 0.5 * pairs["iou"] ** 2  # 0.125, 0.8, 0.028284, 0.113137
    assert report.metric_quantiles["q50"] == pytest.approx(np.median(metric))


def test_diagnose_runs_on_a_saved_model(settings, tmp_path, capsys):
    result = detforge.train(**{**settings, "epochs": 1, "overrides": ["head.type=hybrid"]})
    argv = ["diagnose", "--weights", str(result.last), "--data", settings["data"], "--batches", "2", "--batch", "2",
            "--project", str(tmp_path / "diag"), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out["probe"]) == {"backbone", "neck", "head_shared"}
    assert all(v["cos"] is None or -1 <= v["cos"] <= 1 for v in out["probe"].values())
    assert out["alignment"]["positives"] > 0 and out["batches"] == 2
    assert (tmp_path / "diag" / "exp" / "alignment.png").is_file()
    assert (tmp_path / "diag" / "exp" / "diagnose.json").is_file()
    assert main(argv[:-1]) == 0  # the table form
    assert "Spearman" in capsys.readouterr().out
