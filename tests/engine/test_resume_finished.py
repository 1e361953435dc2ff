"""Resuming a run that already ended is refused in one line (exit code 2), not re-validated."""

from detforge.cli import main
from detforge.engine.train_config import make_train_config
from detforge.engine.trainer import Trainer


def test_resume_of_a_finished_run_says_so_and_exits_2(settings, capsys):
    result = Trainer(make_train_config({**settings, "epochs": 1})).train()
    csv_before = (result.run_dir / "results.csv").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", str(result.run_dir)]) == 2
    err = capsys.readouterr().err
    assert "the run is finished (all 1 epochs done)" in err and err.count("\n") == 1
    assert (result.run_dir / "results.csv").read_text() == csv_before  # nothing rewritten
