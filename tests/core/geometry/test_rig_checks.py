"""Calibration checks at load, each case built from the real mouse4cam rig: a rig that cannot
be right is a one-line DataError naming the file, the camera(s) and the key."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from shared_data import MOUSE4CAM as DATA

from mvcore.errors import DataError
from mvcore.geometry import CameraGroup, load_calibration, save_calibration

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"mouse4cam data not found at {DATA}")


def _write(tmp_path: Path, group: CameraGroup) -> Path:
    path = tmp_path / "calibration.toml"
    save_calibration(group, path)
    return path


@pytest.fixture
def rig() -> CameraGroup:
    return load_calibration(DATA / "calibration.toml")


def _load_error(tmp_path: Path, group: CameraGroup) -> str:
    path = _write(tmp_path, group)
    with pytest.raises(DataError) as info:
        load_calibration(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_real_rig_loads_without_warnings(rig: CameraGroup) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_calibration(DATA / "calibration.toml").names == rig.names


def test_copied_camera_block_names_both_cameras(tmp_path: Path, rig: CameraGroup) -> None:
    # the sleap-anipose bug: [cam_2] 'side' holds a copy of [cam_3] 'top'
    for field in ("intrinsics", "distortions", "rotations", "translations"):
        getattr(rig, field)[2] = getattr(rig, field)[3]
    message = _load_error(tmp_path, rig)
    assert "[cam_2] 'side' and [cam_3] 'top'" in message and "copy" in message


def test_coincident_centres(tmp_path: Path, rig: CameraGroup) -> None:
    rig.rotations[1] = rig.rotations[0]
    rig.translations[1] = rig.translations[0]  # same pose, own intrinsics
    message = _load_error(tmp_path, rig)
    assert "[cam_0] 'back' and [cam_1] 'mid'" in message and "centres coincide" in message


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (lambda k: k.__setitem__((2, 2), 2.0), "last row must be [0, 0, 1], got [0.0, 0.0, 2.0]"),
        (lambda k: k.__setitem__(slice(None), k.T.copy()), "looks transposed"),
        (lambda k: k.__setitem__((1, 0), 3.0), "upper triangular"),
        (lambda k: k.__setitem__((0, 0), -k[0, 0]), "focal lengths must be positive"),
        # det(K) = 1e-6 passes a determinant threshold; the condition number catches it
        (lambda k: k.__setitem__((slice(0, 2), slice(0, 2)), np.eye(2) * 1e-3),
         "ill-conditioned"),
    ],
)
def test_bad_intrinsics(tmp_path: Path, rig: CameraGroup, change, expect: str) -> None:  # noqa: ANN001
    change(rig.intrinsics[3])
    message = _load_error(tmp_path, rig)
    assert "[cam_3] 'top' key 'matrix'" in message and expect in message


def test_principal_point_outside_image_warns(tmp_path: Path, rig: CameraGroup) -> None:
    rig.intrinsics[0, 0, 2] = 2000.0
    path = _write(tmp_path, rig)
    with pytest.warns(UserWarning, match=r"\[cam_0\] 'back' key 'matrix': principal point"):
        load_calibration(path)
