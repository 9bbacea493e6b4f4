"""Triangulating a project: mouse4cam reference figures, an independent numpy camera model,
and the degenerate rows (missing view, all-NaN frame, uncalibrated rows)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomllib
import torch
from PIL import Image
from shared_data import MOUSE4CAM

from mvcore.config.schema import MvConfig
from mvcore.data.csv_io import write_keypoints_csv
from mvcore.data.project import MultiviewProject
from mvcore.data.triangulate import (
    triangulate_keypoints,
    triangulate_project,
    write_triangulation_csv,
)
from mvcore.geometry import CameraGroup, project_points, save_calibration

M4C_VIEWS = ["back", "mid", "side", "top"]
# README.md of mouse4cam: DLT on undistorted points from every labelled view (OpenCV/aniposelib)
M4C_MEDIANS = {"back": 8.00, "mid": 3.91, "side": 9.12, "top": 4.00, "all": 6.17}

VIEWS = ["a", "b", "c"]
KEYPOINTS = ["nose", "ear", "tail", "paw"]
IMAGE_HW = (48, 64)


# ----------------------------------------------------------------------------- mouse4cam


@pytest.fixture(scope="module")
def mouse4cam():
    if not MOUSE4CAM.is_dir():
        pytest.skip("mouse4cam data not available")
    config = MvConfig.model_validate(
        {
            "data": {
                "data_dir": str(MOUSE4CAM),
                "csv_file": [f"CollectedData_{v}.csv" for v in M4C_VIEWS],
                "view_names": M4C_VIEWS,
            }
        }
    )
    project = MultiviewProject.from_config(config)
    return project, triangulate_project(project)


def test_mouse4cam_reprojection_errors_match_reference(mouse4cam):
    project, result = mouse4cam
    tri = result["triangulation"]
    assert tri.points.shape == (60, 15, 3)
    assert tri.view_errors.shape == (60, 4, 15) and tri.ncams.shape == (60, 15)
    for name, expected in M4C_MEDIANS.items():
        assert result["median_error_per_view"][name] == pytest.approx(expected, rel=0.05), name
    assert np.isfinite(tri.points).all()  # every (frame, keypoint) is in >= 3 views
    assert tri.ncams.min() == 3 and tri.ncams.sum() == 3290
    assert np.isfinite(tri.view_errors).sum() == 3290


def _rodrigues(r: np.ndarray) -> np.ndarray:
    theta = np.linalg.norm(r)
    if theta < 1e-12:
        return np.eye(3)
    k = r / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def _project_opencv(points: np.ndarray, cam: dict) -> np.ndarray:
    """``cv2.projectPoints`` written out: (m, 3) world -> (m, 2) pixels."""
    rot = _rodrigues(np.asarray(cam["rotation"], dtype=float))
    xc = points @ rot.T + np.asarray(cam["translation"], dtype=float)
    x, y = xc[:, 0] / xc[:, 2], xc[:, 1] / xc[:, 2]
    k1, k2, p1, p2, k3 = np.asarray(cam["distortions"], dtype=float)
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    mat = np.asarray(cam["matrix"], dtype=float)
    u = mat[0, 0] * xd + mat[0, 1] * yd + mat[0, 2]
    v = mat[1, 1] * yd + mat[1, 2]
    return np.stack([u, v], axis=-1)


def test_mouse4cam_csv_reprojected_by_an_independent_camera_model(mouse4cam, tmp_path):
    project, result = mouse4cam
    tri = result["triangulation"]
    path = tmp_path / "points3d.csv"
    write_triangulation_csv(project, tri, path)
    frame = pd.read_csv(path)
    assert frame["fnum"].tolist() == list(range(60))
    names = project.keypoint_names
    points = np.stack([frame[[f"{k}_x", f"{k}_y", f"{k}_z"]].to_numpy() for k in names], axis=1)
    np.testing.assert_allclose(points, tri.points, rtol=1e-12)
    np.testing.assert_array_equal(frame[[f"{k}_ncams" for k in names]], tri.ncams)

    with open(MOUSE4CAM / "calibration.toml", "rb") as handle:
        toml = tomllib.load(handle)
    cams = {toml[key]["name"]: toml[key] for key in toml if key.startswith("cam_")}
    labels = {v: pd.read_csv(MOUSE4CAM / f"CollectedData_{v}.csv", header=[0, 1, 2], index_col=0)
              for v in M4C_VIEWS}  # fmt: skip
    per_view = {}
    for view in M4C_VIEWS:
        observed = labels[view].to_numpy().reshape(60, 15, 2)
        projected = _project_opencv(points.reshape(-1, 3), cams[view]).reshape(60, 15, 2)
        err = np.linalg.norm(projected - observed, axis=-1)
        per_view[view] = err[np.isfinite(err)]
    for view in M4C_VIEWS:
        assert np.median(per_view[view]) == pytest.approx(
            result["median_error_per_view"][view], rel=1e-6
        )
        assert np.median(per_view[view]) == pytest.approx(M4C_MEDIANS[view], rel=0.05)
    everything = np.concatenate(list(per_view.values()))
    assert everything.size == 3290
    assert np.median(everything) == pytest.approx(M4C_MEDIANS["all"], rel=0.05)
    # the CSV error column is the mean over the views used
    errors = frame[[f"{k}_error" for k in names]].to_numpy()
    np.testing.assert_allclose(errors, np.nanmean(tri.view_errors, axis=1), rtol=1e-12)
    np.testing.assert_allclose(errors, tri.errors, rtol=1e-12)


# ----------------------------------------------------------------------------- synthetic


def _cameras() -> CameraGroup:
    v = len(VIEWS)
    h, w = IMAGE_HW
    k = np.array([[60.0, 0, (w - 1) / 2], [0, 60.0, (h - 1) / 2], [0, 0, 1]])
    return CameraGroup(
        names=VIEWS,
        sizes=np.tile([w, h], (v, 1)),
        intrinsics=np.tile(k, (v, 1, 1)),
        distortions=np.tile([-0.05, 0.01, 0.0, 0.0, 0.0], (v, 1)),
        rotations=np.stack([[0.0, a, 0.0] for a in np.linspace(-0.6, 0.6, v)]),
        translations=np.tile([0.0, 0.0, 10.0], (v, 1)),
    )


def _synthetic(root: Path, n: int = 5):
    points = np.random.default_rng(3).uniform(-1.5, 1.5, size=(n, len(KEYPOINTS), 3))
    cams = _cameras().to_tensors(dtype=torch.float64)
    kp = project_points(
        torch.as_tensor(points), cams.intrinsics, cams.extrinsics, cams.distortions
    ).numpy()
    kp[1, 0] = np.nan  # row 1: view a has no labels at all
    kp[2] = np.nan  # row 2: all-NaN frame
    kp[3, 1:, 2] = np.nan  # row 3: keypoint 2 in one view only
    for v, view in enumerate(VIEWS):
        (root / "labeled-data" / f"s_{view}").mkdir(parents=True)
        paths = [f"labeled-data/s_{view}/img{i}.png" for i in range(n)]
        for p in paths:
            Image.new("RGB", IMAGE_HW[::-1]).save(root / p)
        write_keypoints_csv(root / f"CollectedData_{view}.csv", paths, KEYPOINTS, kp[:, v])
    save_calibration(_cameras(), root / "calibration.toml")
    config = MvConfig.model_validate(
        {
            "data": {
                "data_dir": str(root),
                "csv_file": [f"CollectedData_{v}.csv" for v in VIEWS],
                "view_names": VIEWS,
            }
        }
    )
    return MultiviewProject.from_config(config), points


def test_exact_labels_triangulate_exactly_and_degenerate_rows_are_nan(tmp_path):
    project, truth = _synthetic(tmp_path)
    result = triangulate_project(project)
    tri = result["triangulation"]
    points, ncams, errors = tri.points, tri.ncams, tri.view_errors
    finite = np.isfinite(points).all(-1)
    assert finite.tolist() == [[True] * 4, [True] * 4, [False] * 4, [True, True, False, True],
                               [True] * 4]  # fmt: skip
    np.testing.assert_allclose(points[finite], truth[finite], atol=1e-7)
    assert ncams[0].tolist() == [3] * 4 and ncams[1].tolist() == [2] * 4  # 3D from b and c
    assert ncams[2].tolist() == [0] * 4 and ncams[3].tolist() == [3, 3, 0, 3]
    assert np.isnan(errors[1, 0]).all() and np.isnan(errors[2]).all()
    assert np.nanmax(errors) < 1e-6 and result["median_error_per_view"]["all"] < 1e-6


def test_uncalibrated_rows_are_nan_and_subsets_match(tmp_path):
    project, _ = _synthetic(tmp_path)
    full = triangulate_project(project)["triangulation"].points
    subset = triangulate_keypoints(project, np.array([4, 0])).points
    np.testing.assert_array_equal(subset, full[[4, 0]])
    project.calibration_index[0] = -1
    tri = triangulate_keypoints(project)
    points, errors, ncams = tri.points, tri.view_errors, tri.ncams
    assert np.isnan(points[0]).all() and np.isnan(errors[0]).all() and (ncams[0] == 0).all()
    np.testing.assert_array_equal(points[4], full[4])


def test_triangulate_command_csv_loads_in_movement(tmp_path, capsys):
    from mvcore.cli.main import main

    load_poses = pytest.importorskip("movement.io.load_poses", reason="movement is not installed")
    _, truth = _synthetic(tmp_path / "project")
    out = tmp_path / "points_3d.csv"
    assert main(["triangulate", str(tmp_path / "project"), "--out", str(out)]) == 0
    capsys.readouterr()
    ds = load_poses.from_anipose_file(out)
    position = ds.position.sel(individuals=ds.individuals[0])  # (time, space, keypoints)
    confidence = ds.confidence.sel(individuals=ds.individuals[0])  # (time, keypoints)
    for k, name in enumerate(KEYPOINTS):
        points = position.sel(keypoints=name).values  # (time, 3)
        finite = np.isfinite(points).all(-1)
        assert finite.tolist() == [True, True, False, k != 2, True]  # as the triangulation
        np.testing.assert_allclose(points[finite], truth[finite, k], atol=1e-7)
        score = confidence.sel(keypoints=name).values
        np.testing.assert_array_equal(score, np.where(finite, 1.0, np.nan))  # labels: 1 or NaN


# ------------------------------------------------------------- RANSAC and pair geometry


def _square_rig() -> CameraGroup:
    """Four cameras 10 units from the origin at 0, 90, 180 and 270 degrees, facing it."""
    angles = np.deg2rad([0.0, 90.0, 180.0, 270.0])
    return CameraGroup(
        names=["n", "e", "s", "w"],
        sizes=np.tile([640, 480], (4, 1)),
        intrinsics=np.tile([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]], (4, 1, 1)),
        distortions=np.zeros((4, 5)),
        rotations=np.stack([[0.0, a, 0.0] for a in angles]),
        translations=np.tile([0.0, 0.0, 10.0], (4, 1)),
    )


def test_ransac_leaves_out_the_view_that_disagrees():
    from mvcore.data.triangulate import triangulate_predictions, triangulate_ransac

    cams = _square_rig().to_tensors(dtype=torch.float64)
    points = np.random.default_rng(1).uniform(-1, 1, size=(5, 3, 3))
    pix = project_points(torch.as_tensor(points), cams.intrinsics, cams.extrinsics).numpy()
    pix[2, 1, 0] += 80.0  # view 'e' of frame 2, keypoint 0 is wrong
    plain = triangulate_predictions(pix, cams)
    robust, rejected = triangulate_ransac(pix, cams, inlier_px=5.0, chunk=2)
    assert rejected.sum() == 1 and rejected[2, 1, 0]
    assert robust.ncams[2, 0] == 3 and (robust.ncams.sum() == 5 * 3 * 4 - 1)
    np.testing.assert_allclose(robust.points, points, atol=1e-9)
    assert np.linalg.norm(plain.points[2, 0] - points[2, 0]) > 0.01


def test_pair_geometry_measures_ray_angles_and_flags_near_twins():
    from mvcore.data.triangulate import pair_geometry

    group = _square_rig()
    cams = group.to_tensors(dtype=torch.float64)
    pix = project_points(torch.zeros(1, 1, 3, dtype=torch.float64), cams.intrinsics,
                         cams.extrinsics).numpy()
    pairs = {p.views: p for p in pair_geometry(pix, cams, group.names)}
    assert pairs[("n", "e")].angle_deg == pytest.approx(90.0)
    assert pairs[("n", "e")].baseline == pytest.approx(10 * np.sqrt(2))
    # opposite cameras: their rays are one line, no depth
    assert pairs[("n", "s")].angle_deg == pytest.approx(180.0)
    assert pairs[("n", "s")].near_degenerate and not pairs[("n", "e")].near_degenerate
    assert pairs[("n", "s")].narrow == 1


def test_label_geometry_findings_name_a_camera_turned_around(mouse4cam):
    import dataclasses

    from mvcore.data.triangulate import label_geometry_findings
    from mvcore.geometry import matrix_to_rodrigues_np

    project, result = mouse4cam
    assert label_geometry_findings(project) == []  # the real rig is sound
    rig = project.calibrations[0]
    turned = CameraGroup(rig.names, rig.sizes, rig.intrinsics, rig.distortions,
                         rig.rotations.copy(), rig.translations.copy())
    flip = np.diag([-1.0, 1.0, -1.0])
    turned.rotations[3] = matrix_to_rodrigues_np(flip @ turned.rotation_matrices()[3])
    turned.translations[3] = flip @ turned.translations[3]
    keypoints = project.keypoints.copy()
    cams = turned.to_tensors(dtype=torch.float64)
    keypoints[:, 3] = project_points(torch.as_tensor(result["triangulation"].points),
                                     cams.intrinsics, cams.extrinsics,
                                     cams.distortions)[:, 3].numpy()
    broken = dataclasses.replace(project, calibrations=[turned], keypoints=keypoints)
    findings = label_geometry_findings(broken)
    assert findings == ["camera 'top': 900 of 900 points lie behind it, so it took no part in "
                        "them; its rotation is probably wrong (turned around?)"]


@pytest.mark.parametrize("order", [[0, 2, 1, 3], [3, 1, 2, 0]])
def test_swapped_label_files_are_named(mouse4cam, order):
    from mvcore.data.triangulate import view_order_findings

    project, _ = mouse4cam
    cams = project.row_cameras(dtype=torch.float64)
    assert view_order_findings(project.keypoints, cams, M4C_VIEWS) == []
    swapped = project.keypoints[:, order]  # the CSVs of two views given in the wrong order
    findings = view_order_findings(swapped, cams, M4C_VIEWS)
    moved = [M4C_VIEWS[i] for i in range(4) if order[i] != i]
    assert len(findings) == 1 and f"the labels of views {moved}" in findings[0]
    assert "data.view_names and data.csv_file" in findings[0]


def test_training_refuses_labels_that_fit_another_camera_order(mouse4cam):
    import dataclasses

    from mvcore.data.triangulate import label_geometry_findings
    from mvcore.errors import DataError

    project, _ = mouse4cam
    swapped = dataclasses.replace(project, keypoints=project.keypoints[:, [1, 0, 2, 3]])
    with pytest.raises(DataError, match=r"labels and calibration: the labels of views "
                                        r"\['back', 'mid'\] fit cameras \['mid', 'back'\]"):
        label_geometry_findings(swapped)
