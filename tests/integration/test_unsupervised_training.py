"""Unsupervised losses on unlabelled video clips batched beside the labelled frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mvcore.config.load import load_config
from mvcore.example import make_example_project
from mvcore.workflow import train

pytestmark = pytest.mark.slow


def test_unsupervised_losses_use_unlabelled_clips(tmp_path, monkeypatch):
    import mvcore.training.module as module_mod

    config_path = make_example_project(tmp_path / "ex", seed=0, num_frames=40, image_size=128)
    config = load_config(config_path, overrides=[
        "model.losses_to_use=[temporal,pca_multiview]", "training.max_steps=3",
        "training.num_workers=0", "training.check_val_every_n_epoch=1",
        "training.limit_train_batches=3", "training.train_batch_size=4",
        "training.log_every_n_steps=1", "training.unlabeled_clip_length=4",
        "data.image_resize_dims.height=64", "data.image_resize_dims.width=64",
        "eval.num_labeled_frame_plots=0",
    ])
    clips = []
    original = module_mod.MultiviewPoseModule.unlabeled_loss_inputs

    def spy(self, clip, wanted=frozenset()):
        clips.append(tuple(clip["frames"].shape))
        return original(self, clip, wanted)

    monkeypatch.setattr(module_mod.MultiviewPoseModule, "unlabeled_loss_inputs", spy)
    model_dir = train(config, output_dir=str(tmp_path / "model"))
    assert clips and all(shape == (1, 4, 3, 3, 64, 64) for shape in clips)
    log = pd.read_csv(model_dir / "logs" / "metrics.csv")
    for name in ("train_temporal_loss", "train_pca_multiview_loss", "train_unsupervised_loss"):
        # losses logged per step and per epoch get _step / _epoch columns
        columns = [c for c in log.columns if c in (name, f"{name}_step", f"{name}_epoch")]
        assert columns, f"{name} not logged; columns: {list(log.columns)}"
        values = log[columns].to_numpy(dtype=float).ravel()
        values = values[~np.isnan(values)]
        assert values.size and np.isfinite(values).all()
