"""bench/accuracy_race.py keeps each finished run and reuses it for the same recipe (a race of several
hours spans sittings); trainings are faked, the bookkeeping is real."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import yaml


@pytest.fixture()
def race(bench_script, monkeypatch):
    module = bench_script("accuracy_race")
    trained = []

    def fake_train(framework, args, name, data, seed, tmp):
        trained.append((name, seed, framework))
        mine = framework.startswith("detforge")
        finished = f"2026-12-0{4 if framework != 'detforge-bf16' else 5} 1{seed}:00 UTC"
        return {"recipe": module.recipe(args, name), "commit": f"abc{seed}", "finished": finished,
                "load_start": 0.1 + seed, "others_share": 0.01 * seed, "framework": framework,
                "threads": 2 if mine else 1,
                "figures": [0.40 + 0.01 * seed if mine else 0.38, 0.6, 0.41, 300.0 if mine else 600.0, 27.0, 2000.0]}

    monkeypatch.setattr(module, "train_and_score", fake_train)
    monkeypatch.setattr(module, "private_copy", lambda source, destination: destination)
    module.trained = trained
    return module


def arguments(runs: Path | None, epochs: int = 40, seeds: tuple[int, ...] = (0, 1),
              bf16: bool = False) -> argparse.Namespace:
    return argparse.Namespace(datasets_root=Path("unused"), seeds=list(seeds), epochs=epochs, imgsz=320, batch=16,
                              workers=2, threads=2, runs=runs, bf16=bf16)


METRICS = ("mAP50-95", "mAP50", "mAP50-95 COCOeval", "wall s", "img/s", "rss")  # the order of a run's figures


def section(race) -> dict:
    return race.new_section("accuracy", "Accuracy race", "cmd", "setup", ["dataset", "detforge precision"],
                            dict.fromkeys(METRICS, True), summary="mean_std")


def test_finished_runs_are_kept_and_reused_for_the_same_recipe(race, tmp_path: Path) -> None:
    first = section(race)
    race.race(arguments(tmp_path / "runs"), "bccd", tmp_path, first)
    # both frameworks per seed, the order alternating so neither always trains on a warmer machine
    assert race.trained == [("bccd", 0, "detforge"), ("bccd", 0, "ultralytics"),
                            ("bccd", 1, "ultralytics"), ("bccd", 1, "detforge")]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "bccd-seed0-detforge.json", "bccd-seed0-ultralytics.json", "bccd-seed1-detforge.json",
        "bccd-seed1-ultralytics.json"]
    race.trained.clear()
    second = section(race)
    runs = race.race(arguments(tmp_path / "runs", seeds=(0, 1, 2)), "bccd", tmp_path, second)
    assert race.trained == [("bccd", 2, "detforge"), ("bccd", 2, "ultralytics")]  # only the new seed trains
    row = second["rows"][0]
    assert row["key"] == {"dataset": "bccd (test)", "detforge precision": "float32"}
    assert len(second["rows"]) == 1  # no bf16 arm unless asked for
    assert row["samples"]["mAP50-95"]["detforge"] == pytest.approx([40.0, 41.0, 42.0])  # mAP in points
    assert row["samples"]["mAP50-95"]["reference"] == pytest.approx([38.0] * 3)
    assert row["samples"]["wall s"] == {"detforge": [300.0] * 3, "reference": [600.0] * 3}
    race.record_conditions(second, runs)  # the worst conditions any run had, and where the runs came from
    assert second["load_start"] == pytest.approx(2.1) and second["others_share"] == pytest.approx(0.02)
    assert second["notes"] == ("Runs from commit abc0, abc1, abc2; torch threads in training: detforge 2, reference 1; "
                               "finished: detforge 2026-12-04 10:00 UTC to 2026-12-04 12:00 UTC, "
                               "reference 2026-12-04 10:00 UTC to 2026-12-04 12:00 UTC.")


def test_a_changed_recipe_or_a_damaged_file_trains_again(race, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    race.race(arguments(runs, seeds=(0,)), "bccd", tmp_path, section(race))
    (runs / "bccd-seed0-detforge.json").write_text('{"recipe": {"epochs": 4')  # cut short
    race.trained.clear()
    race.race(arguments(runs, seeds=(0,)), "bccd", tmp_path, section(race))
    assert race.trained == [("bccd", 0, "detforge")]
    race.trained.clear()
    race.race(arguments(runs, epochs=3, seeds=(0,)), "bccd", tmp_path, section(race))
    assert race.trained == [("bccd", 0, "detforge"), ("bccd", 0, "ultralytics")]
    assert not list(runs.glob("*.tmp"))


def test_without_a_runs_folder_nothing_is_kept(race, tmp_path: Path) -> None:
    race.race(arguments(None, seeds=(0,)), "bccd", tmp_path, section(race))
    race.race(arguments(None, seeds=(0,)), "bccd", tmp_path, section(race))
    assert len(race.trained) == 4


@pytest.mark.parametrize("threads", [2, 0])
def test_children_get_the_thread_count_asked_for_not_the_one_ultralytics_left(bench_script, monkeypatch,
                                                                               threads) -> None:
    """Importing Ultralytics (to score its model) sets OMP_NUM_THREADS=1 in this process; a child started
    afterwards must still train with the requested threads, or with its own default when none is asked."""
    module = bench_script("accuracy_race")
    children = sys.modules[module.run_json_child.__module__]  # bench/children.py, as the script imported it
    monkeypatch.delitem(children.STARTING_ENV, "OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what `import ultralytics` does
    seen = {}

    def fake_run(command, env, **kwargs):
        seen.update(command=command, env=env)
        return argparse.Namespace(returncode=0, stdout='{"best": "b"}\n', stderr="")

    monkeypatch.setattr(children.subprocess, "run", fake_run)
    args = arguments(None)
    args.threads = threads
    module.run_child("detforge", args, Path("data"), 0, Path("out"))
    assert seen["env"].get("OMP_NUM_THREADS") == (str(threads) if threads else None)
    assert seen["command"][seen["command"].index("--threads") + 1] == str(threads)


def test_the_bf16_arm_is_scored_against_the_same_reference_runs(race, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    race.race(arguments(runs), "bccd", tmp_path, section(race))
    race.trained.clear()
    with_bf16 = section(race)
    kept = race.race(arguments(runs, bf16=True), "bccd", tmp_path, with_bf16)
    assert race.trained == [("bccd", 0, "detforge-bf16"), ("bccd", 1, "detforge-bf16")]  # the others are kept
    float32, bf16 = with_bf16["rows"]
    assert float32["key"]["detforge precision"] == "float32"
    assert bf16["key"]["detforge precision"] == "bf16 autocast (default)"
    assert bf16["samples"]["mAP50-95"]["reference"] == float32["samples"]["mAP50-95"]["reference"] == [38.0, 38.0]
    assert bf16["samples"]["mAP50-95"]["detforge"] == pytest.approx([40.0, 41.0])
    race.record_conditions(with_bf16, kept)
    assert "torch threads in training: detforge 2, detforge bf16 2, reference 1; " in with_bf16["notes"]
    # the bf16 arm trained a day after the others: the page says so
    assert with_bf16["notes"].endswith("detforge bf16 2026-12-05 10:00 UTC to 2026-12-05 11:00 UTC, "
                                       "reference 2026-12-04 10:00 UTC to 2026-12-04 11:00 UTC.")


def test_the_generated_set_is_scored_on_a_held_out_split_with_its_own_coco_json(bench_script, monkeypatch,
                                                                                tmp_path: Path) -> None:
    """The second race set needs no download: written by the synthesizer, with a COCO json of its test split
    that COCOeval scores exactly as the race does (image ids by file stem, category ids by class order)."""
    module = bench_script("accuracy_race")
    small = {"images": 12, "classes": 2, "imgsz": 64, "seed": 0, "val_fraction": 0.25, "test_fraction": 0.25}
    monkeypatch.setitem(module.GENERATED, "shapes", small)
    monkeypatch.setenv("DETFORGE_CACHE_DIR", str(tmp_path / "cache"))  # private_copy points it into the race's tmp
    args = arguments(None)
    data = module.race_data(args, "shapes", tmp_path)
    spec = yaml.safe_load((data / "data.yaml").read_text())
    assert spec["path"] == str(data) and spec["test"] == "images/test"  # absolute: Ultralytics reads it from cwd
    truth = json.loads((data / "annotations" / "instances_test.json").read_text())
    assert sorted(image["file_name"] for image in truth["images"]) == sorted(
        p.name for p in (data / "images" / "test").iterdir())
    labels = (data / "labels" / "test").iterdir()
    assert len(truth["annotations"]) == sum(len(p.read_text().splitlines()) for p in labels)
    stems = {image["id"]: Path(image["file_name"]).stem for image in truth["images"]}
    perfect = [{"image_id": stems[a["image_id"]], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in truth["annotations"]]  # as both frameworks write them for a YOLO-layout set
    (tmp_path / "perfect.json").write_text(json.dumps(perfect))
    assert module.coco_map(tmp_path / "perfect.json", data / "annotations" / "instances_test.json") == (1.0, 1.0)
    # a kept run of the generated set is reused only for the same generator settings
    assert module.recipe(args, "shapes") == {**module.recipe(args, "bccd"), "generated": small}
