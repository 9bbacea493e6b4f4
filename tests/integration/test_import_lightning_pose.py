"""``mvcore import-lightning-pose`` on a model that Lightning Pose itself trained and saved.

Lightning Pose (``lightning-pose`` 2.4.3 from PyPI) runs in its own environment
(``tests/tools/lightning_pose_env.sh`` builds it; ``.ci/run`` does so before the tests): it
trains a multi-view transformer with random ViT-S weights for one epoch on the example
project, predicts a 16-frame clip of each view and writes its network's heatmaps for a fixed
input (``lightning_pose_side.py``). mvcore imports the model directory, and both programs
must compute the same heatmaps and predict the same keypoints on the same frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning_pose_roundtrip import assert_same_heatmaps, predict_clips, run_lightning_pose

from mvcore.cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lightning_pose_run(tmp_path_factory) -> Path:
    """The folder where Lightning Pose trained and predicted (``lightning_pose_roundtrip``)."""
    return run_lightning_pose(tmp_path_factory.mktemp("lp_roundtrip"))


@pytest.fixture(scope="module")
def imported(lightning_pose_run) -> Path:
    out = lightning_pose_run / "mv_model"
    assert main(["import-lightning-pose", str(lightning_pose_run / "lp_model"), str(out)]) == 0
    return out


def test_imported_model_computes_lightning_pose_heatmaps_and_keypoints(lightning_pose_run,
                                                                      imported):
    work, out = lightning_pose_run, imported
    config = yaml.safe_load((out / "config.yaml").read_text())
    views = config["data"]["view_names"]
    assert {"config.yaml", "context.json", "imported_from.json", "plugins.json", "metrics.csv",
            *(f"predictions_{v}.csv" for v in views)} <= {p.name for p in out.iterdir()}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert main(["evaluate", str(out)]) == 0  # the labelled frames were predicted at import
    assert config["model"]["heatmap_grid"] == "lightning_pose"
    assert config["model"]["backbone_params"]["layer_norm_eps"] == 1e-12

    # the network: the same heatmaps on the same input (224-px position embeddings resized
    # to the 256-px grid as Hugging Face does at run time, q/k/v fused, eps 1e-12)
    assert_same_heatmaps(work, out)

    # the programs: the same keypoints on the same frames
    mine, distance, bias = predict_clips(work, out, views)
    assert mine.shape[2] == len(config["data"]["keypoint_names"])
    print(f"mvcore - Lightning Pose: median {np.median(distance):.3f} px, 95th pct "
          f"{np.percentile(distance, 95):.3f} px, mean offset {bias}")
    assert np.median(distance) < 0.5
    # mvcore's own heatmap grid would put every keypoint 1.5 px further right and down
    assert np.abs(bias).max() < 0.3


def test_imported_model_fine_tunes_and_resumes_lightning_pose_run(lightning_pose_run,
                                                                   imported):
    tuned = lightning_pose_run / "tuned"
    code = main(["train", str(imported / "config.yaml"), "--output", str(tuned),
                 "--set", f"model.checkpoint={imported}", "--set", "training.max_epochs=1",
                 "--set", "training.train_frames=4", "--set", "training.num_workers=0",
                 "--set", "eval.num_labeled_frame_plots=0"])
    assert code == 0
    start = torch.load(imported / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    after = torch.load(tuned / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    key = "backbone.vit.blocks.0.attn.qkv.weight"
    step = (after[key] - start[key]).abs().max()
    assert 0 < step < 1e-3  # one Adam step at lr 5e-5 from the imported weights

    # --resume continues Lightning Pose's run: its epoch count, and Adam's state (its step
    # counter goes on from Lightning Pose's instead of starting again at 1)
    before = torch.load(imported / "checkpoints" / "last.ckpt", weights_only=True)
    code = main(["train", str(imported / "config.yaml"), "--resume", str(imported),
                 "--set", "training.max_epochs=2", "--set", "training.num_workers=0",
                 "--set", "eval.num_labeled_frame_plots=0"])
    assert code == 0
    resumed = torch.load(imported / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == before["epoch"] + 1
    trained_steps = resumed["global_step"] - before["global_step"]
    assert trained_steps > 0
    adam_before = before["optimizer_states"][0]["state"][0]["step"]
    adam_after = resumed["optimizer_states"][0]["state"][0]["step"]
    assert adam_before > 0 and adam_after == adam_before + trained_steps
