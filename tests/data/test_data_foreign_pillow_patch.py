"""A corrupt image is still skipped and reported when another library has patched Pillow.

Ultralytics replaces `PIL.Image.open` on import with a wrapper that, on an unidentified file,
tries to import an optional HEIF plugin and raises ModuleNotFoundError when it is absent.
"""

from pathlib import Path

import pytest

from detforge.data.images import inspect_image
from detforge.data.problems import ProblemReport


def test_corrupt_image_is_reported_under_ultralytics_pillow_patch(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics.utils.patches")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    report = ProblemReport()
    assert inspect_image(junk, report) is None
    assert len(report) == 1 and "junk.png" in report.head(1)[0]
