"""Dataset fuzzers: hostile YOLO / COCO / VOC datasets and data.yaml files, random and structured.

Each example copies a small real dataset (three formats), mutates it — label lines built from awkward
numbers, byte flips, YAML with aliases and odd types, COCO json and VOC xml with odd values, planted
symlinks, FIFOs and hostile file names — then runs `detforge data check` (and, for YOLO, `data convert`)
in-process. The property (security_helpers): one-line error or reported problems, never a traceback; no
file outside the command's outputs changes (the planted symlinks' victims included); memory bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from security_helpers import PeakMemory, assert_unchanged, run_cli, run_fuzz, snapshot

MiB = 2**20
MEMORY_LIMIT = 256 * MiB  # inputs are a few KB; a bounded reader stays far below this
BCCD = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "bccd"

SPECIAL_TOKENS = ["0", "1", "2", "-1", "0.5", "1.5", "-0.2", "1e400", "-1e400", "nan", "inf", "-inf", "Infinity",
                  "9223372036854775808", "-9223372036854775809", "1e-310", "0x10", "1_0", "٣", "１", "0.5e", "", "\x00"]
TOKENS = st.one_of(st.sampled_from(SPECIAL_TOKENS), st.floats().map(repr), st.integers(-2**80, 2**80).map(str),
                   st.text(max_size=6))
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
HOSTILE_NAMES = ["a\nb.png", "\x1b[31mred.png", os.fsdecode(b"\xff\xfe.png"), "new\rline.png", "tab\t.png",
                 "\u202egnp.exe.png", " .png", "-rf.png", "..png"]


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)


def _labels() -> list[str]:
    """Label text of the YOLO copy: lines of a real BCCD label file when it is there, else made-up ones."""
    files = sorted((BCCD / "labels" / "train").glob("*.txt"))[:2] if BCCD.is_dir() else []
    texts = [f.read_text() for f in files]
    return texts + ["0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.2 0.3\n", "1 0.7 0.6 0.3 0.3\n"][len(texts):]


def build_template(root: Path) -> Path:
    """One tiny dataset in each format under `root` (yolo/, coco/, voc/)."""
    yolo, coco, voc = root / "yolo", root / "coco", root / "voc"
    for i, text in enumerate(_labels()[:2]):
        for folder, name in ((yolo / "images" / "train", f"{i}.png"), (coco / "images" / "train", f"{i}.png"),
                             (voc / "JPEGImages", f"{i}.png")):
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / name), _image(i))
        (yolo / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (yolo / "labels" / "train" / f"{i}.txt").write_text(text)
    (yolo / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/train\nnc: 3\n"
                                    "names: [RBC, WBC, Platelets]\n")
    images = [{"id": i + 1, "file_name": f"{i}.png", "width": 32, "height": 24} for i in range(2)]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8], "area": 80, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [5, 5, 6, 6], "area": 36, "iscrowd": 0}]
    (coco / "annotations").mkdir()
    (coco / "annotations" / "instances_train.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    (voc / "Annotations").mkdir()
    for i in range(2):
        (voc / "Annotations" / f"{i}.xml").write_text(voc_xml(f"{i}.png", "a", "2", "3", "12", "11"))
    (voc / "classes.txt").write_text("a\nb\n")
    return root


def voc_xml(filename: str, name: str, *box: str, width: str = "32", height: str = "24") -> str:
    xmin, ymin, xmax, ymax = box
    return (f"<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size><object><name>{name}</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object></annotation>")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = build_template(tmp_path_factory.mktemp("template"))
    for fmt in ("yolo", "coco", "voc"):  # warm up: first imports must not count as the examples' memory
        check_dataset(root, fmt, lambda work, victim: None, convert=True, memory_limit=None)
    return root


def check_dataset(template: Path, fmt: str, mutate: Callable[[Path, Path], None], convert: bool = False,
                  memory_limit: int | None = MEMORY_LIMIT) -> None:
    """Copy the template, plant a victim outside it, `mutate(dataset_folder, victim_folder)`, run the CLI and
    hold it to the property."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        work = tmp / "ds"
        shutil.copytree(template / fmt, work, symlinks=True)
        victim = tmp / "home"
        victim.mkdir()
        (victim / "authorized_keys").write_text("ssh-ed25519 AAAA legit\n")
        os.chmod(victim / "authorized_keys", 0o600)
        mutate(work, victim)
        target = {"yolo": work / "data.yaml", "coco": work / "annotations" / "instances_train.json",
                  "voc": work}[fmt]
        outputs = [work / ".detforge-cache", tmp / "user-cache", tmp / "converted"]
        before = snapshot(tmp, skip=outputs)
        old = os.environ.get("DETFORGE_CACHE_DIR")
        os.environ["DETFORGE_CACHE_DIR"] = str(tmp / "user-cache")
        try:
            with PeakMemory() as peak:
                result = run_cli(["data", "check", target])
                if convert and result.code != 2:
                    run_cli(["data", "convert", target, tmp / "converted", "--to", "coco"])
        finally:
            if old is None:
                os.environ.pop("DETFORGE_CACHE_DIR", None)
            else:
                os.environ["DETFORGE_CACHE_DIR"] = old
        assert_unchanged(before, snapshot(tmp, skip=outputs))
        assert memory_limit is None or peak.grown < memory_limit, peak.grown


@pytest.mark.fuzz
def test_fuzz_yolo_label_lines(template):
    @given(st.lists(st.lists(TOKENS, max_size=8).map(" ".join), max_size=12).map("\n".join),
           st.sampled_from(["utf-8", "utf-16", "latin-1"]))
    def check(text, encoding):
        def mutate(work, victim):
            (work / "labels" / "train" / "0.txt").write_bytes(text.encode(encoding, "replace"))
        check_dataset(template, "yolo", mutate, convert=True)

    run_fuzz(check, examples=6)


