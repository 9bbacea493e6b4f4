"""The import round trip against Lightning Pose itself, shared by the tests of each backbone.

Lightning Pose (``lightning-pose`` 2.4.3 from PyPI) runs in its own environment
(``tests/tools/lightning_pose_env.sh`` builds it; ``MVCORE_LP_PYTHON`` names its interpreter):
``run_lightning_pose`` writes the example project, a 16-frame clip of each view and a fixed
input, and runs ``tests/integration/lightning_pose_side.py`` there, which trains, saves and
predicts with a Lightning Pose multi-view transformer of the given backbone.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from videos import write_video

from mvcore.cli.main import main
from mvcore.example import make_example_project
from mvcore.predict.model_io import load_model

#: the interpreter of Lightning Pose's test environment
LP_PYTHON = Path(os.environ.get(
    "MVCORE_LP_PYTHON",
    Path.home() / ".cache" / "mvcore-tests" / "lightning-pose-2.4.3" / "bin" / "python"))
SIDE = Path(__file__).parents[1] / "integration" / "lightning_pose_side.py"
CLIP_FRAMES = 16
#: side of the square model input Lightning Pose trains at (``lightning_pose_side.lp_config``)
IMAGE_SIZE = 256


def clip(video: Path, out: Path) -> None:
    """The first ``CLIP_FRAMES`` frames of ``video`` as a new video ``out``."""
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in
                  zip(range(CLIP_FRAMES), container.decode(video=0), strict=False)]
    write_video(out, np.stack(frames))


def xy(csv: Path) -> np.ndarray:
    """``(T, K, 2)`` x, y of a DeepLabCut-format prediction CSV."""
    table = pd.read_csv(csv, header=[0, 1, 2], index_col=0)
    coords = table.columns.get_level_values(2)
    x = table.loc[:, coords == "x"].to_numpy(float)
    y = table.loc[:, coords == "y"].to_numpy(float)
    return np.stack([x, y], axis=-1)


def run_lightning_pose(work: Path, backbone: str = "vits_dino") -> Path:
    """``work`` after Lightning Pose trained and predicted there (``lightning_pose_side.py``):
    ``project/``, ``clips/clip_<view>.mp4``, ``input.pt`` ``(2, V, 3, 256, 256)``,
    ``lp_model/``, ``lp_heatmaps.pt`` ``(2, V*K, 64, 64)`` and ``lp_preds/``. Skips the test
    when Lightning Pose's environment is not built."""
    if not LP_PYTHON.is_file():
        pytest.skip(f"Lightning Pose's test environment is not built ({LP_PYTHON}); build it "
                    "with: bash tests/tools/lightning_pose_env.sh")
    config = make_example_project(work / "project", seed=0, num_frames=40)
    views = yaml.safe_load(config.read_text())["data"]["view_names"]
    for view in views:
        clip(work / "project" / "videos" / f"session0_{view}.mp4",
             work / "clips" / f"clip_{view}.mp4")
    generator = torch.Generator().manual_seed(0)
    torch.save(torch.randn(2, len(views), 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
               work / "input.pt")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run([str(LP_PYTHON), str(SIDE), str(work), backbone], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return work


def keypoint_differences(work: Path, predictions: Path, views: list[str]
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mvcore (V, T, K, 2), distance (V, T, K), mean offset (2,))`` of mvcore's prediction
    CSVs in ``predictions`` against Lightning Pose's in ``work/lp_preds``, in frame pixels."""
    mine = np.stack([xy(predictions / f"clip_{v}.csv") for v in views])
    lp = np.stack([xy(work / "lp_preds" / f"clip_{v}.csv") for v in views])
    assert mine.shape == lp.shape and mine.shape[:2] == (len(views), CLIP_FRAMES)
    distance = np.linalg.norm(mine - lp, axis=-1)
    return mine, distance, (mine - lp).reshape(-1, 2).mean(axis=0)


def assert_same_heatmaps(work: Path, model_dir: Path) -> torch.nn.Module:
    """The imported network of ``model_dir`` computes Lightning Pose's heatmaps on
    ``input.pt`` (peaked maps, rtol 1e-3); returns the loaded module for further checks."""
    module, _ = load_model(model_dir, device="cpu")
    images = torch.load(work / "input.pt")
    with torch.no_grad():
        ours = module(images)  # (B, V, K, h, w)
    theirs = torch.load(work / "lp_heatmaps.pt").reshape(ours.shape)
    assert ours.amax(dim=(-2, -1)).median() > 0.05  # peaked maps, not near-uniform ones
    print(f"heatmaps: largest difference {(ours - theirs).abs().max():.3g} "
          f"(largest value {theirs.max():.3g})")
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=2e-6)
    return module


def predict_clips(work: Path, model_dir: Path, views: list[str]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``mvcore predict`` of the clips into ``work/mv_preds``, then ``keypoint_differences``;
    the keypoints must move (not one constant point)."""
    assert main(["predict", str(model_dir), "--videos", str(work / "clips"),
                 "--out", str(work / "mv_preds")]) == 0
    mine, distance, bias = keypoint_differences(work, work / "mv_preds", views)
    assert mine.std(axis=(1, 2)).min() > 5
    return mine, distance, bias
