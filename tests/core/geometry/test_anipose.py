"""Anipose calibration files: loading, validation errors, round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from camera_rigs import GOOD_CAM, two_cams, write_toml
from shared_data import MOUSE4CAM

from mvcore.errors import DataError
from mvcore.geometry import CameraGroup, load_calibration, save_calibration


def test_load_good_file(tmp_path: Path) -> None:
    group = load_calibration(write_toml(tmp_path, two_cams()))
    assert group.names == ["a", "b"]
    assert group.num_views == 2
    assert group.sizes.shape == (2, 2) and group.intrinsics.shape == (2, 3, 3)
    assert group.intrinsics[0, 0, 1] == 0.5  # skew kept
    assert group.distortions.shape == (2, 5) and group.intrinsics.dtype == np.float64
    np.testing.assert_array_equal(group.translations[1], [1.0, 2.01, 30.0])


def test_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    group = CameraGroup(
        names=["left", 'we"ird\\name', "top"],
        sizes=np.array([[640, 480], [1280, 1024], [800.5, 600]]),
        intrinsics=np.array(
            [[[rng.uniform(500, 900), rng.normal(), 320.1], [0, 700.3, 240.7], [0, 0, 1]]] * 3
        ),
        distortions=rng.normal(scale=0.1, size=(3, 5)),
        rotations=rng.normal(size=(3, 3)),
        translations=rng.normal(scale=100, size=(3, 3)),
    )
    path = tmp_path / "out.toml"
    save_calibration(group, path)
    back = load_calibration(path)
    assert back.names == group.names
    for field in ("sizes", "intrinsics", "distortions", "rotations", "translations"):
        np.testing.assert_array_equal(getattr(back, field), getattr(group, field))


def test_short_distortions_are_padded(tmp_path: Path) -> None:
    text = two_cams(distortions="distortions = [ -0.1, 0.02, 0.001, 0.002,]")
    group = load_calibration(write_toml(tmp_path, text))
    np.testing.assert_array_equal(group.distortions[1], [-0.1, 0.02, 0.001, 0.002, 0.0])


@pytest.mark.parametrize(
    ("key", "line", "expect"),
    [
        ("matrix", "matrix = [ [ 1.0, 0.0, 2.0,], [ 0.0, 1.0, 3.0,],]", "3x3"),
        ("matrix", "matrix = [ [ 1.0, 0.0,], [ 0.0, 1.0, 3.0,], [0.0, 0.0, 1.0]]", "3x3"),
        (
            "matrix",
            "matrix = [ [ 0.0, 0.0, 2.0,], [ 0.0, 0.0, 3.0,], [0.0, 0.0, 1.0]]",
            "focal lengths must be positive",
        ),
        ("distortions", "distortions = [ 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,]", "1 to 5"),
        ("distortions", "distortions = []", "1 to 5"),
        ("rotation", 'rotation = [ 0.1, "x", 0.3,]', "3 finite numbers"),
        ("rotation", "rotation = [ 0.1, nan, 0.3,]", "3 finite numbers"),
        ("translation", "translation = [ 1.0, 2.0,]", "3 finite numbers"),
        ("size", "size = [ 1280, -4,]", "positive"),
        ("name", "name = 3", "string"),
        ("name", 'name = "a"', "duplicate"),
    ],
)
def test_malformed_values(tmp_path: Path, key: str, line: str, expect: str) -> None:
    path = write_toml(tmp_path, two_cams(**{key: line}))
    with pytest.raises(DataError) as info:
        load_calibration(path)
    msg = str(info.value)
    assert str(path) in msg and "[cam_1]" in msg and f"'{key}'" in msg and expect in msg


@pytest.mark.parametrize(
    "key", ["name", "size", "matrix", "distortions", "rotation", "translation"]
)
def test_missing_key(tmp_path: Path, key: str) -> None:
    path = write_toml(tmp_path, two_cams(**{key: ""}))
    with pytest.raises(DataError, match=rf"\[cam_1\] key '{key}'"):
        load_calibration(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "calibration.toml"
    with pytest.raises(DataError, match="not found") as info:
        load_calibration(path)
    assert str(path) in str(info.value)


def test_bad_toml_and_structure(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a valid TOML"):
        load_calibration(write_toml(tmp_path, "[cam_0\nname = 'a'"))
    with pytest.raises(DataError, match="no \\[cam_N\\] tables"):
        load_calibration(write_toml(tmp_path, "[metadata]\n"))
    with pytest.raises(DataError, match="cam_0"):
        load_calibration(write_toml(tmp_path, GOOD_CAM.format(i=1, name="a")))
    with pytest.raises(DataError, match="fisheye"):
        load_calibration(write_toml(tmp_path, GOOD_CAM.format(i=0, name="a") + "fisheye = true\n"))


def test_cam_order_is_numeric(tmp_path: Path) -> None:
    text = "".join(GOOD_CAM.format(i=i, name=f"v{i}") for i in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9))
    assert load_calibration(write_toml(tmp_path, text)).names == [f"v{i}" for i in range(11)]


@pytest.mark.skipif(not MOUSE4CAM.is_dir(), reason="mouse4cam data not available")
def test_load_mouse4cam() -> None:
    group = load_calibration(MOUSE4CAM / "calibration.toml")
    assert group.names == ["back", "mid", "side", "top"]
    np.testing.assert_array_equal(group.sizes, [[1280, 1024]] * 4)
    assert group.intrinsics[0, 0, 0] == 769.8864926727645
    np.testing.assert_array_equal(group.intrinsics[:, :2, 2], [[639.5, 511.5]] * 4)
    assert np.all(group.distortions[:, 1:] == 0) and np.all(group.distortions[:, 0] < -0.28)
