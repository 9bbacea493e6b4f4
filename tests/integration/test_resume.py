"""A run interrupted any way, then continued with ``--resume``, ends exactly where the
uninterrupted run ends: the same weights, optimiser and schedule, the same per-step log, the
same ``metrics.csv`` - bit for bit on the CPU.

Run A trains EPOCHS epochs uninterrupted. Run B is interrupted three times, each time resumed
with the command the Ctrl-C message printed: ``kill -9`` at an epoch boundary (while the
``last.ckpt`` of epoch 1 is being written, so the run restarts from epoch 0's), Ctrl-C
mid-epoch (exit 130, the ``--resume`` command printed) and ``kill -9`` mid-epoch; then it
finishes. Run C gets
SIGTERM in its first epoch (exit 143, nothing to resume). Every source of randomness and
state is on, so each must survive the restarts: augmentation (``imgaug: dlc``)
in DataLoader workers, the unlabelled clips of an unsupervised loss, drop-path (the global
torch RNG), patch masking (a step-based curriculum), loss annealing and backbone unfreezing.
The runs are forked from one parent (``tests/helpers/interrupt_training.py``), so each costs
its training, not its imports.

Then the finished model directory is used for the checks that need a model: a second writer,
and resumes that must be refused before anything in the directory changes.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mvcore.cli.main import main
from mvcore.example import make_example_project
from mvcore.files import DirectoryLock

pytestmark = pytest.mark.slow

EPOCHS = 3
FRAMES = 32  # all labelled; train_prob 0.6: 19 train, 3 validation and 10 test rows
STEPS_PER_EPOCH = 3  # 19 train rows in batches of 8
HELPER = Path(__file__).parents[1] / "helpers" / "interrupt_training.py"


def _settings() -> list[str]:
    return [
        f"training.max_epochs={EPOCHS}", "training.min_epochs=1",
        # DataLoader workers (the default): they draw their first indices before Lightning
        # sets the epoch, and they hold the lock file a killed run leaves behind
        "training.num_workers=2",
        "training.check_val_every_n_epoch=1", "training.train_batch_size=8",
        "training.train_prob=0.6", "training.val_prob=0.1",
        "training.log_every_n_steps=1", "eval.num_labeled_frame_plots=0",
        "training.imgaug=dlc", "training.unfreezing_epoch=1",
        "training.patch_mask.init_epoch=0", f"training.patch_mask.final_epoch={EPOCHS}",
        "training.patch_mask.final_ratio=0.5",
        "model.backbone_params.drop_path_rate=0.2",  # draws from the global torch RNG
        "model.losses_to_use=[pca_multiview]", "training.unlabeled_clip_length=4",
        "callbacks.anneal_weight.freeze_until_epoch=0",
        "callbacks.anneal_weight.increase_factor=0.25",
    ]


def _sets() -> list[str]:
    return [word for item in _settings() for word in ("--set", item)]


class Runner:
    """Runs ``mvcore`` jobs in children forked from one helper process."""

    def __init__(self, root: Path) -> None:
        self.root, self.count = root, 0
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(HELPER.parent), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen([sys.executable, str(HELPER)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)

    def __call__(self, argv: list[str], signal: str | None = None, when: str | None = None
                 ) -> tuple[int, str, str]:
        self.count += 1
        log = str(self.root / f"job{self.count}")
        job = {"argv": argv, "log": log, "signal": signal, "when": when}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        rc = json.loads(self.process.stdout.readline())["rc"]
        return rc, Path(log + ".out").read_text(), Path(log + ".err").read_text()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _state(model_dir: Path, name: str = "last") -> dict:
    return torch.load(model_dir / "checkpoints" / f"{name}.ckpt", map_location="cpu",
                      weights_only=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("resume")
    config = str(make_example_project(root / "proj", seed=0, num_frames=FRAMES, image_size=64,
                                      label_every=1))
    run_a, run_b = root / "A", root / "B"
    train = ["train", config, *_sets()]
    resume = [*train, "--resume", str(run_b)]
    record: dict = {"config": config, "A": run_a, "B": run_b, "resume": resume}
    runner = Runner(root)
    try:
        record["A rc"] = runner([*train, "--output", str(run_a)])
        # the epoch boundary at its worst: epoch 1's last.ckpt written but not yet renamed
        record["boundary"] = runner([*train, "--output", str(run_b)], "KILL", "saving-last:1")
        record["after boundary"] = _state(run_b)
        record["partial"] = sorted(p.name for p in (run_b / "checkpoints").glob(".*"))
        record["ctrl-c"] = runner(resume, "INT", "batch:1:1")
        record["mid-epoch"] = runner(resume, "KILL", "batch:2:1")
        record["after mid-epoch"] = _state(run_b)
        record["finish"] = runner(resume)
        # a cluster's time limit before the first checkpoint: nothing to resume
        record["sigterm"] = runner([*train, "--output", str(root / "C")], "TERM", "batch:0:0")
        record["C"] = root / "C"
    finally:
        runner.close()
    return record


def test_every_interruption_ends_as_it_should(runs):
    assert runs["A rc"][0] == 0, runs["A rc"][2][-2000:]
    # kill -9 while last.ckpt of epoch 1 was written: the one of epoch 0 is intact, the
    # temporary file is left behind (and removed by the next resume)
    assert runs["boundary"][0] == -9 and runs["after boundary"]["epoch"] == 0
    assert runs["partial"] and all(p.endswith(".partial.ckpt") for p in runs["partial"])
    assert runs["mid-epoch"][0] == -9 and runs["after mid-epoch"]["epoch"] == 1
    rc, out, err = runs["finish"]
    assert rc == 0, err[-2000:]
    assert out.strip().splitlines()[-1].startswith(f"trained: {EPOCHS} epochs "
                                                   f"({EPOCHS * STEPS_PER_EPOCH} steps)")
    assert not list((runs["B"] / "checkpoints").glob(".*"))


def test_ctrl_c_exits_130_and_prints_the_resume_command(runs):
    rc, _, err = runs["ctrl-c"]
    assert rc == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"stopped: interrupted (Ctrl-C) in epoch 1 (step {STEPS_PER_EPOCH + 2}); the last "
        f"good checkpoint is kept: {runs['B'] / 'checkpoints' / 'last.ckpt'} (epoch 0); "
        f"continue with: mvcore {shlex.join(runs['resume'])}")


def test_sigterm_before_the_first_checkpoint_exits_143_and_says_there_is_nothing_to_resume(
        runs):
    rc, out, err = runs["sigterm"]
    assert rc == 143
    assert "Traceback" not in err and "trained:" not in out
    assert err.strip().splitlines()[-1] == (
        "stopped: terminated (SIGTERM) in epoch 0 (step 1); no epoch finished, so no "
        "checkpoint was written; nothing to resume; run the same command again to start over")
    assert not (runs["C"] / "checkpoints" / "last.ckpt").exists()


def test_resumed_run_ends_with_the_same_weights_optimiser_and_schedule(runs):
    a, b = _state(runs["A"]), _state(runs["B"])
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(b["state_dict"][key], value), key
    opt_a, opt_b = a["optimizer_states"][0], b["optimizer_states"][0]
    assert [g["lr"] for g in opt_a["param_groups"]] == [g["lr"] for g in opt_b["param_groups"]]
    for index, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(opt_b["state"][index][name], value), (index, name)
    assert a["lr_schedulers"] == b["lr_schedulers"]
    best_a, best_b = _state(runs["A"], "best"), _state(runs["B"], "best")
    assert best_a["epoch"] == best_b["epoch"]
    for key, value in best_a["state_dict"].items():
        assert torch.equal(best_b["state_dict"][key], value), key


def _log(model_dir: Path) -> pd.DataFrame:
    return pd.read_csv(model_dir / "logs" / "metrics.csv")


def test_per_step_and_per_epoch_logs_match_and_have_every_step_once(runs):
    log_a, log_b = _log(runs["A"]), _log(runs["B"])
    val_a = log_a.dropna(subset=["val_pixel_error"]).set_index("epoch")["val_pixel_error"]
    val_b = log_b.dropna(subset=["val_pixel_error"]).set_index("epoch")["val_pixel_error"]
    assert list(val_b.index) == list(range(EPOCHS))  # every epoch, once
    np.testing.assert_array_equal(val_b.to_numpy(), val_a.to_numpy())
    steps_a = log_a.dropna(subset=["train_loss"])
    steps_b = log_b.dropna(subset=["train_loss"])
    assert steps_b["step"].is_unique  # the steps redone after a kill are logged once
    np.testing.assert_array_equal(steps_b["step"], steps_a["step"])
    for column in ("train_loss", "train_pca_multiview_loss_step", "patch_mask_ratio",
                   "anneal_weight", "lr-Adam/backbone", "train_aug_skipped"):
        a = log_a.dropna(subset=[column]).groupby("step")[column].first()
        b = log_b.dropna(subset=[column]).groupby("step")[column].first()
        np.testing.assert_array_equal(b.to_numpy(), a.to_numpy(), err_msg=column)
    ratios = log_b.dropna(subset=["patch_mask_ratio"])["patch_mask_ratio"]
    assert ratios.iloc[-1] > ratios.iloc[0]  # the curriculum advanced across the restarts


def test_final_metrics_are_identical(runs):
    metrics_a = pd.read_csv(runs["A"] / "metrics.csv").set_index("metric")["value"]
    metrics_b = pd.read_csv(runs["B"] / "metrics.csv").set_index("metric")["value"]
    assert list(metrics_b.index) == list(metrics_a.index)
    for name in ("validation_pixel_error_mean", "test_pixel_error_mean",
                 "untrained_pixel_error_mean"):
        assert np.isfinite(metrics_a[name]), name
    np.testing.assert_array_equal(metrics_b.to_numpy(), metrics_a.to_numpy())


# ------------------------------------------------------------- refused before writing


def _snapshot(model_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(model_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(model_dir.rglob("*")) if p.is_file()}


def _refused(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: "), err
    return lines[-1]


@pytest.fixture
def copy_of_b(runs, tmp_path) -> Path:
    return Path(shutil.copytree(runs["B"], tmp_path / "B"))


def test_resume_with_another_image_size_is_refused_and_touches_nothing(runs, copy_of_b,
                                                                      capsys):
    before = _snapshot(copy_of_b)
    line = _refused(capsys, ["train", runs["config"], *_sets(), "--set",
                             "data.image_resize_dims.height=32", "--set",
                             "data.image_resize_dims.width=32", "--resume", str(copy_of_b)])
    assert line == (f"error: --resume {copy_of_b}: the model was trained with "
                    "data.image_resize_dims (height x width) 64x64 but this config has 32x32; "
                    f"resume with the config it was trained with ({copy_of_b / 'config.yaml'})"
                    ", or train a new model with --output")
    assert _snapshot(copy_of_b) == before


def test_resume_of_a_model_of_other_keypoints_is_refused_and_touches_nothing(runs, copy_of_b,
                                                                            capsys):
    context = json.loads((copy_of_b / "context.json").read_text())
    ours = context["keypoint_names"]
    context["keypoint_names"] = ours[:3]
    (copy_of_b / "context.json").write_text(json.dumps(context))
    before = _snapshot(copy_of_b)
    line = _refused(capsys, [*runs["resume"][:-1], str(copy_of_b)])
    assert line == (f"error: --resume {copy_of_b}: the model was trained with keypoints "
                    f"{ours[:3]} but this config has {ours}; resume with the config it was "
                    f"trained with ({copy_of_b / 'config.yaml'}), or train a new model with "
                    "--output")
    assert _snapshot(copy_of_b) == before


def test_truncated_last_checkpoint_is_one_line_naming_it(runs, copy_of_b, capsys):
    last = copy_of_b / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:100_000])
    before = _snapshot(copy_of_b)
    line = _refused(capsys, [*runs["resume"][:-1], str(copy_of_b)])
    assert line == (f"error: {last}: cannot be read as a checkpoint (PytorchStreamReader "
                    "failed reading zip archive: failed finding central directory); the file "
                    "is truncated or damaged - restore it from a copy, or train a new model "
                    "with --output")
    assert _snapshot(copy_of_b) == before


def test_a_second_writer_is_told_who_holds_the_directory(runs, capsys):
    with DirectoryLock(runs["B"], "train"):
        line = _refused(capsys, runs["resume"])
    assert line.startswith(f"error: {runs['B']} is in use by mvcore train (pid {os.getpid()}")