DATA_YAML_KEYS = st.sampled_from(["names", "nc", "train", "val", "test", "path"])


@pytest.mark.fuzz
def test_fuzz_data_yaml(template):
    raw = st.sampled_from([
        "names: &a [x, *a]\n", "names: !!python/object/apply:os.system ['echo hi']\n", "<<: *nothing\n",
        "names: {0: a, 1: b, 0: c}\n", "nc: 99999999999999999999999999\nnames: null\n", "train: /dev/zero\n",
        "train: ../../../../etc\n", "names: [" * 200 + "]" * 200 + "\n", "\t\x00\x1b[2J: x\n",
    ])

    @given(st.dictionaries(DATA_YAML_KEYS, JSONISH, max_size=4), st.none() | raw)
    def check(changes, extra):
        def mutate(work, victim):
            data = yaml.safe_load((work / "data.yaml").read_text())
            data.update(changes)
            text = yaml.safe_dump(data, allow_unicode=True) + (extra or "")
            (work / "data.yaml").write_text(text, encoding="utf-8", errors="surrogateescape")
        check_dataset(template, "yolo", mutate)

    run_fuzz(check, examples=6)


@pytest.mark.fuzz
def test_fuzz_coco_json(template):
    fields = st.sampled_from(["images", "annotations", "categories"])
    entry_keys = st.sampled_from(["id", "image_id", "category_id", "bbox", "file_name", "width", "height",
                                  "iscrowd", "name"])

    @given(fields, st.integers(0, 3), entry_keys, JSONISH | st.sampled_from(["Infinity", "NaN", "1e999"]))
    def check(field, index, key, value):
        def mutate(work, victim):
            path = work / "annotations" / "instances_train.json"
            data = json.loads(path.read_text())
            entries = data[field]
            if index < len(entries):
                entries[index][key] = value
            else:
                entries.append(value)
            text = json.dumps(data).replace('"Infinity"', "Infinity").replace('"NaN"', "NaN").replace(
                '"1e999"', "1e999")
            path.write_text(text)
        check_dataset(template, "coco", mutate)

    run_fuzz(check, examples=6)


@pytest.mark.fuzz
def test_fuzz_voc_xml(template):
    value = st.one_of(TOKENS, st.sampled_from(["&lol;", "<x>", "]]>", "&#0;", "&#x110000;"]))

    @given(st.lists(value, min_size=8, max_size=8), st.booleans())
    def check(values, doctype):
        def mutate(work, victim):
            filename, name, *box, width, height = values
            xml = voc_xml(filename, name, *box, width=width, height=height)
            if doctype:
                xml = (f'<!DOCTYPE a [<!ENTITY lol "lol"><!ENTITY ext SYSTEM "file://{victim}/authorized_keys">]>'
                       + xml.replace("<filename>", "<filename>&ext;"))
            (work / "Annotations" / "0.xml").write_text(xml, errors="surrogateescape")
        check_dataset(template, "voc", mutate)

    run_fuzz(check, examples=6)


@pytest.mark.fuzz
def test_fuzz_bytes_of_every_file(template):
    """Random byte-level damage to any file of any format: flips, insertions, cuts."""
    @given(st.sampled_from(["yolo", "coco", "voc"]), st.integers(0, 50), st.integers(0, 2**16),
           st.sampled_from(["flip", "insert", "truncate", "replace"]), st.binary(max_size=64))
    def check(fmt, which, where, op, data):
        def mutate(work, victim):
            files = sorted(p for p in work.rglob("*") if p.is_file())
            path = files[which % len(files)]
            raw = bytearray(path.read_bytes())
            at = where % (len(raw) + 1)
            if op == "flip" and raw:
                raw[at % len(raw)] ^= 1 << (where % 8)
            elif op == "insert":
                raw[at:at] = data
            elif op == "truncate":
                del raw[at:]
            else:
                raw = bytearray(data)
            path.write_bytes(bytes(raw))
        check_dataset(template, fmt, mutate)

    run_fuzz(check, examples=8)


def _plant(work: Path, victim: Path, fmt: str, how: str, which: int) -> None:
    """Replace one dataset entry by a symlink to the victim (file or folder), a FIFO, a folder, or give an
    image a hostile name."""
    cache = work / ".detforge-cache"
    if how == "cache-dir-link":
        cache.symlink_to(victim)
        return
    if how == "cache-file-link":
        cache.mkdir()
        for name in (f"{fmt}-train.npz", "data-check-problems.txt", f"{fmt}-train.problems.txt"):
            (cache / name).symlink_to(victim / "authorized_keys")
        return
    files = sorted(p for p in work.rglob("*") if p.is_file())
    path = files[which % len(files)]
    if how == "hostile-name":
        if path.suffix == ".png":
            path.rename(path.with_name(HOSTILE_NAMES[which % len(HOSTILE_NAMES)]))
        return
    path.unlink()
    if how == "link-file":
        path.symlink_to(victim / "authorized_keys")
    elif how == "link-dir":
        path.symlink_to(victim)
    elif how == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()


@pytest.mark.fuzz
def test_fuzz_planted_links_fifos_and_names(template):
    @given(st.sampled_from(["yolo", "coco", "voc"]), st.integers(0, 50),
           st.sampled_from(["cache-dir-link", "cache-file-link", "hostile-name", "link-file", "link-dir", "fifo",
                            "folder"]))
    def check(fmt, which, how):
        check_dataset(template, fmt, lambda work, victim: _plant(work, victim, fmt, how, which), convert=fmt == "yolo")

    run_fuzz(check, examples=8)
