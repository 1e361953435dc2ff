"""bench/train_throughput.py's rows on fake measurements: each thread setting gets its own rows, keyed
by the thread counts that actually ran (Ultralytics picks its own count when none is imposed)."""

from __future__ import annotations


def fake(images_per_s: float, threads: int) -> dict:
    return {"images_per_s": images_per_s, "peak_rss_mb": 1000.0, "threads": threads}


def test_rows_are_keyed_by_the_threads_each_side_trained_with(bench_script):
    module = bench_script("train_throughput")
    section = module.new_section("train", "Training", "cmd", "setup", ["torch threads", "imgsz", "detforge precision"],
                                 {"img/s": True, "peak RSS MB": False})
    results = {
        (2, 320): {"detforge": [fake(16.0, 2)], "detforge-bf16": [], "ultralytics": [fake(14.0, 2)]},
        (0, 320): {"detforge": [fake(16.0, 2), fake(9.0, 1)], "detforge-bf16": [fake(40.0, 2)],
                   "ultralytics": [fake(8.0, 1)]},
    }
    module.add_rows(section, results)
    keys = [row["key"] for row in section["rows"]]
    assert keys == [
        {"torch threads": "2 on both", "imgsz": 320, "detforge precision": "float32"},
        {"torch threads": "each its own: 1/2 vs 1", "imgsz": 320, "detforge precision": "float32"},
        {"torch threads": "each its own: 2 vs 1", "imgsz": 320, "detforge precision": "bf16 autocast (default)"},
    ]
    assert section["rows"][0]["samples"]["img/s"] == {"detforge": [16.0], "reference": [14.0]}
    # the bf16 row is measured against the same float32 reference runs
    assert section["rows"][2]["samples"]["img/s"] == {"detforge": [40.0], "reference": [8.0]}
