"""`mvcore triangulate` on the real mouse4cam project and on broken variants of its rig.

Every broken case of issue 14's table is built here from mouse4cam, in a project folder that
holds labels and calibration but no images: the command either fails with a message naming the
problem, or warns naming it and leaves the points it cannot trust empty. None may print a small
reprojection error for garbage.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mouse4cam_rigs import (
    README_MEDIANS,
    VIEWS,
    copy_project,
    project_into,
    read_labels,
    truth,
    with_camera,
    write_labels,
)

from mvcore.cli.main import main
from mvcore.data.triangulate import triangulate_predictions
from mvcore.geometry import (
    matrix_to_rodrigues_np,
    save_calibration,
)


def _view_rows(printed: str) -> dict[str, list[str]]:
    """The per-view table of the command's output: view -> its columns."""
    rows = {}
    for line in printed.splitlines():
        parts = line.split()
        if parts and parts[0] in VIEWS + ["mid2"]:
            rows[parts[0]] = parts[1:]
    return rows


@pytest.fixture
def project(shared_data: Path, tmp_path: Path) -> Path:
    """mouse4cam's labels and calibration, without its images."""
    return copy_project(shared_data, tmp_path / "project")


def _run(root: Path, capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, str, str]:
    """Exit code, stdout, and stderr with the warnings the command printed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["triangulate", str(root), "--out", str(root / "out.csv"), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err + "".join(f"{w.message}\n" for w in caught)


def test_triangulate_writes_anipose_csv_and_prints_readme_medians(project, capsys):
    # the project has no images: triangulation needs only labels and calibration
    assert not list(project.rglob("*.jpg"))
    code, printed, _ = _run(project, capsys)
    assert code == 0
    rows = _view_rows(printed)
    for view, expected in README_MEDIANS.items():
        assert float(rows[view][0]) == pytest.approx(expected, rel=0.05)
        assert rows[view][-1] == "0"  # nothing behind any camera
    table = pd.read_csv(project / "out.csv")
    assert len(table) == 60
    assert {"Nose_x", "Nose_y", "Nose_z", "Nose_error", "Nose_ncams", "fnum"} <= set(table)
    assert table["TailTip_ncams"].min() >= 2  # every (frame, keypoint) is seen by >= 3 views


def test_triangulate_without_calibration_says_so(tmp_path, capsys):
    for view in ("a", "b"):
        (tmp_path / f"CollectedData_{view}.csv").write_text("")
    assert main(["triangulate", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "error:" in capsys.readouterr().err


# ------------------------------------------------------------------------ broken rigs


def test_camera_turned_around_is_left_out_and_named(project, capsys):
    labels, points, group = truth(project)
    flip = np.diag([-1.0, 1.0, -1.0])
    group.rotations[3] = matrix_to_rodrigues_np(flip @ group.rotation_matrices()[3])
    group.translations[3] = flip @ group.translations[3]
    save_calibration(group, project / "calibration.toml")
    # 'top' 2D consistent through the turned camera: the plain DLT fitted it at 0.00 px
    write_labels(project, "top", project_into(points, group, 3), like="top")
    code, printed, err = _run(project, capsys)
    assert code == 0
    assert "camera 'top': 900 of 900 points lie behind it" in err
    top = _view_rows(printed)["top"]
    assert top[0] == "-" and top[1] == "0" and top[-1] == "900"  # no error printed for it
    table = pd.read_csv(project / "out.csv")
    rig = group.select(VIEWS[:3]).to_tensors(dtype=torch.float64)
    three = triangulate_predictions(labels[:, :3], rig)
    got = table[[f"Nose_{a}" for a in "xyz"]].to_numpy()
    np.testing.assert_allclose(got, three.points[:, 0], atol=1e-6)
    assert (table["Nose_ncams"] == 3).all()



def test_two_identical_cameras_are_refused(project, capsys):
    _, _, group = truth(project)
    save_calibration(with_camera(group, "mid2", like=1), project / "calibration.toml")
    shutil.copy(project / "CollectedData_mid.csv", project / "CollectedData_mid2.csv")
    code, _, err = _run(project, capsys)
    assert code == 2 and not (project / "out.csv").exists()
    assert "[cam_1] 'mid' and [cam_4] 'mid2'" in err and "copy" in err


def test_cameras_one_millimetre_apart_give_no_points(project, capsys):
    _, points, group = truth(project)
    rig = with_camera(group, "mid2", like=1, shift=1.0)
    save_calibration(rig.select(["mid", "mid2"]), project / "calibration.toml")
    noise = np.random.default_rng(0).normal(scale=0.5, size=(2, 60, 15, 2))
    write_labels(project, "mid", project_into(points, rig, 1) + noise[0], like="mid")
    write_labels(project, "mid2", project_into(points, rig, 4) + noise[1], like="mid")
    for view in ("back", "side", "top"):
        (project / f"CollectedData_{view}.csv").unlink()
    code, printed, err = _run(project, capsys)
    assert code == 0
    assert "cameras 'mid' and 'mid2' are near-degenerate" in err
    assert "meeting at less than 1 degree" in err
    assert "0 of 900 points triangulated" in printed  # was 900 points up to 927 m away
    rows = _view_rows(printed)
    assert rows["mid"][0] == "-" and rows["mid2"][0] == "-"  # no reassuring 0.16 px
    assert pd.read_csv(project / "out.csv")["Nose_x"].isna().all()


def test_copied_camera_block_is_refused(project, capsys):
    # the public sleap-anipose file: [cam_2] 'side' holds a copy of [cam_3] 'top'
    _, _, group = truth(project)
    for field in ("intrinsics", "distortions", "rotations", "translations"):
        getattr(group, field)[2] = getattr(group, field)[3]
    save_calibration(group, project / "calibration.toml")
    code, _, err = _run(project, capsys)
    assert code == 2 and "[cam_2] 'side' and [cam_3] 'top'" in err


def test_labelled_view_without_camera_is_an_error(project, capsys):
    _, _, group = truth(project)
    save_calibration(group.select(["back", "mid", "top"]), project / "calibration.toml")
    code, _, err = _run(project, capsys)
    assert code == 2 and "missing ['side']" in err  # its labels were silently dropped


@pytest.mark.parametrize(
    ("edit", "expect"),
    [
        (lambda k: k.__setitem__((slice(0, 2), slice(0, 2)), np.eye(2) * 1e-3),
         "ill-conditioned"),
        (lambda k: k.__setitem__((2, 2), 2.0), "last row must be [0, 0, 1]"),
    ],
)
def test_impossible_intrinsics_are_refused(project, capsys, edit, expect):
    _, _, group = truth(project)
    edit(group.intrinsics[3])
    save_calibration(group, project / "calibration.toml")
    code, _, err = _run(project, capsys)
    assert code == 2 and "[cam_3] 'top' key 'matrix'" in err and expect in err


# ------------------------------------------------------------------ prediction CSVs


def _prediction_files(project: Path, labels: np.ndarray, likelihood: np.ndarray) -> list[str]:
    """Write ``labels (F, V, K, 2)`` as mvcore predict's ``minimal_<view>.csv`` files."""
    from mvcore.data.csv_io import write_keypoints_csv

    names = list(read_labels(project, "top").columns.get_level_values(1)[::2])
    paths = []
    for v, view in enumerate(VIEWS):
        path = project / "predictions" / f"minimal_{view}.csv"
        write_keypoints_csv(path, list(range(60)), names, labels[:, v], likelihood[:, v])
        paths.append(str(path))
    return paths


