"""The one safe writer: atomic, never through a planted symlink; and text that stays on one line."""

from __future__ import annotations

import os

import pytest

from detforge.errors import UnsafePathError
from detforge.fsutil import printable, write_atomic


def test_write_replaces_atomically_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    write_atomic(path, "one")
    write_atomic(path, b"two")
    assert path.read_text() == "two" and os.listdir(path.parent) == ["a.txt"]


def test_symlink_at_the_target_is_replaced_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "out.txt"
    link.symlink_to(victim)
    write_atomic(link, "new")  # an output folder of ours: the link itself is replaced
    assert victim.read_text() == "precious" and not link.is_symlink() and link.read_text() == "new"


def test_inside_an_untrusted_folder_symlinks_are_refused(tmp_path):
    root, outside = tmp_path / "dataset", tmp_path / "home"
    root.mkdir()
    outside.mkdir()
    victim = outside / "report.txt"
    victim.write_text("precious")
    (root / "cache").symlink_to(outside)  # a folder link: writes would land in ~
    with pytest.raises(UnsafePathError, match="symlink"):
        write_atomic(root / "cache" / "report.txt", "evil", within=root)
    (root / "real").mkdir()
    (root / "real" / "report.txt").symlink_to(victim)  # a file link
    with pytest.raises(UnsafePathError, match="symlink"):
        write_atomic(root / "real" / "report.txt", "evil", within=root)
    assert victim.read_text() == "precious" and sorted(os.listdir(outside)) == ["report.txt"]
    write_atomic(root / "new" / "deeper" / "ok.txt", "fine", within=root)  # missing folders are created
    assert (root / "new" / "deeper" / "ok.txt").read_text() == "fine"


@pytest.mark.parametrize(("raw", "shown"), [
    ("a\nb.jpg", "a\\nb.jpg"), ("\x1b[2Jx", "\\x1b[2Jx"), ("bad\udcffname", "bad\\udcffname"),
    ("rtl\u202egpj.exe", "rtl\\u202egpj.exe"), ("ok name é 猫.jpg", "ok name é 猫.jpg"), ("tab\there", "tab\\there"),
])
def test_printable_escapes_control_characters(raw, shown):
    assert printable(raw) == shown
    assert "\n" not in printable(raw) and printable(raw).encode("utf-8")
