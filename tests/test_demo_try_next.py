"""`detforge demo` ends with "try next" commands; each must run exactly as printed."""

import shlex

from detforge.cli import main


def test_demo_try_next_commands_run_as_printed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the printed commands write their runs under ./runs
    assert main(["demo", "--out", str(tmp_path / "demo"), "--images", "10", "--imgsz", "64", "--epochs", "1",
                 "--batch", "8", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("try next"):].splitlines()
    commands = [line.split("detforge ", 1)[1].split("  #")[0] for line in block if "detforge " in line]
    assert [c.split()[0] for c in commands] == ["val", "predict", "train"]
    for command in commands:
        argv = shlex.split(command)
        if argv[0] == "train":
            argv += ["--epochs", "1", "--workers", "0", "--batch", "8"]  # shorter than printed, same command
        assert main(argv) == 0, command