def test_prediction_csvs_with_threshold_and_ransac(project, capsys):
    labels, points, group = truth(project)
    likelihood = np.full(labels.shape[:-1], 0.9)
    likelihood[:, 0, 0] = 0.2  # back's Nose below threshold in every frame
    wrong = labels.copy()
    wrong[:10, 1, 1] += 150.0  # mid's Ear_R off by 150 px in 10 frames
    files = _prediction_files(project, wrong, likelihood)
    out = project / "pred_3d.csv"
    args = ["triangulate", "--predictions", *files, "--calibration",
            str(project / "calibration.toml"), "--out", str(out)]
    assert main(args) == 0
    plain = pd.read_csv(out)
    assert (plain["Nose_ncams"] <= 3).all() and (plain["Nose_score"] == 0.9).all()
    capsys.readouterr()
    assert main(args + ["--ransac", "30"]) == 0
    printed = capsys.readouterr().out
    robust = pd.read_csv(out)
    assert int(_view_rows(printed)["mid"][3]) >= 10  # the 10 wrong points were left out
    expected = points[:10, 1]
    moved = lambda t: np.linalg.norm(  # noqa: E731
        t[[f"Ear_R_{a}" for a in "xyz"]].to_numpy()[:10] - expected, axis=1)
    assert moved(robust).max() < 5.0 < moved(plain).min()  # mm
    assert list(robust["fnum"]) == list(range(60))


def test_prediction_file_of_a_view_without_camera(project, capsys):
    labels, _, group = truth(project)
    files = _prediction_files(project, labels, np.ones(labels.shape[:-1]))
    save_calibration(group.select(["back", "mid", "top"]), project / "calibration.toml")
    code = main(["triangulate", "--predictions", *files, "--calibration",
                 str(project / "calibration.toml"), "--out", str(project / "x.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "minimal_side.csv" in err and "no camera of the calibration" in err


def test_label_files_of_two_views_swapped_are_named(project, capsys):
    (project / "CollectedData_mid.csv").rename(project / "mid.tmp")
    (project / "CollectedData_side.csv").rename(project / "CollectedData_mid.csv")
    (project / "mid.tmp").rename(project / "CollectedData_side.csv")
    code, _, err = _run(project, capsys)
    assert code == 2 and not (project / "out.csv").exists()  # no garbage 3D written
    assert "the labels of views ['mid', 'side'] fit cameras ['side', 'mid']" in err
