"""``mvcore import-lightning-pose`` on a DINOv2 multi-view transformer that Lightning Pose
itself trained and saved (``model.backbone: vits_dinov2``).

Lightning Pose 2.4.3 runs in its own environment (``lightning_pose_roundtrip``): it builds its
``vits_dinov2`` from a random ``Dinov2Model`` stored as the hub's ``facebook/dinov2-small``
(518 px, 14-pixel patches resized to 16 by Lightning Pose, 37x37 positions that Hugging Face
resizes to the 16x16 grid of 256-pixel inputs at every forward), trains it for one epoch on the
example project and predicts a 16-frame clip of each view. mvcore imports the model directory
(positions resized once, layer scales, eps 1e-6), and both programs must compute the same
heatmaps and predict the same keypoints on the same frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from lightning_pose_roundtrip import assert_same_heatmaps, predict_clips, run_lightning_pose

from mvcore.cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    """The Lightning Pose run's folder, with mvcore's import of its model in ``mv_model``."""
    work = run_lightning_pose(tmp_path_factory.mktemp("lp_dinov2"), "vits_dinov2")
    assert main(["import-lightning-pose", str(work / "lp_model"), str(work / "mv_model")]) == 0
    return work


def test_imported_dinov2_computes_lightning_pose_heatmaps_and_keypoints(imported):
    work, out = imported, imported / "mv_model"
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["backbone"] == "vits_dinov2"
    assert config["model"]["heatmap_grid"] == "lightning_pose"
    params = config["model"]["backbone_params"]
    assert (params["embed_dim"], params["depth"], params["num_heads"]) == (384, 12, 6)
    assert params["layer_norm_eps"] == 1e-6

    # the network: the same heatmaps on the same input
    vit = assert_same_heatmaps(work, out).backbone.vit
    assert tuple(vit.pos_embed.shape) == (1, 1 + 16 * 16, 384)  # resized once, 37x37 -> 16x16
    assert vit.blocks[0].ls1.gamma.std() > 0.1  # the stored random layer scales, not all 1

    # the programs: the same keypoints on the same frames
    _, distance, bias = predict_clips(work, out, config["data"]["view_names"])
    print(f"mvcore - Lightning Pose (vits_dinov2): median {np.median(distance):.3f} px, 95th "
          f"pct {np.percentile(distance, 95):.3f} px, max {distance.max():.2f} px, mean "
          f"offset {bias}")
    assert np.median(distance) < 0.5
    assert np.abs(bias).max() < 0.3
