"""`detforge bench`: the latency harness, its table and JSON (tiny sizes: the figures themselves are not tested)."""

from __future__ import annotations

import json

import pytest

import detforge
from detforge.cli import main
from detforge.export.bench import Report, Row, detforge_backends

pytest.importorskip("onnxruntime")


def test_report_ratios_and_table():
    report = Report("m", 64, rows=[Row("a", 1, 10.0, 5, 1.5), Row("b", 1, 5.0, 5, 1.6), Row("c", 1, None, 5, 1.0,
                                                                                           note="not installed")],
                    machine={"cpu": "x"})
    report.add_ratios("a")
    assert [r.ratio for r in report.rows] == [1.0, 0.5, None]
    table = report.table()
    assert "| b | 5.0 | 0.50x | 1.6 |" in table and "not installed" in table and "busy shared machine" in table


def test_bench_command_json(capsys):
    code = main(["bench", "--model", "yolov8n", "--imgsz", "64", "--batch", "1", "--backends", "eager",
                 "onnxruntime", "--repeats", "5", "--warmup", "1", "--threads", "1", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {r["name"]: r for r in out["rows"]}
    assert set(rows) == {"detforge eager", "detforge onnxruntime"}
    assert all(r["ms_per_image"] > 0 and r["repeats"] == 5 and r["load_average"] >= 0 for r in rows.values())
    assert out["machine"]["cores"] >= 1 and "onnxruntime" in out["machine"]


def test_bench_refuses_too_few_repeats(capsys):
    assert main(["bench", "--repeats", "2"]) == 2
    assert "at least 5" in capsys.readouterr().err


def test_fused_half_runs_the_bfloat16_model_or_says_why_not(tmp_path, monkeypatch):
    import numpy as np
    import torch

    model = detforge.create_model("yolov8n", num_classes=3)
    batch = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        (backend,) = detforge_backends(model, 64, 1, tmp_path, ["fused-half"]).values()
        assert backend(batch).dtype == torch.bfloat16
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    (reason,) = detforge_backends(model, 64, 1, tmp_path, ["fused-half"]).values()
    assert reason == "this CPU has no native bfloat16 (predict --half runs float32)"
