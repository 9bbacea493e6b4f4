"""The example project on disk: videos, labelled images, label CSVs, calibration, ground
truth and config (``make_example_project``)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from PIL import Image

from mvcore.data.csv_io import write_keypoints_csv
from mvcore.data.videos import VideoWriter
from mvcore.errors import DataError
from mvcore.example.background import render_backgrounds
from mvcore.example.render import SKELETON, MarkerSizes, marker_colors, render_frame
from mvcore.example.rig import make_cameras
from mvcore.example.simulate import KEYPOINT_NAMES, simulate_pose
from mvcore.files import writable_dir
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
            "skeleton": [list(edge) for edge in SKELETON],
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

    Deterministic from ``seed``. Complete or absent: the project is written into a hidden
    folder beside ``out_dir`` (``.<name>.<random>.partial``) and moved into ``out_dir`` when
    complete, so an error, Ctrl-C or kill never leaves half a project (a kill leaves only the
    hidden folder). DataError if ``out_dir`` is a file, cannot be written, or is not empty
    (unless ``overwrite``: the project's files replace those of the same name, others stay).
    Returns the path of ``config.yaml``.
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
    out = writable_dir(Path(out_dir).resolve(), "example-data DIR")
    if any(out.iterdir()) and not overwrite:
        raise DataError(f"{out} is not empty; choose a new or empty folder, or pass "
                        "--overwrite to write the example project over it")
    staging = _staging_folder(out)
    try:
        _write_project(staging, seed, num_frames, num_views, image_size, label_every, fps,
                       session, drop_fraction, backbone)
        if staging.parent == out.parent and not any(out.iterdir()):
            os.replace(staging, out)  # one rename: the whole project appears at once
        else:
            labels = staging / "labeled-data"
            _move_into(staging, out, {labels / p.name for p in labels.iterdir()})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "config.yaml"


def _staging_folder(out: Path) -> Path:
    """A new hidden folder for the project while it is written: beside ``out`` (a kill then
    leaves ``out`` as it was), inside it where the parent folder cannot be written."""
    name = f".{out.name}.{secrets.token_hex(4)}.partial"
    try:
        (out.parent / name).mkdir()
        return out.parent / name
    except OSError:
        (out / name).mkdir()
        return out / name


def _move_into(source: Path, target: Path, whole: set[Path]) -> None:
    """Move the finished project in ``source`` into the folder ``target`` entry by entry
    (renames on one file system; ``config.yaml``, the project's entry point, last), replacing
    files of the same name, merging folders, and replacing the folders in ``whole`` (the
    label image folders)."""
    for entry in sorted(source.iterdir(), key=lambda p: (p.name == "config.yaml", p.name)):
        dest = target / entry.name
        if entry.is_dir() and entry not in whole and dest.is_dir() and not dest.is_symlink():
            _move_into(entry, dest, whole)
            continue
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        os.replace(entry, dest)


def _write_project(out: Path, seed: int, num_frames: int, num_views: int, image_size: int,
                   label_every: int, fps: int, session: str, drop_fraction: float,
                   backbone: str) -> None:
    """Write the project of ``make_example_project`` into the new folder ``out``."""

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
    (out / "videos").mkdir()
    label_dirs = [out / "labeled-data" / f"{session}_{name}" for name in names]
    for folder in label_dirs:
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

    config = _config(names, csv_files, image_size, backbone)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
