"""Real processes: a run SIGKILLed in the middle of a checkpoint write resumes, and a 2-process
gloo DDP run trains on CPU."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import detforge
from detforge.engine.checkpoint import load_train_state


def train_args(settings, **changes):
    s = {**settings, **changes}
    return ["train", "--model", s["model"], "--data", s["data"], "--epochs", str(s["epochs"]), "--imgsz",
            str(s["imgsz"]), "--batch", str(s["batch"]), "--workers", "0", "--project", s["project"], "--name",
            s["name"], "--seed", "0", "--set", "plots=false", "--set", "warmup_epochs=0.5", "--device", "cpu"]


def test_sigkill_during_checkpoint_write_leaves_a_resumable_run(settings, tmp_path):
    marker = tmp_path / "saving"
    script = textwrap.dedent(f"""
        import os, sys, time
        real_replace, saves = os.replace, []
        def replace_slowly(src, dst, **kw):
            if str(dst).endswith("last_state.safetensors"):
                saves.append(dst)
                if len(saves) == 2:  # second epoch's state: fully written to the temp file, not yet renamed
                    open({str(marker)!r}, "w").close()
                    time.sleep(120)
            real_replace(src, dst, **kw)
        os.replace = replace_slowly
        from detforge.cli import main
        sys.exit(main({train_args(settings, epochs=3)!r}))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the run never reached its second checkpoint"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    run_dir = tmp_path / "runs" / "t"
    weights = run_dir / "weights"
    assert list(weights.glob(".last_state.safetensors.*.tmp")), "the kill should have hit mid-save"
    _, meta = load_train_state(weights / "last_state.safetensors")
    assert meta["info"]["epoch"] == 0  # the first epoch's complete state survived
    assert detforge.load(weights / "last.safetensors").num_classes == 2

    done = subprocess.run([sys.executable, "-m", "detforge", "train", "--resume", str(run_dir)], check=False, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(weights.glob("*.tmp"))  # resume cleans up what the killed write left
    assert load_train_state(weights / "last_state.safetensors")[1]["info"]["epoch"] == 2
    assert len((run_dir / "results.csv").read_text().splitlines()) == 1 + 3


def test_two_process_ddp_run_on_cpu(settings, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "detforge",
           *train_args(settings, epochs=2, batch=4, name="ddp"), "--sync-bn"]
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "ddp"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]  # both ranks used one folder
    assert len((run_dir / "results.csv").read_text().splitlines()) == 1 + 2
    model = detforge.load(run_dir / "weights" / "last.safetensors")
    assert model.num_classes == 2
    assert "Training finished: 2 epochs" in done.stdout
    assert done.stdout.count("Training finished") == 1  # only rank 0 reports
    assert "SyncBatchNorm needs CUDA" in done.stderr
