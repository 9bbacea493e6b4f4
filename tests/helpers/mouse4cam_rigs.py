"""The real mouse4cam project (../shared/data/mouse4cam) and broken variants of its rig, for
the tests of the commands that check or use a calibration.

Labels are ``(F, V, K, 2)`` frame pixels in the calibration's view order (``VIEWS``); a rig is
a ``CameraGroup``. Every helper returns a new object and leaves its input unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mvcore.data.triangulate import triangulate_predictions
from mvcore.geometry import (
    CameraGroup,
    load_calibration,
    matrix_to_rodrigues_np,
    project_points,
)

VIEWS = ["back", "mid", "side", "top"]
#: per-view median reprojection error of the labels (all-view DLT), from its README
README_MEDIANS = {"back": 8.00, "mid": 3.91, "side": 9.12, "top": 4.00}
FRAMES, KEYPOINTS = 60, 15


def copy_project(shared_data: Path, root: Path) -> Path:
    """mouse4cam's label CSVs and calibration in ``root``, without its images."""
    root.mkdir(parents=True, exist_ok=True)
    for view in VIEWS:
        shutil.copy(shared_data / "mouse4cam" / f"CollectedData_{view}.csv", root)
    shutil.copy(shared_data / "mouse4cam" / "calibration.toml", root)
    return root


def read_labels(root: Path, view: str) -> pd.DataFrame:
    """The label CSV of ``view`` as a DataFrame (DLC 3-row header)."""
    return pd.read_csv(root / f"CollectedData_{view}.csv", header=[0, 1, 2], index_col=0)


def write_labels(root: Path, view: str, points: np.ndarray, like: str = "back") -> None:
    """Save ``points (F, K, 2)`` as the label CSV of ``view``, with the header and rows of
    ``like``'s CSV (image paths renamed to ``view``'s folder)."""
    frame = read_labels(root, like)
    frame.iloc[:, :] = points.reshape(len(frame), -1)
    frame.index = [i.replace(f"minimal_{like}", f"minimal_{view}") for i in frame.index]
    frame.to_csv(root / f"CollectedData_{view}.csv")


def truth(root: Path) -> tuple[np.ndarray, np.ndarray, CameraGroup]:
    """Labels ``(F, V, K, 2)`` of ``VIEWS``, their all-view 3D points ``(F, K, 3)`` and the
    rig of ``root``."""
    labels = np.stack([read_labels(root, v).to_numpy(np.float64).reshape(FRAMES, KEYPOINTS, 2)
                       for v in VIEWS], axis=1)
    group = load_calibration(root / "calibration.toml")
    points = triangulate_predictions(labels, group.to_tensors(dtype=torch.float64)).points
    return labels, points, group


def project_into(points: np.ndarray, group: CameraGroup, view: int) -> np.ndarray:
    """``points (F, K, 3)`` seen by camera ``view`` of ``group`` -> ``(F, K, 2)`` pixels."""
    cams = group.to_tensors(dtype=torch.float64)
    out = project_points(torch.as_tensor(points), cams.intrinsics, cams.extrinsics,
                         cams.distortions)
    return out[:, view].numpy()


def _copy(group: CameraGroup) -> CameraGroup:
    return CameraGroup(names=list(group.names), sizes=group.sizes.copy(),
                       intrinsics=group.intrinsics.copy(), distortions=group.distortions.copy(),
                       rotations=group.rotations.copy(), translations=group.translations.copy())


def turned_around(group: CameraGroup, view: int) -> CameraGroup:
    """Camera ``view`` rotated 180 degrees about its own y axis (it looks away)."""
    out = _copy(group)
    flip = np.diag([-1.0, 1.0, -1.0])
    out.rotations[view] = matrix_to_rodrigues_np(flip @ group.rotation_matrices()[view])
    out.translations[view] = flip @ group.translations[view]
    return out


def moved(group: CameraGroup, view: int, shift: np.ndarray) -> CameraGroup:
    """Camera ``view`` moved by ``-shift`` in its own axes (``t + shift``; world units)."""
    out = _copy(group)
    out.translations[view] = group.translations[view] + np.asarray(shift, dtype=np.float64)
    return out


def rolled(group: CameraGroup, view: int, degrees: float) -> CameraGroup:
    """Camera ``view`` turned by ``degrees`` about its optical axis (its centre stays)."""
    out = _copy(group)
    a = np.deg2rad(degrees)
    roll = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0, 0, 1.0]])
    out.rotations[view] = matrix_to_rodrigues_np(roll @ group.rotation_matrices()[view])
    out.translations[view] = roll @ group.translations[view]
    return out


def with_camera(group: CameraGroup, name: str, like: int, shift: float = 0.0) -> CameraGroup:
    """``group`` plus a camera ``name``: a copy of camera ``like`` moved ``shift`` world units
    along its own x axis."""
    translation = group.translations[like] - np.array([shift, 0.0, 0.0])
    return CameraGroup(
        names=group.names + [name],
        sizes=np.concatenate([group.sizes, group.sizes[like:like + 1]]),
        intrinsics=np.concatenate([group.intrinsics, group.intrinsics[like:like + 1]]),
        distortions=np.concatenate([group.distortions, group.distortions[like:like + 1]]),
        rotations=np.concatenate([group.rotations, group.rotations[like:like + 1]]),
        translations=np.concatenate([group.translations, translation[None]]),
    )
