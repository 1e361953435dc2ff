"""The `detforge` command: help, info, and one-line errors instead of tracebacks."""

import json

from detforge.cli import main


def test_help_lists_every_command(capsys):
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    out = capsys.readouterr().out
    for command in ("info", "convert", "data", "train", "val", "predict", "demo"):
        assert command in out


def test_info_table_and_json(capsys):
    assert main(["info", "yolov8n", "--imgsz", "320"]) == 0
    table = capsys.readouterr().out
    assert "backbone" in table and "head.box_branches" in table and "3,157,200" in table
    assert main(["info", "yolov8n", "--json", "--num-classes", "3", "--set", "head.reg_max=8"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["imgsz"] == 640 and info["params"] < 3_157_200
    assert [p["name"] for p in info["parts"]][:2] == ["backbone", "neck"]
    assert info["parts"][-1]["outputs"] == [[1, 8400, 4 + 3]]


def test_bad_input_is_one_line_on_stderr_with_exit_code_2(capsys, tmp_path):
    assert main(["info", "yolov8q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'yolov8q'") and err.count("\n") == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: {type: csp_darknet}\nneck: {type: pan_fpn}\nhead: {type: decoupled, num_class: 3}\n")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: head.num_class: unknown key" in err and err.count("\n") == 1
    assert main(["train", "--model", "yolov8n"]) == 2
    assert "train needs a dataset" in capsys.readouterr().err
