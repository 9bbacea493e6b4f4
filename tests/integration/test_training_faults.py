"""A run that goes wrong says so: a learning rate that explodes after the first epoch (the
step schedule multiplies it by 1e12) makes the loss NaN; the run stops at that step with one
line naming the loss, the step, the epoch and the likely causes, exits 1, writes no report,
and keeps the first epoch's checkpoints as they were. (Interruptions and resume:
test_resume.py.)"""

from __future__ import annotations

import pytest
import torch

from mvcore.cli.main import main
from mvcore.example import make_example_project
from mvcore.files import DirectoryLock

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    config = make_example_project(root / "proj", seed=0, num_frames=48, image_size=64,
                                  label_every=1)
    model_dir = root / "model"
    settings = ["training.max_epochs=3", "training.num_workers=0",
                "training.check_val_every_n_epoch=1", "training.train_batch_size=8",
                "eval.num_labeled_frame_plots=0", "training.milestone_steps=[5]",
                "training.lr_scheduler_params.multisteplr.gamma=1e12"]
    argv = ["train", str(config), "--output", str(model_dir)]
    return model_dir, argv + [w for s in settings for w in ("--set", s)]


def test_a_diverging_run_stops_at_the_step_names_the_loss_and_keeps_the_good_epoch(diverged,
                                                                                 capfd):
    model_dir, argv = diverged
    code = main(argv)
    out, err = capfd.readouterr()
    assert code == 1
    assert "Traceback" not in err and "trained:" not in out
    last = err.strip().splitlines()[-1]
    # 5 steps per epoch (38 training rows in batches of 8); step 5 used the exploded rate
    assert last == (
        "error: diverged: train_heatmap_mse_loss is nan at step 6 (epoch 1); likely causes: "
        "labels far outside their image, a learning rate too high "
        "(training.optimizer_params.learning_rate), or a PCA loss on degenerate labels; the "
        f"last good checkpoint is kept: {model_dir}/checkpoints/last.ckpt (epoch 0)")
    for name in ("last", "best"):
        saved = torch.load(model_dir / "checkpoints" / f"{name}.ckpt", weights_only=True)
        assert saved["epoch"] == 0 and saved["global_step"] == 5
        assert all(torch.isfinite(t).all() for t in saved["state_dict"].values()
                   if t.is_floating_point())
    assert not (model_dir / "metrics.csv").exists()  # no report of a diverged model
    assert not list(model_dir.glob("predictions_*.csv"))
    assert not list((model_dir / "checkpoints").glob(".*"))
    DirectoryLock(model_dir, "train").acquire().release()  # the lock went with the run
