"""mvcore.calib.check on the real mouse4cam rig and on broken variants of it: the numbers of
``mvcore calib check``, its outlier rule and its findings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from mouse4cam_rigs import README_MEDIANS, VIEWS, moved, project_into, rolled
from shared_data import SHARED_DATA

from mvcore.calib.check import (
    DISAGREE_RATIO,
    OUTLIER_MIN_PX,
    CalibrationCheck,
    CameraCheck,
    check_labels,
    check_project,
    leave_one_view_out,
    write_reports,
)
from mvcore.data.project import MultiviewProject, project_from_folder
from mvcore.data.triangulate import triangulate_predictions
from mvcore.geometry import CameraGroup


@pytest.fixture(scope="module")
def project() -> MultiviewProject:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return project_from_folder(SHARED_DATA / "mouse4cam")


@pytest.fixture(scope="module")
def checked(project: MultiviewProject) -> CalibrationCheck:
    return check_project(project)


def _check(project: MultiviewProject, labels: np.ndarray | None = None,
           group: CameraGroup | None = None):
    """``check_labels`` of the project with other labels ``(F, V, K, 2)`` or another rig."""
    rig = project.calibrations[0] if group is None else group
    return check_labels(project.keypoints if labels is None else labels,
                        rig.to_tensors(dtype=torch.float64), project.view_names,
                        project.keypoint_names, project.image_paths)


def test_mouse4cam_numbers_and_no_findings(checked):
    check = checked
    assert check.findings == [] and check.exit_code == 0
    assert [c.name for c in check.cameras] == VIEWS
    for camera in check.cameras:
        assert camera.median == pytest.approx(README_MEDIANS[camera.name], rel=0.05)
        assert camera.p95 > camera.median
        # the other views cannot reach a view's label as closely as a solve it takes part in
        assert camera.loo_median > camera.median and camera.loo_p95 > camera.p95
        assert camera.used == camera.labelled == camera.loo_points  # every point has 3 views
        assert camera.behind == 0 and camera.rest_ratio < DISAGREE_RATIO
    assert [c.labelled for c in check.cameras] == [706, 900, 784, 900]  # README's counts
    assert len(check.pairs) == 6
    for pair in check.pairs:
        assert not pair.geometry.near_degenerate and pair.geometry.narrow == 0
        assert 0 < pair.median < pair.p95
    assert np.isfinite(check.points).all()


def test_leave_one_view_out_is_triangulating_the_other_views(project):
    labels = project.keypoints
    rig = project.calibrations[0]
    loo = leave_one_view_out(labels, rig.to_tensors(dtype=torch.float64))
    for v, name in enumerate(VIEWS):
        others = [n for n in VIEWS if n != name]
        solved = triangulate_predictions(labels[:, [VIEWS.index(n) for n in others]],
                                         rig.select(others).to_tensors(dtype=torch.float64))
        expected = np.linalg.norm(project_into(solved.points, rig, v) - labels[:, v], axis=-1)
        np.testing.assert_allclose(loo.errors[:, v], expected, rtol=1e-9, atol=1e-9)
        # the rest errors are that solve's reprojection errors; the view left out has none
        np.testing.assert_allclose(np.delete(loo.rest[:, v], v, axis=1), solved.view_errors,
                                   rtol=1e-9, atol=1e-9)
        assert np.isnan(loo.rest[:, v, v]).all()


def test_noise_free_labels_have_no_error_and_no_outliers(project, checked):
    rig = project.calibrations[0]
    points = checked.points
    exact = np.stack([project_into(points, rig, v) for v in range(4)], axis=1)
    check = _check(project, exact)
    assert max(c.loo_median for c in check.cameras) < 1e-6
    assert check.outliers == [] and check.findings == []


MOVED_LABELS = [("back", "Nose", (200.0, 0.0)), ("mid", "Trunk", (0.0, 200.0)),
                ("side", "Tail_0", (-141.0, 141.0)), ("top", "Head", (200.0, 0.0))]


def test_labels_moved_200_px_are_named_as_outliers(project):
    # one label moved in each view, all in row 10 (different keypoints: independent solves)
    labels = project.keypoints.copy()
    for view, keypoint, shift in MOVED_LABELS:
        labels[10, VIEWS.index(view), project.keypoint_names.index(keypoint)] += shift
    check = _check(project, labels)
    worst = check.outliers[:len(MOVED_LABELS)]  # the moved labels are the worst ones
    assert {(o.row, o.keypoint, o.view, o.image) for o in worst} == {
        (10, keypoint, view, f"labeled-data/minimal_{view}/img0020.jpg")
        for view, keypoint, _ in MOVED_LABELS}
    assert all(o.error > 150 and o.limit >= OUTLIER_MIN_PX for o in worst)
    for view, keypoint, _ in MOVED_LABELS:
        # the other views of that frame and keypoint are not blamed for it
        assert [o.view for o in check.outliers if (o.row, o.keypoint) == (10, keypoint)] == [
            view]
    assert check.exit_code == 0  # a wrong label is not a wrong calibration


@pytest.mark.parametrize(("broken", "name"), [
    (lambda g: moved(g, 2, np.array([50.0, 0.0, 0.0])), "side"),  # 50 mm sideways
    (lambda g: rolled(g, 0, 5.0), "back"),  # turned 5 degrees about its optical axis
], ids=["side-moved-50mm", "back-rolled-5deg"])
def test_a_wrong_camera_disagrees_with_the_others(project, broken, name):
    check = _check(project, group=broken(project.calibrations[0]))
    assert check.exit_code == 1
    assert [c.name for c in check.cameras if c.disagrees] == [name]
    assert any(f.startswith(f"camera {name!r} disagrees with the others") for f in check.findings)
    camera = check.cameras[VIEWS.index(name)]
    assert camera.rest_ratio >= DISAGREE_RATIO and camera.loo_median > 20


def test_disagreement_needs_both_the_ratio_and_the_pixels():
    def camera(rest_with: float, rest_without: float) -> CameraCheck:
        return CameraCheck("a", 10, 10, 1.0, 2.0, 10, 1.0, 2.0, rest_with, rest_without, 0, 0)

    assert camera(9.0, 2.0).disagrees
    assert not camera(5.0, 2.0).disagrees  # 2.5x
    assert not camera(1.2, 0.3).disagrees  # 4x but under a pixel: noise
    assert not camera(math.nan, math.nan).disagrees  # nothing to compare


def test_reports_are_written_and_json_has_every_number(checked, tmp_path):
    check = checked
    txt, js = write_reports(check, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.json", "report.txt"]
    data = json.loads(js.read_text())
    assert data["exit_code"] == 0 and data["findings"] == []
    assert [c["name"] for c in data["cameras"]] == VIEWS
    assert data["cameras"][1]["median"] == pytest.approx(check.cameras[1].median)
    assert data["outliers"]["count"] == len(data["outliers"]["labels"]) == len(check.outliers)
    assert data["pairs"][0]["views"] == ["back", "mid"]
    assert "mid" in txt.read_text().splitlines()[5]
