"""Every mistake a user can make on the command line ends in one `error:` line on stderr and exit code 2,
never a traceback (issue 9, item 8). One table row per mistake, every command covered."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from detforge.cli import COMMAND_MODULES, main

BOMB = "\n".join(['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]'] + [
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]) + "\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny dataset, a run folder with a corrupt resume state, and good/junk/odd weights files."""
    import cv2

    import detforge

    root = tmp_path_factory.mktemp("cli")
    images = root / "data" / "images" / "train"
    images.mkdir(parents=True)
    cv2.imwrite(str(images / "a.png"), np.zeros((32, 32, 3), np.uint8))
    (root / "data" / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [a]\n")
    (root / "bomb.yaml").write_text(BOMB)
    (root / "bad.yaml").write_text("backbone: [\n")
    (root / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}   ")
    (root / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    model = detforge.create_model("yolov8n", num_classes=1)
    good = root / "good.safetensors"
    detforge.save_weights(model, good)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "detforge", "format_version": "1", "config": json.dumps(model.config.model_dump(mode="json"))}
    save_file(tensors, root / "odd-names.safetensors", metadata={**meta, "names": '{"a": 1}'})
    save_file(tensors, root / "odd-version.safetensors", metadata={**meta, "format_version": "one"})
    run = root / "run" / "weights"
    run.mkdir(parents=True)
    save_file({"rng.torch": torch.zeros(3, dtype=torch.uint8)}, run / "last_state.safetensors",
              metadata={"format": "detforge-train-state", "state": "{\"info\": 3}"})
    (root / "full").mkdir()
    (root / "full" / "x").write_text("x")
    return {"root": root, "data": root / "data" / "data.yaml", "good": good}


# (command line with {root}/{data}/{good} placeholders, a fragment the error line must contain)
CASES = [
    ("info yolov8q", "unknown model 'yolov8q'"),
    ("info {root}/bad.yaml", "not valid YAML"),
    ("info {root}/bomb.yaml", "alias bomb"),
    ("info yolov8n --imgsz 0", "--imgsz 0: must be from 32"),
    ("info yolov8n --imgsz 99999999", "--imgsz 99999999"),
    ("info yolov8n --num-classes 0", "--num-classes 0"),
    ("info yolov8n --set head.num_classes=[", "not valid YAML"),
    ("info yolov8n --set head.nope=1", "head.nope: unknown key"),
    ("info yolov8n --set novalue", "expected KEY=VALUE"),
    ("info yolov8n --set head.reg_max=-1", "cannot be built"),
    ("info {root}/junk.safetensors", "junk.safetensors"),
    ("info {root}/odd-names.safetensors", "odd-names.safetensors"),
    ("info {root}/odd-version.safetensors", "odd-version.safetensors"),
    ("info yolov8n --imgsz", "expected one argument"),
    ("convert {root}/missing.pt {root}/out.safetensors", "missing.pt"),
    ("convert {root}/junk.pt {root}/out.safetensors", "junk.pt"),
    ("train --model yolov8n", "train needs a dataset"),
    ("train --data {data} --epochs 0", "--epochs 0"),
    ("train --data {data} --batch -4", "--batch -4"),
    ("train --data {data} --lr0 nan", "--lr0 nan"),
    ("train --data {data} --set lr0=[", "not valid YAML"),
    ("train --data {data} --set lr0=*a", "undefined alias"),
    ("train --data {data} --set no_such_setting=1", "no_such_setting"),
    ("train --data {data} --cfg {root}/missing.yaml", "missing.yaml"),
    ("train --data {data} --cfg {root}/bomb.yaml", "alias bomb"),
    ("train --data {data} --optimizer adam", "invalid choice"),
    ("train --resume {root}/nowhere", "no training state"),
    ("train --resume {root}/run", "corrupt training state"),
    ("data check {root}/missing", "not found"),
    ("data check {root}/bomb.yaml", "alias bomb"),
    ("data check {data} --show -1", "--show -1"),
    ("data convert {data} {root}/full --to coco", "not empty"),
    ("data convert {data} {root}/new --to csv", "invalid choice"),
    ("data synth {root}/s1 --images 0", "--images 0"),
    ("data synth {root}/s2 --classes 0", "classes"),
    ("data synth {root}/s3 --classes 99", "classes"),
    ("data synth {root}/s4 --imgsz 8", "--imgsz 8"),
    ("data synth {root}/s5 --val-fraction 2", "--val-fraction 2"),
    ("data synth {root}/s6 --test-fraction -1", "--test-fraction -1"),
    ("data synth {root}/s7 --images 3 --val-fraction 0.5 --test-fraction 0.5", "leaves no training image"),
    ("data synth {root}/full", "not empty"),
    ("data nope", "invalid choice"),
    ("val --weights {root}/missing.safetensors --data {data}", "missing.safetensors"),
    ("val --weights {root}/junk.safetensors --data {data}", "junk.safetensors"),
    ("val --weights {good} --data {root}/missing.yaml", "missing.yaml"),
    ("val --weights {good} --data {data} --split nope", "no 'nope' split"),
    ("val --weights {good} --data {data} --conf 2", "--conf 2"),
    ("val --weights {good} --data {data} --batch 0", "--batch 0"),
    ("predict --weights {good} --source {root}/data/images --slice --slice-size 16", "--slice-size 16"),
    ("predict --weights {good} --source {root}/data/images --slice-overlap 1", "--slice-overlap 1"),
    ("predict --weights {good} --source {root}/nothing", "nothing"),
    ("predict --weights {root}/odd-names.safetensors --source {root}/data/images", "odd-names"),
    ("predict --weights {good} --source {root}/data/images --classes -1", "--classes -1"),
    ("predict --weights {good} --source {root}/data/images --imgsz 0", "--imgsz 0"),
    ("predict --weights {good} --source {root}/data/images --max-det 0", "--max-det 0"),
    ("predict --source x", "required"),
    ("export --weights {root}/missing.safetensors", "missing.safetensors"),
    ("export --weights {good} --imgsz 0", "--imgsz 0"),
    ("export", "required: --weights"),
    ("bench --model yolov8q", "yolov8q"),
    ("bench --batch 0", "--batch 0"),
    ("demo --epochs 0", "--epochs 0"),
    ("ablate --data {data} --vary head=triple", "unknown head variant"),
    ("ablate --data {data} --vary head", "expected KEY=V1,V2"),
    ("ablate --data {data} --seeds a,b", "--seeds a,b"),
    ("ablate --data {data} --epochs 0", "--epochs 0"),
    ("diagnose --weights {good} --data {data} --batches 0", "--batches 0"),
    ("diagnose --weights {root}/missing.safetensors --data {data}", "missing.safetensors"),
    ("nonsense", "invalid choice"),
]


@pytest.mark.parametrize(("line", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_user_errors_are_one_line_with_exit_code_2(files, capsys, line, fragment):
    argv = [part.format(**files) for part in line.split()]
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2, (code, out[-500:], err[-2000:])
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: "), err[-2000:]
    assert fragment in err, err


def test_every_command_has_a_row():
    commands = {name.rsplit(".", 1)[1] for name in COMMAND_MODULES}
    assert commands <= {line.split()[0] for line, _ in CASES}
