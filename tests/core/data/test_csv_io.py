"""DLC-style label / prediction CSVs and anipose 3D CSVs: round trips and located errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shared_data import MOUSE4CAM

from mvcore.data.csv_io import (
    read_keypoints_csv,
    read_label_csv,
    write_3d_csv,
    write_keypoints_csv,
)
from mvcore.errors import DataError

HEADER = "scorer,me,me,me,me\nbodyparts,nose,nose,tail,tail\ncoords,x,y,x,y\n"


def _write(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.skipif(not MOUSE4CAM.is_dir(), reason="mouse4cam data not available")
def test_reads_mouse4cam_labels():
    table = read_label_csv(MOUSE4CAM / "CollectedData_back.csv")
    assert table.coords.shape == (60, 15, 2) and table.coords.dtype == np.float64
    assert table.keypoint_names[:3] == ["Nose", "Ear_R", "Ear_L"]
    assert table.image_paths[0] == "labeled-data/minimal_back/img0000.jpg"
    assert table.scorer == "sleap_proofread" and table.visibility is None
    assert np.isnan(table.coords[..., 0]).sum() == 194
    assert table.coords[0, 0].tolist() == [804.300537109375, 535.9925537109375]


def test_empty_cells_are_nan_and_an_all_nan_first_row_is_kept(tmp_path):
    path = _write(tmp_path, HEADER + "img0.png,,,,\nimg1.png,1.5,2,,4\n")
    table = read_label_csv(path)
    assert table.image_paths == ["img0.png", "img1.png"]
    assert np.isnan(table.coords[0]).all()
    np.testing.assert_array_equal(table.coords[1], [[1.5, 2.0], [np.nan, 4.0]])


def test_non_numeric_cell_names_file_line_and_column(tmp_path):
    path = _write(tmp_path, HEADER + "img0.png,1,2,3,4\nimg1.png,1,2,oops,4\n")
    with pytest.raises(DataError) as info:
        read_label_csv(path)
    message = str(info.value)
    assert str(path) in message and "line 5" in message and "column 4" in message
    assert "tail x" in message and "oops" in message


def test_visible_column(tmp_path):
    header = (
        "scorer,me,me,me,me,me,me\n"
        "bodyparts,nose,nose,nose,tail,tail,tail\n"
        "coords,x,y,visible,x,y,visible\n"
    )
    table = read_label_csv(_write(tmp_path, header + "a.png,1,2,2,,,0\nb.png,1,2,,3,4,1\n"))
    np.testing.assert_array_equal(table.visibility, [[2, 0], [-1, 1]])
    bad = _write(tmp_path, header + "a.png,1,2,2,,,0\nb.png,1,2,7,3,4,1\n", "bad.csv")
    with pytest.raises(DataError, match=r"bad\.csv, line 5, column 4 \(nose visible\).*0, 1 or 2"):
        read_label_csv(bad)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("scorer,me\nbodyparts,nose\n", "3 header rows"),
        ("scorer,me,me\nbodyparts,nose,nose\ncoords,x,z\n", "unknown coords"),
        ("scorer,me\nbodyparts,nose\ncoords,x\n", "no 'y' column"),
        (HEADER + "img0.png,1,2,3\n", "line 4: row has 4 cells"),
        (HEADER + ",1,2,3,4\n", "empty image path"),
    ],
)
def test_malformed_files_raise_located_errors(tmp_path, text, pattern):
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match=pattern) as info:
        read_label_csv(path)
    assert str(path) in str(info.value)


MULTI_ANIMAL = ("scorer,me,me,me,me\nindividuals,m1,m1,m2,m2\nbodyparts,nose,nose,nose,nose\n"
                "coords,x,y,x,y\nimg0.png,1,2,3,4\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # another delimiter (a spreadsheet in a locale with decimal commas)
        (HEADER.replace(",", ";") + "img0.png;1,5;2;3;4\n",
         "the file is semicolon-separated (';' in line 1, no ','); mvcore reads "
         "comma-separated CSV: save it with ',' as the delimiter"),
        (HEADER.replace(",", "\t") + "img0.png\t1\t2\t3\t4\n", "the file is tab-separated"),
        # DeepLabCut's multi-animal header (it used to say "unknown coords value 'nose'")
        (MULTI_ANIMAL, "line 2 is an 'individuals' row: a multi-animal DeepLabCut file; mvcore "
                       "reads single-animal files (scorer, bodyparts, coords rows): export one "
                       "animal per file"),
        # the scorer row left out (it used to say "unknown coords value '1'")
        ("bodyparts,nose,nose,tail,tail\ncoords,x,y,x,y\nimg0.png,1,2,3,4\n",
         "line 1 is the bodyparts row and line 2 the coords row: the scorer row is missing; "
         "DeepLabCut CSVs start with 3 header rows (scorer, bodyparts, coords): add a line "
         "'scorer,<name>,<name>,...' above line 1"),
        (HEADER + 'img0.png,1,2,"3,4\nimg1.png,1,2,3,4\n',
         "line 4, column 4: a quoted cell spans several lines (an unclosed quote?)"),
        (HEADER + "img0.png,1,inf,3,4\n",
         "line 4, column 3 (nose y): not a finite number: 'inf'; leave the cell empty"),
        (HEADER + "img0.png,1,2,-Infinity,4\n", "column 4 (tail x): not a finite number"),
    ],
)
def test_common_mistakes_are_one_line_saying_what_to_do(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as info:
        read_label_csv(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(str(path)) and expected in message


def test_text_that_is_not_utf8_or_has_a_nul_byte(tmp_path):
    path = tmp_path / "utf16.csv"
    path.write_bytes((HEADER + "img0.png,1,2,3,4\n").encode("utf-16"))
    with pytest.raises(DataError, match=r"utf16\.csv: not UTF-8 text \(byte b'\\xff' at "
                                        r"position 0\); save the file as UTF-8 CSV"):
        read_label_csv(path)
    path = _write(tmp_path, HEADER + "img0.png,1,2,3,4\x00\n", "nul.csv")
    with pytest.raises(DataError, match=r"nul\.csv, line 4, column 5: a NUL byte; the file is "
                                        "damaged or not a text file"):
        read_label_csv(path)


def test_a_byte_order_mark_and_blank_lines_are_fine_and_lines_are_file_lines(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(("\ufeff" + HEADER + "img0.png,1,2,3,4\n\nimg1.png,5,6,,\n").encode())
    table = read_label_csv(path)
    assert table.image_paths == ["img0.png", "img1.png"] and table.scorer == "me"
    assert table.lines == [4, 6]  # the blank line 5 is skipped, not renumbered
    assert table.columns[("tail", "y")] == 4


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_label_csv(tmp_path / "nope.csv")


def test_dlc_multi_column_index(tmp_path):
    text = (
        "scorer,,,me,me\nbodyparts,,,nose,nose\ncoords,,,x,y\nlabeled-data,vid1,img001.png,1,2\n"
    )
    table = read_label_csv(_write(tmp_path, text))
    assert table.image_paths == ["labeled-data/vid1/img001.png"]
    assert table.coords.tolist() == [[[1.0, 2.0]]]


def test_prediction_round_trip_with_likelihood_and_set_column(tmp_path):
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 500, (4, 3, 2))
    coords[1, 2] = np.nan
    likelihood = rng.uniform(0, 1, (4, 3))
    index = [f"labeled-data/s_v/img{i}.png" for i in range(4)]
    path = tmp_path / "sub" / "predictions.csv"
    write_keypoints_csv(
        path,
        index,
        ["a", "b", "c"],
        coords,
        likelihood,
        scorer="heatmap_multiview_transformer_tracker",
        extra_columns={"set": ["train", "validation", "test", "unused"]},
    )
    got_index, names, got, got_lik = read_keypoints_csv(path)
    assert got_index == index and names == ["a", "b", "c"]
    np.testing.assert_array_equal(got, coords)  # bit-exact (repr floats), NaN kept
    np.testing.assert_array_equal(got_lik, likelihood)
    frame = pd.read_csv(path, header=[0, 1, 2], index_col=0)
    assert frame.shape == (4, 10)
    assert frame.columns[0] == ("heatmap_multiview_transformer_tracker", "a", "x")
    assert frame.iloc[:, -1].tolist() == ["train", "validation", "test", "unused"]
    assert path.read_text().splitlines()[4].split(",")[7] == ""  # NaN -> empty cell
    table = read_label_csv(path)
    assert table.extra_columns["set"][1] == "validation"


def test_write_3d_csv_anipose_columns(tmp_path):
    points = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)
    errors = np.array([[0.5, np.nan], [1.0, 2.0]])
    ncams = np.array([[3, 0], [2, 2]])
    path = tmp_path / "points3d.csv"
    write_3d_csv(path, points, errors, ncams, ["nose", "tail"], fnum=[10, 11])
    frame = pd.read_csv(path)
    assert list(frame.columns) == [
        "nose_x", "nose_y", "nose_z", "nose_error", "nose_ncams", "nose_score",
        "tail_x", "tail_y", "tail_z", "tail_error", "tail_ncams", "tail_score",
        "M_00", "M_01", "M_02", "M_10", "M_11", "M_12", "M_20", "M_21", "M_22",
        "center_0", "center_1", "center_2", "fnum",
    ]  # fmt: skip
    assert frame["tail_z"].tolist() == [5.0, 11.0]
    assert np.isnan(frame["tail_error"][0]) and frame["nose_ncams"].tolist() == [3, 2]
    assert frame["fnum"].tolist() == [10, 11]
    # without scores: 1 where a point was triangulated (>= 2 views), else empty
    assert frame["nose_score"].tolist() == [1.0, 1.0]
    assert np.isnan(frame["tail_score"][0]) and frame["tail_score"][1] == 1.0
    np.testing.assert_array_equal(frame[[f"M_{i}{j}" for i in range(3) for j in range(3)]],
                                  np.tile(np.eye(3).ravel(), (2, 1)))
    assert (frame[["center_0", "center_1", "center_2"]] == 0.0).all().all()


def test_write_3d_csv_scores_and_default_fnum(tmp_path):
    points = np.zeros((3, 1, 3))
    scores = np.array([[0.25], [np.nan], [0.75]])
    path = tmp_path / "points3d.csv"
    write_3d_csv(path, points, np.zeros((3, 1)), np.array([[2], [0], [4]]), ["nose"],
                 scores=scores)
    frame = pd.read_csv(path)
    np.testing.assert_array_equal(frame["nose_score"], scores[:, 0])
    assert frame["fnum"].tolist() == [0, 1, 2]
    text = path.read_text().splitlines()
    assert text[2].split(",")[5] == ""  # NaN -> empty cell
    with pytest.raises(ValueError, match="1 keypoint names for 2 keypoints"):
        write_3d_csv(path, np.zeros((3, 2, 3)), np.zeros((3, 2)), np.zeros((3, 2)), ["nose"])
