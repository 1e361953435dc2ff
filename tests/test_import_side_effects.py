"""Importing detforge (every module of it) changes no process-wide setting, and plotting uses no pyplot."""

import subprocess
import sys
import textwrap


def test_import_leaves_backends_and_thread_counts_alone(tmp_path):
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        import cv2, matplotlib, torch
        matplotlib.use("svg")
        cv2.setNumThreads(3)
        torch.set_num_threads(1)
        before = (matplotlib.get_backend(), cv2.getNumThreads(), torch.get_num_threads())

        import detforge
        for module in pkgutil.walk_packages(detforge.__path__, "detforge."):
            if module.name != "detforge.__main__":
                importlib.import_module(module.name)
        after_import = (matplotlib.get_backend(), cv2.getNumThreads(), torch.get_num_threads())

        from detforge.engine.results import ResultsLog, plot_results
        log = ResultsLog({str(tmp_path / 'results.csv')!r})
        for epoch in (1, 2):
            log.append({{"epoch": epoch, "train/box": 1.0 / epoch, "metrics/mAP50": 0.1 * epoch}})
        plot_results(log, {str(tmp_path / 'results.png')!r})
        after_plot = (matplotlib.get_backend(), cv2.getNumThreads(), torch.get_num_threads())
        print(before == after_import == after_plot, before, after_import, after_plot,
              "matplotlib.pyplot" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == "True", done.stdout
    assert done.stdout.split()[-1] == "False", "library code imported pyplot (global figure state)"
    assert (tmp_path / "results.png").stat().st_size > 0
