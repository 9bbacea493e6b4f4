"""``mvcore train`` ends with one verdict line and the exit code that goes with it: 0 trained,
1 diverged or failed, 130 interrupted (with the command that resumes the run), 143 SIGTERM.
The run itself is replaced here; the real ones are tests/integration/test_resume.py and
test_training_faults.py."""

from pathlib import Path

import pytest

import mvcore.config
import mvcore.workflow
from mvcore.cli.main import main
from mvcore.training.outcome import FitResult, TrainingFailed, TrainingInterrupted

ARGV = ["train", "my config.yaml", "--set", "training.max_epochs=5", "--set",
        "model.losses_to_use=[pca_multiview]", "--output", "runs/a"]


@pytest.fixture
def outcome(monkeypatch):
    """Make ``train_run`` end with the outcome a test puts in ``box[0]``."""
    box: list = []

    def train_run(config, output_dir=None, resume=None):
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    monkeypatch.setattr(mvcore.config, "load_config", lambda path, overrides: None)
    monkeypatch.setattr(mvcore.workflow, "train_run", train_run)
    return box


def test_trained_prints_the_verdict_and_exits_0(outcome, capsys):
    outcome.append(FitResult(Path("runs/a"), True, 5, 50, Path("runs/a/checkpoints/best.ckpt"),
                             3.5, 4))
    assert main(ARGV) == 0
    out, err = capsys.readouterr()
    assert out.strip() == ("trained: 5 epochs (50 steps); best validation pixel error 3.50 px "
                           "in epoch 4; model directory: runs/a; next: mvcore predict runs/a "
                           "--labeled-video (the videos: 2D and 3D CSVs), then mvcore report "
                           "runs/a (an HTML page of the run)")
    assert err == ""


def test_diverged_is_one_error_line_and_exit_1(outcome, capsys):
    outcome.append(TrainingFailed("diverged: train_loss is nan at step 3 (epoch 0); ..."))
    assert main(ARGV) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "error: diverged: train_loss is nan at step 3 (epoch 0); ...\n"


def test_ctrl_c_exits_130_with_the_command_that_resumes_the_run(outcome, capsys):
    outcome.append(TrainingInterrupted("stopped: interrupted (Ctrl-C) in epoch 2 (step 20)",
                                       Path("runs/a"), resumable=True))
    assert main(ARGV) == 130
    assert capsys.readouterr().err == (
        "stopped: interrupted (Ctrl-C) in epoch 2 (step 20); continue with: mvcore train "
        "'my config.yaml' --set training.max_epochs=5 --set "
        "'model.losses_to_use=[pca_multiview]' --resume runs/a\n")


def test_sigterm_before_the_first_checkpoint_exits_143_with_nothing_to_resume(outcome, capsys):
    outcome.append(TrainingInterrupted("stopped: terminated (SIGTERM) in epoch 0 (step 2)",
                                       Path("runs/a"), resumable=False, exit_code=143))
    assert main(ARGV) == 143
    assert capsys.readouterr().err == (
        "stopped: terminated (SIGTERM) in epoch 0 (step 2); nothing to resume; run the same "
        "command again to start over\n")
