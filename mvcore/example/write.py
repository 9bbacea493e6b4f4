"""The example project on disk: videos, labelled images, label CSVs, calibration, ground
truth and config (``make_example_project``)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from PIL import Image

from mvcore.data.csv_io import write_keypoints_csv
from mvcore.data.videos import VideoWriter
from mvcore.example.background import render_backgrounds
from mvcore.example.render import MarkerSizes, marker_colors, render_frame
from mvcore.example.rig import make_cameras
from mvcore.example.simulate import KEYPOINT_NAMES, simulate_pose
from mvcore.geometry import project_points, save_calibration

__all__ = ["make_example_project"]


def _config(view_names: list[str], csv_files: list[str], image_size: int, backbone: str) -> dict:
    """A config for mvcore's schema that trains a small model on a CPU."""
    resize = min(128, image_size)
    return {
        "data": {
            "image_resize_dims": {"height": resize, "width": resize},
            "data_dir": ".",
            "video_dir": "videos",
            "csv_file": csv_files,
            "view_names": view_names,
            "num_keypoints": len(KEYPOINT_NAMES),
            "keypoint_names": list(KEYPOINT_NAMES),
            "downsample_factor": 2,
            "calibration_file": "calibration.toml",
        },
        "model": {
            "model_type": "heatmap_multiview_transformer",
            "backbone": backbone,
            "backbone_pretrained": False,
            "losses_to_use": [],
            "model_name": "example",
        },
        "training": {
            "imgaug": "none",
            "imgaug_3d": False,
            "train_batch_size": 8,
            "val_batch_size": 8,
            "test_batch_size": 8,
            "train_prob": 0.8,
            "val_prob": 0.1,
            "num_workers": 2,
            "unfreezing_epoch": 0,
            "min_epochs": 1,
            "max_epochs": 30,
            "check_val_every_n_epoch": 5,
            "log_every_n_steps": 5,
            "optimizer": "Adam",
            "optimizer_params": {"learning_rate": 1e-3},
            "lr_scheduler": "multisteplr",
            "lr_scheduler_params": {"multisteplr": {"milestones": [100, 200], "gamma": 0.5}},
            "patch_mask": {"final_ratio": 0.0},
            "rng_seed_data_pt": 0,
            "rng_seed_model_pt": 0,
            "accelerator": "auto",
        },
        "losses": {},
        "eval": {"predict_vids_after_training": False},
    }


