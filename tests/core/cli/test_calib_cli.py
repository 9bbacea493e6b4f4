"""`mvcore calib convert`: the real mouse4cam rig written by other tools, converted in-process
to one anipose TOML; user mistakes exit 2 with one `error:` line and write nothing.

`mvcore calib check`: the real mouse4cam project passes with its known numbers and writes its
reports and PNGs; broken variants of its rig (a camera turned around, two cameras 1 mm apart, a
camera moved 50 mm) exit 1 naming the camera or pair; a wrong label is listed as an outlier."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from calibration_files import matlab_camera, opencv_camera, opencv_text
from mouse4cam_rigs import (
    README_MEDIANS,
    VIEWS,
    copy_project,
    moved,
    project_into,
    truth,
    turned_around,
    with_camera,
    write_labels,
)
from PIL import Image

from mvcore.calib.plots import BLANK
from mvcore.cli.commands import calib_cmd
from mvcore.cli.main import main
from mvcore.geometry import load_calibration, save_calibration
from mvcore.geometry.calibration_formats import CALIBRATION_FORMATS


@pytest.fixture
def rig(shared_data: Path):
    return load_calibration(shared_data / "mouse4cam" / "calibration.toml")


def _assert_rig(path: Path, rig, names: list[str]) -> None:
    back = load_calibration(path)
    assert back.names == names
    np.testing.assert_array_equal(back.sizes, rig.sizes)
    np.testing.assert_array_equal(back.intrinsics, rig.intrinsics)
    np.testing.assert_allclose(back.rotations, rig.rotations, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(back.translations, rig.translations)


def test_convert_opencv_yaml_files(rig, tmp_path: Path, capsys) -> None:
    files = []
    for i, name in enumerate(rig.names):
        files.append(tmp_path / f"{name}.yml")
        files[-1].write_text(opencv_text(opencv_camera(rig, i), "yml"))
    out = tmp_path / "anipose" / "calibration.toml"  # the folder is created
    assert main(["calib", "convert", *map(str, files), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"wrote {out} (4 cameras, anipose TOML)"
    assert [line.split()[0] for line in printed[1:]] == rig.names
    assert printed[1].split()[1:] == ["1280x1024", "px", "fx", "769.9", "fy", "769.9"]
    _assert_rig(out, rig, rig.names)
    assert sorted(p.name for p in out.parent.iterdir()) == ["calibration.toml"]


def test_convert_dannce_mat_with_names_and_size(rig, tmp_path: Path, capsys) -> None:
    cells = np.empty((4, 1), dtype=object)
    for i in range(4):
        cells[i, 0] = matlab_camera(rig, i)
    mat = tmp_path / "label3d_dannce.mat"
    scipy.io.savemat(mat, {"params": cells})
    out = tmp_path / "calibration.toml"
    argv = ["calib", "convert", str(mat), "--out", str(out), "--size", "1280", "1024"]
    assert main([*argv, "--names", *rig.names]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out} (4 cameras")
    _assert_rig(out, rig, rig.names)
    assert main(argv) == 0  # Label3D's default names; the old file is replaced
    _assert_rig(out, rig, ["Camera1", "Camera2", "Camera3", "Camera4"])


def test_mistakes_exit_2_with_one_line_and_write_nothing(rig, tmp_path: Path, capsys) -> None:
    fields = opencv_camera(rig, 0)
    del fields["image_width"], fields["image_height"]
    cam = tmp_path / "back.txt"
    cam.write_text(opencv_text(fields, "yml"))
    out = tmp_path / "calibration.toml"
    for extra, expected in [
        ([], f"error: {cam}: unknown calibration file extension '.txt'"),
        (["--format", "opencv"], f"error: {cam}: no image size in the file"),
        (["--format", "opencv", "--size", "1280", "1024", "--names", "a", "b"],
         "error: --names gives 2 names for 1 cameras"),
    ]:
        assert main(["calib", "convert", str(cam), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(expected) and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.txt"]
    assert main(["calib", "convert", str(cam), "--out", str(out), "--format", "opencv",
                 "--size", "1280", "1024"]) == 0
    assert load_calibration(out).names == ["back"]


def test_calib_needs_an_action_and_knows_the_formats(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["calib"])
    assert info.value.code == 2
    assert "ACTION" in capsys.readouterr().err
    assert calib_cmd.FORMATS == tuple(CALIBRATION_FORMATS)  # kept apart so --help needs no torch


# ---------------------------------------------------------------------- mvcore calib check


def _check(root: Path, capsys, *extra: str) -> tuple[int, str, str]:
    """Exit code, stdout, and stderr with the warnings ``mvcore calib check`` printed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["calib", "check", str(root), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err + "".join(f"{w.message}\n" for w in caught)


def _camera_rows(printed: str) -> dict[str, list[float]]:
    """The per-camera table: camera -> its numbers ('-' as NaN)."""
    rows: dict[str, list[float]] = {}
    for line in printed.split("per camera pair")[0].splitlines():
        parts = line.split()
        if parts and parts[0] in VIEWS + ["mid2"]:
            rows[parts[0]] = [float("nan") if p == "-" else float(p) for p in parts[1:]]
    return rows


def _assert_png(path: Path, min_size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_size[0] and image.height >= min_size[1]
        return np.asarray(image.convert("L"), dtype=np.float64)


@pytest.fixture
def project(shared_data: Path, tmp_path: Path) -> Path:
    """mouse4cam's labels and calibration, without its images."""
    return copy_project(shared_data, tmp_path / "project")


def test_check_mouse4cam_passes_with_its_numbers_and_files(project, capsys):
    assert not list(project.rglob("*.jpg"))  # no images: the frames are drawn blank
    code, printed, err = _check(project, capsys)
    assert code == 0 and "warning" not in err
    rows = _camera_rows(printed)
    assert list(rows) == VIEWS
    for view, expected in README_MEDIANS.items():
        labelled, used, median, p95, loo_median, loo_p95 = rows[view][:6]
        assert median == pytest.approx(expected, rel=0.05)
        assert loo_median > median and loo_p95 > p95 and used == labelled
        assert rows[view][8] == 0  # nothing behind the camera
    assert "findings: none (exit 0)" in printed
    out = project / "calib_check"  # the default --out
    assert sorted(p.name for p in out.iterdir()) == [
        "report.json", "report.txt", "reprojection.png", "rig.png"]
    assert (out / "report.txt").read_text() in printed  # the printed table, as written
    data = json.loads((out / "report.json").read_text())
    assert [c["name"] for c in data["cameras"]] == VIEWS
    assert [c["median"] for c in data["cameras"]] == pytest.approx(
        [rows[v][2] for v in VIEWS], abs=0.005)
    assert data["exit_code"] == 0 and len(data["pairs"]) == 6
    _assert_png(out / "rig.png", (1000, 900))
    blank = _assert_png(out / "reprojection.png", (1000, 500))
    assert _canvas_fraction(blank) > 0.3  # the panels are blank canvases


def _canvas_fraction(png: np.ndarray) -> float:
    """Fraction of the pixels that have the grey of a blank canvas (``plots.BLANK``)."""
    return float((np.abs(png - 255 * float(BLANK)) < 1).mean())


def test_check_draws_the_projects_frames(shared_data, tmp_path, capsys):
    code, printed, _ = _check(shared_data / "mouse4cam", capsys, "--out", str(tmp_path))
    assert code == 0 and f"wrote {tmp_path / 'report.txt'}" in printed
    frames = _assert_png(tmp_path / "reprojection.png", (1000, 500))
    assert _canvas_fraction(frames) < 0.05  # the camera frames, not blank canvases
    assert not list((shared_data / "mouse4cam").glob("calib_check"))  # --out was used


def test_check_names_a_camera_turned_around(project, capsys):
    labels, points, group = truth(project)
    flipped = turned_around(group, 3)
    save_calibration(flipped, project / "calibration.toml")
    write_labels(project, "top", project_into(points, flipped, 3))  # consistent through it
    code, printed, err = _check(project, capsys)
    assert code == 1
    assert "camera 'top': 900 of 900 points lie behind it" in err
    top = _camera_rows(printed)["top"]
    assert top[8] == 900 and np.isnan(top[2:8]).all()  # no reassuring error for 'top'
    assert "camera 'top': 900 of 900 points lie behind it" in (
        project / "calib_check" / "report.txt").read_text()


def test_check_names_cameras_one_millimetre_apart(project, capsys):
    _, points, group = truth(project)
    rig = with_camera(group, "mid2", like=1, shift=1.0)
    save_calibration(rig.select(["mid", "mid2"]), project / "calibration.toml")
    noise = np.random.default_rng(0).normal(scale=0.5, size=(2, 60, 15, 2))
    write_labels(project, "mid", project_into(points, rig, 1) + noise[0])
    write_labels(project, "mid2", project_into(points, rig, 4) + noise[1])
    for view in ("back", "side", "top"):
        (project / f"CollectedData_{view}.csv").unlink()
    code, printed, err = _check(project, capsys)
    assert code == 1
    assert "cameras 'mid' and 'mid2' are near-degenerate" in err
    assert "meeting at less than 1 degree" in err
    rows = _camera_rows(printed)
    assert np.isnan(rows["mid"][2]) and np.isnan(rows["mid2"][2])  # no reassuring 0.2 px
    assert "leave-one-view-out needs >= 3 cameras" in printed


def test_check_names_a_camera_moved_50_mm(project, capsys):
    _, _, group = truth(project)
    save_calibration(moved(group, 2, np.array([50.0, 0.0, 0.0])), project / "calibration.toml")
    code, _, err = _check(project, capsys)
    assert code == 1
    assert "camera 'side' disagrees with the others" in err
    assert [c for c in VIEWS if f"camera {c!r} disagrees" in err] == ["side"]


def test_check_lists_a_label_moved_200_px(project, capsys):
    labels, _, _ = truth(project)
    labels[10, 1, 6] += (0.0, 200.0)  # mid's Trunk in row 10
    write_labels(project, "mid", labels[:, 1])
    code, printed, _ = _check(project, capsys, "--out", str(project / "elsewhere"))
    assert code == 0  # a wrong label is not a wrong calibration
    worst = printed.split("error / limit):\n")[1].splitlines()[0].split()
    assert worst[:3] == ["labeled-data/minimal_mid/img0020.jpg", "Trunk", "mid"]
    data = json.loads((project / "elsewhere" / "report.json").read_text())
    assert data["outliers"]["labels"][0]["image"] == "labeled-data/minimal_mid/img0020.jpg"


def test_check_without_calibration_is_an_input_error(project, capsys):
    (project / "calibration.toml").unlink()
    code, _, err = _check(project, capsys)
    assert code == 2 and "error:" in err and "calibration" in err
    assert not (project / "calib_check").exists()


def test_check_out_that_is_a_file_is_an_input_error(project, capsys):
    (project / "taken").write_text("")
    code, _, err = _check(project, capsys, "--out", str(project / "taken"))
    assert code == 2 and err.startswith("error: --out") and err.count("\n") == 1
