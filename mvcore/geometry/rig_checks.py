"""Checks of a calibration's meaning, run when it is loaded: a rig that cannot be right is a
``DataError`` naming the file, the camera and the key, never a quiet wrong answer.

Each camera's ``matrix`` must be an upper-triangular K with last row ``[0, 0, 1]`` and positive
focal lengths, and well conditioned once divided by the image size (a focal length of 1e-3 px
is not a camera; a determinant threshold would miss it); no two cameras may be copies of each
other or stand in the same place. What needs labels (points behind a camera, rays meeting at
too small an angle) is checked where points are triangulated (``mvcore.geometry.triangulation``
and ``mvcore.data.triangulate``).
"""

from __future__ import annotations

import warnings
from itertools import combinations

import numpy as np

from mvcore.errors import DataError
from mvcore.geometry.cameras import CameraGroup
from mvcore.geometry.rotations import rodrigues_to_matrix_np

__all__ = ["MAX_INTRINSICS_CONDITION", "check_cameras"]

#: Largest condition number of ``diag(1/width, 1/height, 1) @ K``: about 3 for real lenses,
#: about 50 for a 170-degree field of view, 1e6 for a focal length of 1e-3 px.
MAX_INTRINSICS_CONDITION = 1e3
# parameters equal to this relative tolerance are copies
_SAME = 1e-9


def _camera(group: CameraGroup, index: int) -> str:
    return f"[cam_{index}] {group.names[index]!r}"


def _check_matrix(group: CameraGroup, index: int, where: str) -> None:
    k = group.intrinsics[index]
    what = f"{where}: {_camera(group, index)} key 'matrix'"
    if not np.allclose(k[2], [0.0, 0.0, 1.0], rtol=0, atol=1e-12):
        if np.allclose(k[:2, 2], 0.0) and abs(k[2, 2] - 1.0) < 1e-12:
            raise DataError(
                f"{what}: looks transposed (principal point {k[2, :2].tolist()} in the last "
                "row); write it as [[fx, skew, cx], [0, fy, cy], [0, 0, 1]]")
        raise DataError(f"{what}: last row must be [0, 0, 1], got {k[2].tolist()}")
    if k[1, 0] != 0.0:
        raise DataError(f"{what}: must be upper triangular ([[fx, skew, cx], [0, fy, cy], "
                        f"[0, 0, 1]]); got {k.tolist()}")
    if k[0, 0] <= 0.0 or k[1, 1] <= 0.0:
        raise DataError(f"{what}: focal lengths must be positive, got fx={k[0, 0]}, "
                        f"fy={k[1, 1]}")
    width, height = group.sizes[index]
    scaled = np.diag([1.0 / width, 1.0 / height, 1.0]) @ k
    condition = float(np.linalg.cond(scaled))
    if not condition <= MAX_INTRINSICS_CONDITION:
        raise DataError(
            f"{what}: ill-conditioned camera (condition number {condition:.3g} for a "
            f"{width:g}x{height:g} image, fx={k[0, 0]:.6g}, fy={k[1, 1]:.6g} px; real lenses "
            f"are below {MAX_INTRINSICS_CONDITION:g}); check the focal lengths and their unit")
    cx, cy = k[0, 2], k[1, 2]
    if not (0.0 <= cx <= width and 0.0 <= cy <= height):
        warnings.warn(f"{what}: principal point ({cx:g}, {cy:g}) lies outside the "
                      f"{width:g}x{height:g} image; check the calibration", stacklevel=4)


def check_cameras(group: CameraGroup, where: str) -> None:
    """Raise DataError for a rig that cannot be right (module docstring); ``where`` names the
    calibration file in messages."""
    for index in range(group.num_views):
        _check_matrix(group, index, where)
    rotations = rodrigues_to_matrix_np(group.rotations)
    centers = -np.einsum("vji,vj->vi", rotations, group.translations)
    scale = max(float(np.abs(centers).max()), 1.0)
    for a, b in combinations(range(group.num_views), 2):
        both = f"{where}: {_camera(group, a)} and {_camera(group, b)}"
        same = [
            np.allclose(x[a], x[b], rtol=_SAME, atol=_SAME * max(1.0, float(np.abs(x).max())))
            for x in (group.intrinsics, group.distortions, rotations, group.translations)
        ]
        if all(same):
            raise DataError(f"{both} have identical matrix, distortions, rotation and "
                            "translation: one block is a copy of the other; export the "
                            "calibration again")
        distance = float(np.linalg.norm(centers[a] - centers[b]))
        if distance <= _SAME * scale:
            raise DataError(f"{both}: camera centres coincide (keys 'rotation', "
                            f"'translation'; distance {distance:.3g}): two cameras cannot "
                            "stand in one place; one pose is probably a copy")