def make_example_project(
    out_dir: str | Path,
    seed: int = 0,
    num_frames: int = 120,
    num_views: int = 3,
    image_size: int = 256,
    label_every: int = 2,
    fps: int = 30,
    session: str = "session0",
    drop_fraction: float = 0.05,
    backbone: str = "vit_micro_scratch",
    overwrite: bool = False,
) -> Path:
    """Write a synthetic, geometrically exact multiview project to ``out_dir``.

    An animal with 10 keypoints (``KEYPOINT_NAMES``) walks in a 400 mm box for ``num_frames``
    frames at ``fps``, filmed by ``num_views`` calibrated cameras ``cam_a, cam_b, ...``
    (``image_size`` square RGB, lens distortion). Written (Lightning Pose multiview layout):

    - ``videos/<session>_<view>.mp4``: every frame (H.264 yuv420p);
    - ``labeled-data/<session>_<view>/img<NNNN>.png``: every ``label_every``-th frame;
    - ``CollectedData_<view>.csv``: DeepLabCut 3-row header, index = image path relative to
      ``out_dir``; labels are exact projections of the 3D keypoints, a random
      ``drop_fraction`` of them is left empty, and one frame has no labels in one view;
    - ``calibration.toml`` (anipose, ``[cam_0]`` ...), ``ground_truth_3d.csv`` (``frame``,
      ``<kp>_x/_y/_z`` [mm], all frames), ``occluded.csv`` (per frame, columns ``(view, kp)``:
      1 where a nearer body part hides the keypoint's marker);
    - ``config.yaml``: a small CPU training config (``data_dir: .``).

    Deterministic from ``seed``. Raises FileExistsError if ``out_dir`` is not empty, unless
    ``overwrite``. Returns the path of ``config.yaml``.
    """
    if not 2 <= num_views <= 26:
        raise ValueError(f"num_views must be in [2, 26], got {num_views}")
    if image_size < 64 or image_size % 16:
        raise ValueError(f"image_size must be a multiple of 16 and >= 64, got {image_size}")
    if label_every < 1 or num_frames < 2 * label_every:
        raise ValueError(
            f"need label_every >= 1 and num_frames >= 2 * label_every, got {label_every}, "
            f"{num_frames}"
        )
    if not 0.0 <= drop_fraction < 0.5:
        raise ValueError(f"drop_fraction must be in [0, 0.5), got {drop_fraction}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty (pass overwrite=True to write over it)")

    rng = np.random.default_rng(seed)
    group = make_cameras(rng, num_views, image_size)
    backgrounds = render_backgrounds(rng, group, image_size)
    points = simulate_pose(rng, num_frames, fps)  # (T, K, 3)
    names = group.names
    num_kp = len(KEYPOINT_NAMES)

    cams = group.to_tensors(dtype=torch.float64)
    uv = project_points(
        torch.as_tensor(points), cams.intrinsics, cams.extrinsics, cams.distortions
    ).numpy()  # (T, V, K, 2)
    depth = np.einsum("vij,tkj->tvki", group.rotation_matrices(), points)[..., 2]
    depth = depth + group.translations[None, :, None, 2]  # (T, V, K)
    focal = group.intrinsics[:, 0, 0]
    colors = marker_colors(num_kp)
    sizes = MarkerSizes.for_image(image_size)

    out.mkdir(parents=True, exist_ok=True)
    (out / "videos").mkdir(exist_ok=True)
    label_dirs = [out / "labeled-data" / f"{session}_{name}" for name in names]
    for folder in label_dirs:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    save_calibration(group, out / "calibration.toml")

    labelled = np.arange(0, num_frames, label_every)
    occluded = np.zeros((num_frames, num_views, num_kp), dtype=bool)
    with contextlib.ExitStack() as stack:  # an error deletes the unfinished videos
        writers = [
            stack.enter_context(
                VideoWriter(out / "videos" / f"{session}_{n}.mp4", fps, image_size, image_size,
                            crf=16, threads=1)  # one thread: deterministic output
            )
            for n in names
        ]
        for t in range(num_frames):
            for v in range(num_views):
                frame, occluded[t, v] = render_frame(
                    backgrounds[v],
                    uv[t, v].astype(np.float32),
                    depth[t, v],
                    focal[v],
                    colors,
                    sizes,
                )
                writers[v].write(frame[None])
                if t % label_every == 0:
                    Image.fromarray(frame).save(
                        label_dirs[v] / f"img{t:04d}.png", compress_level=1
                    )

    # labels: exact projections; out-of-image points, a random subset and one view of one
    # frame are left empty (unlabelled)
    labels = uv[labelled].copy()  # (N, V, K, 2)
    outside = ((labels < 0) | (labels > image_size - 1)).any(-1)
    labels[outside] = np.nan
    flat = labels.reshape(-1, 2)
    drop = rng.choice(len(flat), size=int(round(drop_fraction * len(flat))), replace=False)
    flat[drop] = np.nan
    labels[rng.integers(len(labelled)), rng.integers(num_views)] = np.nan

    csv_files = []
    for v, name in enumerate(names):
        index = [f"labeled-data/{session}_{name}/img{t:04d}.png" for t in labelled]
        csv_files.append(f"CollectedData_{name}.csv")
        write_keypoints_csv(out / csv_files[-1], index, list(KEYPOINT_NAMES), labels[:, v])

    gt_columns = [f"{kp}_{c}" for kp in KEYPOINT_NAMES for c in "xyz"]
    gt = pd.DataFrame(points.reshape(num_frames, -1), columns=gt_columns)
    gt.insert(0, "frame", np.arange(num_frames))
    gt.to_csv(out / "ground_truth_3d.csv", index=False)
    occ = pd.DataFrame(
        occluded.reshape(num_frames, -1).astype(int),
        columns=pd.MultiIndex.from_product([names, list(KEYPOINT_NAMES)]),
        index=pd.RangeIndex(num_frames, name="frame"),
    )
    occ.to_csv(out / "occluded.csv")

    config_path = out / "config.yaml"
    config = _config(names, csv_files, image_size, backbone)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return config_path
