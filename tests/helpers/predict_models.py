"""A tiny model directory for prediction tests: the test backbone (untrained), four calibrated
views and one 9-frame session of random 64x48 videos; no training, so the tests stay fast."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from fake_plugins import TinyBackbonePlugin
from videos import write_video

import mvcore.predict.model_io as model_io
from mvcore.build import build_backbone, select_backbone
from mvcore.cli.main import main
from mvcore.config.load import parse_config
from mvcore.context import Context
from mvcore.geometry import CameraGroup, save_calibration
from mvcore.plugin.components import build_components
from mvcore.plugin.manager import get_plugin_manager
from mvcore.training.module import MultiviewPoseModule

VIEWS = ["c0", "c1", "c2", "c3"]
KEYPOINTS = ["a", "b", "c"]
FRAMES = 9


def _rotvec(rot: np.ndarray) -> np.ndarray:
    """Rodrigues vector of a rotation matrix (angle in (0, pi))."""
    angle = np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1))
    axis = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    return axis / (2 * np.sin(angle)) * angle


def circle_rig(num_views: int = 4, size: tuple[int, int] = (256, 256)) -> CameraGroup:
    """Cameras on a circle 600 mm from the origin, looking at it, with distortion;
    ``size`` = (width, height) recorded in the calibration."""
    angles = np.linspace(0, 2 * np.pi, num_views, endpoint=False) + 0.3
    rotations, translations = [], []
    for a in angles:
        centre = np.array([600 * np.cos(a), 600 * np.sin(a), 300.0])
        forward = -centre / np.linalg.norm(centre)
        right = np.cross(forward, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        rot = np.stack([right, down, forward])
        rotations.append(_rotvec(rot))
        translations.append(-rot @ centre)
    k = np.array([[500.0, 0, 128], [0, 500.0, 128], [0, 0, 1]])
    return CameraGroup(names=[f"c{v}" for v in range(num_views)],
                       sizes=np.tile(size, (num_views, 1)), intrinsics=np.stack([k] * num_views),
                       distortions=np.tile([-0.1, 0.02, 0, 0, 0], (num_views, 1)),
                       rotations=np.stack(rotations), translations=np.stack(translations))


def tiny_components() -> Any:
    """The components with the test backbone registered (what ``load_components`` returns)."""
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(TinyBackbonePlugin(), name="tiny")
    return build_components(manager)


def use_tiny_components(monkeypatch: Any = None) -> None:
    """Make ``mvcore.predict.model_io`` load the test backbone (``monkeypatch``, or for good in
    a child process)."""
    components = tiny_components()
    if monkeypatch is None:
        model_io.load_components = lambda: components
    else:
        monkeypatch.setattr(model_io, "load_components", lambda: components)


def make_model_dir(root: Path) -> Path:
    """``root/model`` (config, context, untrained checkpoint) and ``root/project`` (videos
    ``s1_<view>.mp4``, ``calibration.toml``); returns the model directory. Call
    ``use_tiny_components`` before predicting with it."""
    components = tiny_components()
    data = root / "project"
    raw = {"data": {"image_resize_dims": {"height": 32, "width": 32}, "data_dir": str(data),
                    "video_dir": "videos", "view_names": VIEWS,
                    "keypoint_names": KEYPOINTS, "num_keypoints": 3},
           "model": {"model_type": "tiny_conv"},
           "training": {"imgaug": "none", "imgaug_3d": False}}
    config = parse_config(raw)
    context = Context(view_names=VIEWS, keypoint_names=KEYPOINTS, image_height=32,
                      image_width=32, has_calibration=True)
    torch.manual_seed(0)
    backbone = build_backbone(select_backbone(config, components, context), context)
    module = MultiviewPoseModule(config, backbone, context)
    out = root / "model"
    (out / "checkpoints").mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(raw))
    (out / "context.json").write_text(json.dumps(context.to_json()))
    torch.save({"state_dict": module.state_dict()}, out / "checkpoints" / "best.ckpt")
    (data / "videos").mkdir(parents=True)
    save_calibration(circle_rig(size=(64, 48)), data / "calibration.toml")
    rng = np.random.default_rng(3)
    for v in VIEWS:
        write_video(data / "videos" / f"s1_{v}.mp4",
                    (rng.random((FRAMES, 48, 64, 3)) * 255).astype(np.uint8))
    old = 1_000_000_000  # the checkpoint is older than anything written later
    os.utime(out / "checkpoints" / "best.ckpt", (old, old))
    return out


# ------------------------------------------------------------- the CLI and what it leaves
def predict_cli(model_dir: Path | str, *options: str) -> int:
    """``mvcore predict MODEL_DIR`` in-process (CPU, batches of 4, threshold 0) -> exit code."""
    return main(["predict", str(model_dir), "--batch-size", "4", "--confidence-threshold",
                 "0", "--device", "cpu", *options])


def csv_bytes(folder: Path) -> dict[str, bytes]:
    """Every CSV of ``folder`` by name -> its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}


def partial_files(folder: Path) -> list[str]:
    """Names of the temporary files under ``folder`` (what a killed writer leaves)."""
    return sorted(p.name for p in folder.rglob("*") if "partial" in p.name)


def cut_short_to_csv(kill: bool) -> Any:
    """A ``DataFrame.to_csv`` that writes a third of any 3D CSV, then stops as Ctrl-C would
    (``kill=False``: KeyboardInterrupt) or as kill -9 does (``kill=True``)."""
    real = pd.DataFrame.to_csv

    def to_csv(self: Any, path: Any = None, *args: Any, **kwargs: Any) -> Any:
        if path is not None and "_3d" in Path(path).name:
            text = real(self, None, *args, **kwargs)
            Path(path).write_text(text[: len(text) // 3])
            if kill:
                os.kill(os.getpid(), 9)
            raise KeyboardInterrupt
        return real(self, path, *args, **kwargs)

    return to_csv
