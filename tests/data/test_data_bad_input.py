"""Bad input never crashes and is never dropped silently: each case is fixed or skipped and reported."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from data_helpers import rect_image, write_yolo, yolo_line
from PIL import Image

from detforge.cli import main
from detforge.data import build_dataloader, load_dataset_spec, load_split
from detforge.errors import DataError

W, H = 64, 48
GOOD = yolo_line(0, (8, 8, 24, 24), W, H)


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def _pil_bytes(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _check(tmp_path: Path, items, **kw):
    spec = load_dataset_spec(write_yolo(tmp_path, {"train": items}, **kw))
    labels = load_split(spec, "train")
    return spec, labels, {(Path(p.file.split(":")[0]).name, p.kind, p.action) for p in labels.problems}


def test_unreadable_truncated_and_corrupt_images_are_skipped_by_name(tmp_path: Path) -> None:
    jpeg = cv2.imencode(".jpg", rect_image(W, H, (8, 8, 24, 24)))[1].tobytes()
    png = bytearray(_png(rect_image(W, H, (8, 8, 24, 24), value=200)))
    png[len(png) // 2] ^= 0xFF  # damage the pixel data: the chunk checksum no longer matches
    _spec, labels, found = _check(tmp_path, [
        ("ok.jpg", jpeg, GOOD),
        ("garbage.jpg", b"this is not an image" * 5, GOOD),
        ("truncated.jpg", jpeg[: len(jpeg) // 2], GOOD),
        ("corrupt.png", bytes(png), GOOD),
        ("empty.png", b"", GOOD),
    ])
    assert [Path(p).name for p in labels.store.paths] == ["ok.jpg"], found
    assert {("garbage.jpg", "unreadable image", "skipped"), ("truncated.jpg", "truncated image", "skipped"),
            ("corrupt.png", "unreadable image", "skipped"), ("empty.png", "unreadable image", "skipped")} <= found


def test_label_problems_are_fixed_or_dropped_and_named_with_their_line(tmp_path: Path) -> None:
    lines = (
        GOOD                                   # 1 kept
        + "0 0.5 0.5\n"                        # 2 too few values
        + "x 0.5 0.5 0.1 0.1\n"                # 3 not numbers
        + "1.5 0.5 0.5 0.1 0.1\n"              # 4 class not an integer
        + "0 nan 0.5 0.1 0.1\n"                # 5 non-finite
        + "7 0.5 0.5 0.2 0.2\n"                # 6 class not in names
        + "-1 0.5 0.5 0.2 0.2\n"               # 7 negative class
        + "1 0.9 0.5 0.4 0.2\n"                # 8 reaches outside (x up to 1.1): clipped
        + "2 1.5 1.5 0.2 0.2\n"                # 9 entirely outside: zero area inside, dropped
        + "2 0.5 0.5 0.0 0.3\n"                # 10 zero width
        + GOOD                                 # 11 duplicate of line 1
    )
    spec, labels, _ = _check(tmp_path, [("a.png", _png(rect_image(W, H, (0, 0, 1, 1))), lines)])
    by_line = {int(p.file.rsplit(":", 1)[1]): (p.kind, p.action) for p in labels.problems}
    assert by_line == {
        2: ("malformed label", "dropped"), 3: ("malformed label", "dropped"), 4: ("malformed label", "dropped"),
        5: ("malformed label", "dropped"), 6: ("unknown class", "dropped"), 7: ("unknown class", "dropped"),
        8: ("box outside image", "fixed"), 9: ("zero-area box", "dropped"), 10: ("zero-area box", "dropped"),
        11: ("duplicate box", "dropped"),
    }
    assert all(p.file.startswith("labels/train/a.txt:") for p in labels.problems)
    (rec,) = labels.store
    np.testing.assert_allclose(rec.boxes, [[8, 8, 24, 24], [0.7 * W, 0.4 * H, W, 0.6 * H]], atol=1e-3)
    # unknown class ids are fine for `check` but stop training before it starts, in one line
    with pytest.raises(DataError, match=r"2 label\(s\) in 'train' use class ids outside names") as err:
        build_dataloader(spec, "train", imgsz=64, batch_size=2, workers=0, progress=False)
    assert "\n" not in str(err.value)


def test_missing_label_file_keeps_the_image_without_boxes(tmp_path: Path) -> None:
    _, labels, found = _check(tmp_path, [("a.png", _png(rect_image(W, H, (0, 0, 2, 2))), None)])
    assert len(labels.store) == 1 and len(labels.store.boxes) == 0
    assert found == {("a.txt", "missing label file", "fixed")}


def test_exif_rotated_photo_is_loaded_upright_and_reported(tmp_path: Path) -> None:
    upright = rect_image(W, H, (40, 8, 60, 20), value=255)  # label refers to the upright image
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # orientation 6 turns this back clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    jpeg = _pil_bytes(Image.fromarray(stored[..., ::-1]), "JPEG", exif=exif, quality=98)
    spec, labels, found = _check(tmp_path, [("r.jpg", jpeg, yolo_line(0, (40, 8, 60, 20), W, H))])
    assert found == {("r.jpg", "EXIF rotation", "fixed")}
    (rec,) = labels.store
    assert (rec.width, rec.height) == (W, H)
    batch = next(iter(build_dataloader(spec, "train", imgsz=64, batch_size=1, augment=False, workers=0,
                                       progress=False)))
    ys, xs = np.nonzero(batch["img"][0, 0].numpy() > 200)  # the bright patch is where the label says
    np.testing.assert_allclose(batch["boxes"][0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1.5)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "CMYK", "P"])
def test_non_rgb_images_are_converted_to_rgb_and_reported(tmp_path: Path, mode: str) -> None:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, : W // 2] = (255, 0, 0)  # red left half
    image = Image.fromarray(rgb)
    if mode == "I;16":
        data, suffix = _png(rgb[..., 0].astype(np.uint16) * 257), ".png"
    elif mode == "CMYK":
        data, suffix = _pil_bytes(image.convert("CMYK"), "JPEG", quality=98), ".jpg"
    else:
        data, suffix = _pil_bytes(image.convert(mode), "PNG"), ".png"
    spec, _labels, found = _check(tmp_path, [("m" + suffix, data, GOOD)])
    assert found == {("m" + suffix, "not 8-bit RGB", "fixed")}
    batch = next(iter(build_dataloader(spec, "train", imgsz=64, batch_size=1, augment=False, workers=0,
                                       progress=False)))
    img = batch["img"][0].numpy().astype(int)  # [3, H', W'] RGB
    left, right = img[:, 30, 16], img[:, 30, 48]
    expected_left = [76, 76, 76] if mode == "L" else [255, 255, 255] if mode == "I;16" else [255, 0, 0]
    np.testing.assert_allclose(left, expected_left, atol=8)
    np.testing.assert_allclose(right, [0, 0, 0], atol=8)


def test_nc_that_disagrees_with_names_is_reported_once(tmp_path: Path) -> None:
    write_yolo(tmp_path, {"train": [("a.png", _png(rect_image(W, H, (0, 0, 2, 2))), GOOD)]},
               names=["a", "b"], extra={"nc": 5})
    spec = load_dataset_spec(tmp_path / "data.yaml")
    assert spec.names == ["a", "b"]
    assert [(p.kind, p.action) for p in spec.problems] == [("nc/names mismatch", "fixed")]


def test_no_usable_images_is_a_one_line_error_before_training(tmp_path: Path) -> None:
    spec, labels, _ = _check(tmp_path, [("a.jpg", b"nope", GOOD), ("b.jpg", b"nope", GOOD)])
    assert len(labels.store) == 0
    with pytest.raises(DataError, match="no usable images") as err:
        build_dataloader(spec, "train", imgsz=64, batch_size=2, workers=0, progress=False)
    assert "\n" not in str(err.value)


def test_check_prints_first_problems_and_writes_the_full_list(tmp_path: Path, capsys) -> None:
    lines = "".join(f"9 0.5 0.5 0.1 0.{i + 1}\n" for i in range(8))  # 8 unknown-class lines
    write_yolo(tmp_path, {"train": [("a.png", _png(rect_image(W, H, (0, 0, 2, 2))), lines)]})
    report = tmp_path / "problems.txt"
    assert main(["data", "check", str(tmp_path), "--show", "3", "--problems", str(report)]) == 1
    out = capsys.readouterr().out
    assert "8 problem(s): 8 dropped" in out
    assert out.count("labels/train/a.txt:") == 3 and "5 more" in out and str(report) in out
    assert len(report.read_text().splitlines()) == 8
