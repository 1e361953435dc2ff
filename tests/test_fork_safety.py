"""Data-loader workers must not deadlock when the parent process has already used OpenCV."""

import subprocess
import sys
import textwrap


def test_loader_workers_start_after_parent_used_opencv(tmp_path):
    script = textwrap.dedent(f"""
        import cv2
        cv2.setNumThreads(3)  # OpenCV's thread pool on in the parent, whatever the machine
        import detforge
        from detforge.data import build_dataloader
        from detforge.data.synthetic import synthesize
        data = synthesize({str(tmp_path / 'shapes')!r}, images=40, classes=2, imgsz=128)  # OpenCV in the parent
        loader = build_dataloader(data, "train", imgsz=128, batch_size=8, workers=2, progress=False)
        print(sum(len(batch["paths"]) for batch in loader), cv2.getNumThreads())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "32 3"  # every batch, and the parent's OpenCV threads given back
