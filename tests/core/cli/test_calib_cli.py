"""`mvcore calib convert`: the real mouse4cam rig written by other tools, converted in-process
to one anipose TOML; user mistakes exit 2 with one `error:` line and write nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from calibration_files import matlab_camera, opencv_camera, opencv_text

from mvcore.cli.commands import calib_cmd
from mvcore.cli.main import main
from mvcore.geometry import load_calibration
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
