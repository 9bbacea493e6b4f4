"""`mvcore triangulate` on the real mouse4cam project: 3D CSV and per-view medians."""

import pandas as pd
import pytest

from mvcore.cli.main import main

README_MEDIANS = {"back": 8.00, "mid": 3.91, "side": 9.12, "top": 4.00}


def test_triangulate_writes_anipose_csv_and_prints_readme_medians(shared_data, tmp_path,
                                                                 capsys):
    out = tmp_path / "points_3d.csv"
    assert main(["triangulate", str(shared_data / "mouse4cam"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for view, expected in README_MEDIANS.items():
        line = next(line for line in printed.splitlines() if line.strip().startswith(view))
        assert float(line.split()[-1]) == pytest.approx(expected, rel=0.05)
    table = pd.read_csv(out)
    assert len(table) == 60
    assert {"Nose_x", "Nose_y", "Nose_z", "Nose_error", "Nose_ncams", "fnum"} <= set(table)
    assert table["TailTip_ncams"].min() >= 2  # every (frame, keypoint) is seen by >= 3 views


def test_triangulate_without_calibration_says_so(tmp_path, capsys):
    for view in ("a", "b"):
        (tmp_path / f"CollectedData_{view}.csv").write_text("")
    assert main(["triangulate", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "error:" in capsys.readouterr().err
