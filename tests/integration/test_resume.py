"""Resuming a killed run (`mvcore train --resume MODEL_DIR`) ends where an uninterrupted run
ends: same weights, optimiser and LR-schedule state, same per-epoch validation error, and one
log with every epoch.

Run A trains N epochs. Run B is killed mid-epoch (a KeyboardInterrupt in the middle of epoch
K, Ctrl+C as Lightning sees it; Lightning shuts down without a checkpoint), then resumed from
its last.ckpt with the same config. Patch masking (a step-based curriculum), loss annealing
and backbone unfreezing are on, so their state must survive the restart too.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import mvcore.training.fit as fit_module
from mvcore.config.load import load_config
from mvcore.example import make_example_project
from mvcore.workflow import train

pytestmark = pytest.mark.slow

EPOCHS, KILL_EPOCH, KILL_BATCH = 4, 2, 1


def _overrides() -> list[str]:
    return [
        f"training.max_epochs={EPOCHS}", "training.min_epochs=1", "training.num_workers=0",
        "training.check_val_every_n_epoch=1", "training.train_batch_size=8",
        "training.log_every_n_steps=1", "eval.num_labeled_frame_plots=0",
        "training.unfreezing_epoch=1",
        "training.patch_mask.init_epoch=0", f"training.patch_mask.final_epoch={EPOCHS}",
        "training.patch_mask.final_ratio=0.5",
        "model.losses_to_use=[supervised_pairwise_projections]",
        "losses.supervised_pairwise_projections.log_weight=2.0",
        "callbacks.anneal_weight.freeze_until_epoch=0",
        "callbacks.anneal_weight.increase_factor=0.25",
    ]


class _KillMidEpoch(fit_module.StepsPerEpoch):
    """StepsPerEpoch that presses Ctrl+C after batch KILL_BATCH of epoch KILL_EPOCH."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == KILL_EPOCH and batch_idx == KILL_BATCH:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("resume")
    config_path = make_example_project(root / "proj", seed=0, num_frames=48, image_size=64,
                                       label_every=1)
    run_a = train(load_config(config_path, _overrides()), output_dir=str(root / "A"))

    handler = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after a Ctrl+C
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(fit_module, "StepsPerEpoch", _KillMidEpoch)
        try:
            with pytest.raises(SystemExit):
                train(load_config(config_path, _overrides()), output_dir=str(root / "B"))
        finally:
            signal.signal(signal.SIGINT, handler)
    killed = torch.load(root / "B" / "checkpoints" / "last.ckpt", map_location="cpu",
                        weights_only=True)
    run_b = train(load_config(config_path, _overrides()), resume=str(root / "B"))
    return run_a, run_b, killed


def test_last_checkpoint_is_the_last_finished_epoch(runs):
    _, _, killed = runs
    # killed during epoch KILL_EPOCH: last.ckpt must hold the end of the epoch before it
    # (not the best epoch, which is what Lightning's save_last=True keeps)
    assert killed["epoch"] == KILL_EPOCH - 1
    assert _state(runs[0])["epoch"] == EPOCHS - 1  # uninterrupted run: its final epoch


def _state(path: Path) -> dict:
    return torch.load(path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def test_resumed_run_ends_with_the_same_weights_optimiser_and_schedule(runs):
    run_a, run_b, _ = runs
    a, b = _state(run_a), _state(run_b)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    opt_a, opt_b = a["optimizer_states"][0], b["optimizer_states"][0]
    assert [g["lr"] for g in opt_a["param_groups"]] == [g["lr"] for g in opt_b["param_groups"]]
    for index, state in opt_a["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(opt_b["state"][index][name], state[name], rtol=1e-5,
                                       atol=1e-8)
    assert a["lr_schedulers"] == b["lr_schedulers"]


def _log(model_dir: Path) -> pd.DataFrame:
    return pd.read_csv(model_dir / "logs" / "metrics.csv")


def test_per_epoch_metrics_match_and_the_log_has_every_epoch(runs):
    run_a, run_b, _ = runs
    log_a, log_b = _log(run_a), _log(run_b)
    val_a = log_a.dropna(subset=["val_pixel_error"]).set_index("epoch")["val_pixel_error"]
    val_b = log_b.dropna(subset=["val_pixel_error"]).set_index("epoch")["val_pixel_error"]
    assert list(val_b.index) == list(range(EPOCHS))  # every epoch, once
    np.testing.assert_allclose(val_b.to_numpy(), val_a.to_numpy(), rtol=1e-5)
    steps_a = log_a.dropna(subset=["train_loss"])
    steps_b = log_b.dropna(subset=["train_loss"])
    assert steps_b["step"].is_unique  # the steps redone after the kill are logged once
    np.testing.assert_array_equal(steps_b["step"], steps_a["step"])
    for column in ("train_loss", "patch_mask_ratio", "anneal_weight", "lr-Adam/backbone"):
        a = log_a.dropna(subset=[column]).groupby("step")[column].first()
        b = log_b.dropna(subset=[column]).groupby("step")[column].first()
        np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-5, err_msg=column)
    ratios = log_b.dropna(subset=["patch_mask_ratio"])["patch_mask_ratio"]
    assert ratios.iloc[-1] > ratios.iloc[0]  # the curriculum advanced across the restart


def test_final_metrics_match(runs):
    run_a, run_b, _ = runs
    metrics_a = pd.read_csv(run_a / "metrics.csv").set_index("metric")["value"]
    metrics_b = pd.read_csv(run_b / "metrics.csv").set_index("metric")["value"]
    assert list(metrics_b.index) == list(metrics_a.index)
    for name in ("validation_pixel_error_mean", "test_pixel_error_mean",
                 "test_fraction_triangulated", "untrained_pixel_error_mean"):
        assert name in metrics_a.index
    for name, value in metrics_a.items():
        assert metrics_b[name] == pytest.approx(value, rel=1e-5, nan_ok=True), name
