"""A downloaded dataset must not steer our writes: planted symlinks, hostile file names (issue 8, item 3)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from data_helpers import boxes_dataset, write_yolo

from detforge.cli import main


def victim_file(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    victim = home / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA legit\n")
    os.chmod(victim, 0o600)
    return victim


def test_symlinked_cache_folder_is_not_written_through(tmp_path, capsys):
    data = boxes_dataset(tmp_path / "ds", count=3)
    victim = victim_file(tmp_path)
    (data.parent / ".detforge-cache").symlink_to(victim.parent)
    main(["data", "check", str(data)])
    capsys.readouterr()
    assert os.listdir(victim.parent) == ["authorized_keys"]
    assert victim.read_text() == "ssh-ed25519 AAAA legit\n" and (victim.stat().st_mode & 0o777) == 0o600


def test_symlinked_report_and_cache_files_are_refused(tmp_path, capsys):
    data = write_yolo(tmp_path / "ds", {"train": [("a.png", np.zeros((8, 8, 3), np.uint8), "9 0.5 0.5 0.5 0.5\n")]})
    victim = victim_file(tmp_path)
    cache = data.parent / ".detforge-cache"
    cache.mkdir()
    for name in ("data-check-problems.txt", "yolo-train.npz", "yolo-train.problems.txt"):
        (cache / name).symlink_to(victim)
    code = main(["data", "check", str(data)])
    err = capsys.readouterr().err
    assert code == 2 and "symlink" in err and err.count("\n") == 1
    assert victim.read_text() == "ssh-ed25519 AAAA legit\n"


def test_file_names_with_newlines_are_escaped_in_the_report(tmp_path, capsys):
    name = "evil\nssh-ed25519 AAAA attacker\n.png"
    data = write_yolo(tmp_path / "ds", {"train": [(name, np.zeros((8, 8, 3), np.uint8), "0 2 2 x y\n"),
                                                  ("ok.png", np.zeros((8, 8, 3), np.uint8), "0 .5 .5 .5 .5\n")]})
    problems = tmp_path / "problems.txt"
    assert main(["data", "check", str(data), "--problems", str(problems)]) == 0
    out = capsys.readouterr().out
    lines = problems.read_text().splitlines()
    assert len(lines) == 1 and "evil\\nssh-ed25519 AAAA attacker\\n.txt:1" in lines[0]
    assert not any(line.startswith("ssh-ed25519") for line in (out + problems.read_text()).splitlines())
