"""What a run reports about itself: a verdict line when it trained, TrainingFailed when there
is nothing trustworthy to show, and a model directory it may write into."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mvcore.errors import ConfigError
from mvcore.training.checkpoints import BestCheckpoint
from mvcore.training.fit import _finished, resolve_model_dir
from mvcore.training.outcome import FitResult, TrainingFailed


def _trained(model_dir: Path, epoch: int, name: str = "last") -> None:
    path = model_dir / "checkpoints" / f"{name}.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "global_step": 10, "state_dict": {"w": torch.ones(2)}}, path)


def test_output_into_a_trained_model_is_refused_and_resume_needs_one(tmp_path):
    assert resolve_model_dir(None, str(tmp_path / "new"), None) == tmp_path / "new"
    with pytest.raises(ConfigError, match=r"--resume .*: no checkpoints/last.ckpt"):
        resolve_model_dir(None, None, str(tmp_path))
    _trained(tmp_path, 3)
    with pytest.raises(ConfigError) as info:
        resolve_model_dir(None, str(tmp_path), None)
    assert str(info.value) == (f"--output {tmp_path} already holds a trained model "
                               f"(checkpoints/last.ckpt); continue it with --resume {tmp_path}"
                               ", or choose another --output")
    assert resolve_model_dir(None, None, str(tmp_path)) == tmp_path


class _Module(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))


def _trainer(epochs: int = 2) -> SimpleNamespace:
    return SimpleNamespace(current_epoch=epochs, global_step=10, global_rank=0)


def _best(tmp_path: Path, measured: int, unmeasured: int, score: float | None = None):
    best = BestCheckpoint(dirpath=tmp_path, filename="best", monitor="val_pixel_error")
    best.measured_epochs, best.unmeasured_epochs = measured, unmeasured
    best.best_model_score = None if score is None else torch.tensor(score)
    return best


def test_a_run_without_a_checkpoint_never_counts_as_trained(tmp_path):
    with pytest.raises(TrainingFailed, match=r"^failed: no training epoch finished, so there "
                                             r"is no checkpoint"):
        _finished(_Module(), _trainer(0), _best(tmp_path, 0, 0), tmp_path)


def test_a_run_whose_validation_never_measured_a_keypoint_fails(tmp_path):
    _trained(tmp_path, 1)
    with pytest.raises(TrainingFailed) as info:
        _finished(_Module(), _trainer(), _best(tmp_path, 0, 2), tmp_path)
    message = str(info.value)
    assert message.startswith("failed: the validation pixel error was NaN in all 2 validated "
                              "epochs")
    assert message.endswith(f"the last good checkpoint is kept: {tmp_path}/checkpoints/"
                            "last.ckpt (epoch 1)")


def test_a_trained_run_loads_the_best_weights_and_says_so(tmp_path):
    _trained(tmp_path, 1)
    _trained(tmp_path, 0, "best")
    module = _Module()
    result = _finished(module, _trainer(), _best(tmp_path, 2, 0, 4.256), tmp_path)
    assert torch.equal(module.w.detach(), torch.ones(2))
    assert result.weights == tmp_path / "checkpoints" / "best.ckpt"
    assert result.verdict() == ("trained: 2 epochs (10 steps); best validation pixel error "
                                f"4.26 px in epoch 0; model directory: {tmp_path}")


def test_a_run_without_validation_keeps_the_last_weights():
    result = FitResult(Path("m"), True, 1, 4, Path("m/checkpoints/last.ckpt"))
    assert result.verdict() == ("trained: 1 epoch (4 steps); no validation ran, the model "
                                "holds the last epoch's weights; model directory: m")


@pytest.mark.parametrize(("env", "launching"), [
    ({}, True),
    ({"RANK": "0"}, True), ({"RANK": "1"}, False),  # torchrun
    ({"LOCAL_RANK": "1"}, False), ({"NODE_RANK": "1"}, False),  # Lightning's DDP launcher
    ({"SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "train"}, True),
    ({"SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "2", "SLURM_JOB_NAME": "train"}, False),
    # an interactive allocation (srun --pty bash): the user's own process, whatever the counts
    ({"SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "2", "SLURM_JOB_NAME": "bash"}, True),
    ({"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "train"}, True),
])
def test_only_the_launching_process_locks_the_model_directory(monkeypatch, env, launching):
    """Under srun every task runs ``mvcore train`` itself: only task 0 may take the lock, or
    the others fail as busy and rank 0 waits for them for ever."""
    from mvcore.workflow import _launching_process

    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID",
                 "SLURM_JOB_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _launching_process() is launching
