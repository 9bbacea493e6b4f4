"""Property tests of the project-file readers (label CSV, bbox CSV, calibration TOML): any
generated or mutated file gives a result or a one-line ``MvcoreError`` naming the file, never
another exception (a traceback for the user).

The files start valid (DeepLabCut 3-row headers with one or three index columns, anipose
TOMLs, Lightning Pose bbox CSVs) and are then mutated the way files really go wrong: rows
lost or repeated, an extra delimiter, semicolons or tabs, a byte-order mark, a multi-animal
header, a lost scorer row, a stray quote, CRLF line ends, a cut at any byte, junk text or
bytes, a value of another type. Hypothesis runs derandomized with a bounded number of
examples, so the suite is reproducible and stays fast.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from mvcore.data.bbox import read_bbox_csv
from mvcore.data.csv_io import LabelTable, read_label_csv
from mvcore.errors import MvcoreError
from mvcore.geometry import CameraGroup, load_calibration

SETTINGS = settings(derandomize=True, max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

FOLDER = Path(tempfile.mkdtemp(prefix="mvcore-readers-"))


def _outcome(read: Callable[[Path], Any], path: Path) -> Any:
    """``read(path)``, or None after an MvcoreError whose message is one line naming the file
    (any other exception fails the test with its traceback)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings are allowed; they are one line by design
        try:
            result = read(path)
        except MvcoreError as exc:
            message = str(exc)
            assert message.splitlines() == [message], f"more than one line: {message!r}"
            assert str(path) in message, f"the file is not named: {message!r}"
            _event(type(exc).__name__)
            return None
    _event("read")
    return result


def _event(name: str) -> None:
    """Count an outcome (``pytest --hypothesis-show-statistics`` shows the mix)."""
    if currently_in_test_context():
        event(name)


def _write(name: str, data: bytes) -> Path:
    path = FOLDER / name
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- mutations

_JUNK = st.sampled_from(["", ",", ";", "\t", '"', "'", "\\", "\x00", "\ufeff", "\u2028", "\x85",
                         "\r", "\n", "nan", "inf", "-1e400", "é", "🐭", "individuals", "x,y",
                         "coords", "scorer", "bodyparts", "  "])


@st.composite
def _mutated(draw: st.DrawFn, text: str) -> bytes:
    """``text`` changed by up to three of the ways files go wrong, as bytes."""
    lines = text.split("\n")
    for op in draw(st.lists(st.sampled_from([
        "delete_line", "repeat_line", "swap_lines", "extra_delimiter", "semicolons", "tabs",
        "individuals", "drop_first_line", "stray_quote", "crlf", "insert_junk", "replace_cell",
    ]), max_size=3)):
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if op == "delete_line" and lines:
            del lines[i]
        elif op == "repeat_line" and lines:
            lines.insert(i, lines[i])
        elif op == "swap_lines" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "extra_delimiter" and lines:
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + "," + lines[i][at:]
        elif op == "semicolons":
            lines = [line.replace(",", ";") for line in lines]
        elif op == "tabs":
            lines = [line.replace(",", "\t") for line in lines]
        elif op == "individuals":
            width = lines[0].count(",") if lines else 1
            lines.insert(1, "individuals" + ",mouse1" * width)
        elif op == "drop_first_line" and lines:
            del lines[0]
        elif op == "stray_quote" and lines:
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + '"' + lines[i][at:]
        elif op == "crlf":
            lines = [line + "\r" for line in lines]
        elif op == "insert_junk" and lines:
            at = draw(st.integers(0, len(lines[i])))
            junk = draw(st.one_of(_JUNK, st.text(max_size=4)))
            lines[i] = lines[i][:at] + junk + lines[i][at:]
        elif op == "replace_cell" and lines:
            cells = lines[i].split(",")
            j = draw(st.integers(0, len(cells) - 1))
            cells[j] = draw(st.one_of(_JUNK, st.text(max_size=4)))
            lines[i] = ",".join(cells)
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data  # byte-order mark (Excel)
    tail = draw(st.sampled_from(["keep", "keep", "cut", "bytes"]))
    if tail == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif tail == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=6)) + data[at:]
    return data


def _csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


# ----------------------------------------------------------------------------- label CSV

_NAME = st.text(alphabet="abcdefghij_ XY", min_size=1, max_size=6).map(str.strip).filter(bool)
_NUMBER = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
_CELL = st.one_of(
    _NUMBER.map(repr), st.just(""),
    st.sampled_from(["nan", "NaN", "null", "None", " 1.5 ", "abc", "1e400", "-0", "0x10",
                     "inf", "-inf", "1,5", "2"]),
    st.text(max_size=5),
)


@st.composite
def _label_csv(draw: st.DrawFn, cell: st.SearchStrategy[str] = _CELL
               ) -> tuple[list[list[str]], list[str], list[str], int]:
    """A DeepLabCut label CSV as rows of cells -> ``(rows, keypoints, coords, n_index)``."""
    keypoints = draw(st.lists(_NAME, min_size=1, max_size=3, unique=True))
    coords = draw(st.sampled_from([["x", "y"], ["x", "y", "likelihood"],
                                   ["x", "y", "visible"]]))
    n_index = draw(st.sampled_from([1, 3]))
    n = draw(st.integers(0, 5))
    pad = [""] * (n_index - 1)
    columns = [(k, c) for k in keypoints for c in coords]
    rows = [["scorer", *pad, *("me" for _ in columns)],
            ["bodyparts", *pad, *(k for k, _ in columns)],
            ["coords", *pad, *(c for _, c in columns)]]
    for i in range(n):
        index = ([f"labeled-data/s_v/img{i}.png"] if n_index == 1
                 else ["labeled-data", "s_v", f"img{i}.png"])
        rows.append([*index, *(draw(cell) for _ in columns)])
    return rows, keypoints, coords, n_index


@SETTINGS
@given(data=st.data())
def test_any_mutated_label_csv_reads_or_is_one_line_naming_the_file(data):
    rows, _, _, _ = data.draw(_label_csv())
    path = _write("labels.csv", data.draw(_mutated(_csv_text(rows))))
    table = _outcome(read_label_csv, path)
    if table is not None:
        assert isinstance(table, LabelTable)
        n, k = len(table), len(table.keypoint_names)
        assert table.coords.shape == (n, k, 2) and len(table.lines) == n
        assert not np.isinf(table.coords).any()  # missing is NaN, never inf


@SETTINGS
@given(text=st.text(max_size=200), raw=st.binary(max_size=200))
def test_any_text_or_bytes_as_a_label_csv(text, raw):
    for data in (text.encode("utf-8", "surrogatepass"), raw):
        _outcome(read_label_csv, _write("labels.csv", data))


_VALUE = st.one_of(_NUMBER, st.just(math.nan))


@SETTINGS
@given(data=st.data())
def test_valid_label_csvs_read_back_exactly(data):
    """Without mutation and with numbers or empty cells, the reader returns what was written
    (empty -> NaN), for one or three index columns."""
    values: list[float] = []

    def cell_of(x: float) -> str:
        values.append(x)
        return "" if math.isnan(x) else repr(x)

    rows, keypoints, coords, n_index = data.draw(_label_csv(cell=_VALUE.map(cell_of)))
    if "visible" in coords:  # visibility must be 0, 1 or 2: not what this test is about
        return
    table = read_label_csv(_write("labels.csv", _csv_text(rows).encode()))
    assert table.keypoint_names == keypoints
    assert table.image_paths == [f"labeled-data/s_v/img{i}.png" for i in range(len(table))]
    width = len(keypoints) * len(coords)
    grid = np.array(values, dtype=float).reshape(len(table), len(keypoints), len(coords))
    np.testing.assert_array_equal(table.coords, grid[..., :2])
    assert width == len(rows[0]) - n_index


# ----------------------------------------------------------------------------- bbox CSV

_INDEX = [f"labeled-data/s_v/img{i}.png" for i in range(4)]


@st.composite
def _bbox_csv(draw: st.DrawFn) -> str:
    header = draw(st.permutations(["x", "y", "h", "w"]))
    if draw(st.booleans()):
        header = [*header, draw(st.sampled_from(["score", "x", "", "H", "frame"]))]
    rows = [["", *header]]
    for name in _INDEX[: draw(st.sampled_from([len(_INDEX)] * 3 + [0, 2]))]:
        rows.append([name, *(draw(_CELL) if draw(st.integers(0, 20)) == 0 else
                             repr(draw(st.floats(-50, 500) if c in "xy" else st.floats(1, 500)))
                             for c in header)])
    return _csv_text(rows)


@SETTINGS
@given(data=st.data())
def test_any_mutated_bbox_csv_reads_or_is_one_line_naming_the_file(data):
    path = _write("bboxes.csv", data.draw(_mutated(data.draw(_bbox_csv()))))
    boxes = _outcome(lambda p: read_bbox_csv(p, _INDEX), path)
    if boxes is not None:
        assert boxes.shape == (len(_INDEX), 4) and np.isfinite(boxes).all()
        assert (boxes[:, 2:] > 0).all()


# ----------------------------------------------------------------------------- calibration

_TOML_VALUE = st.one_of(
    st.sampled_from(['"text"', "true", "[]", "[[1, 2], [3]]", "inf", "nan", "-inf", "{a = 1}",
                     "1979-05-27", "0x1F", "[1, 2, 3]", '["a", 1]', "[[0, 0, 0]]", "0", "-1",
                     "1e308", "[1e308, 1e308]", "[[1e-300, 0, 1], [0, 1e-300, 1], [0, 0, 1]]",
                     "[[800, 0, 640], [0, 800, 512], [0, 0, 1]]", "[0, 0]", '"cam_0"']),
    _NUMBER.map(repr),
    st.lists(_NUMBER.map(repr), max_size=6).map(lambda xs: "[" + ", ".join(xs) + "]"),
)


@st.composite
def _calibration_toml(draw: st.DrawFn) -> str:
    """A valid anipose TOML of 2-3 cameras on a circle, then mutated values and tables."""
    views = draw(st.integers(2, 3))
    lines = []
    for v in range(views):
        w, h = draw(st.integers(16, 4000)), draw(st.integers(16, 4000))
        f = draw(st.floats(0.3, 3.0)) * max(w, h)
        angle = 2 * math.pi * v / views + draw(st.floats(-0.3, 0.3))
        dist = draw(st.lists(st.floats(-0.3, 0.3), min_size=1, max_size=5))
        lines += [f"[cam_{v}]", f'name = "cam{v}"', f"size = [{w}, {h}]",
                  f"matrix = [[{f!r}, 0.0, {w / 2!r}], [0.0, {f!r}, {h / 2!r}], "
                  "[0.0, 0.0, 1.0]]",
                  f"distortions = [{', '.join(repr(d) for d in dist)}]",
                  f"rotation = [0.0, {angle!r}, 0.0]",
                  f"translation = [0.0, 0.0, {draw(st.floats(1.0, 100.0))!r}]", ""]
    lines += ["[metadata]", 'adjusted = false', ""]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["value", "delete", "rename", "repeat", "key"]))
        if op == "value" and " = " in lines[i]:
            lines[i] = lines[i].split(" = ")[0] + " = " + draw(_TOML_VALUE)
        elif op == "delete":
            del lines[i]
        elif op == "rename" and lines[i].startswith("["):
            lines[i] = draw(st.sampled_from(["[cam_7]", "[cam_0]", "[cam_x]", "[[cam_0]]",
                                             "[cam_01]", "[cam_٣]"]))
        elif op == "repeat":
            lines.insert(i, lines[i])
        elif op == "key":
            lines.insert(i, draw(st.sampled_from(["fisheye = true", "name = 3", "size = 1",
                                                  "cam_2 = 1", "extra = [1, 2]"])))
    return "\n".join(lines)


@SETTINGS
@given(data=st.data())
def test_any_mutated_calibration_loads_or_is_one_line_naming_the_file(data):
    text = data.draw(_calibration_toml())
    if data.draw(st.booleans()):
        raw = data.draw(_mutated(text))  # line-level damage too
    else:
        raw = text.encode()
    group = _outcome(load_calibration, _write("calibration.toml", raw))
    if group is not None:
        assert isinstance(group, CameraGroup) and group.num_views >= 1
        for values in (group.sizes, group.intrinsics, group.distortions, group.rotations,
                       group.translations):
            assert np.isfinite(values).all()


@SETTINGS
@given(text=st.text(max_size=200))
def test_any_text_as_a_calibration(text):
    _outcome(load_calibration, _write("calibration.toml", text.encode("utf-8", "surrogatepass")))


@pytest.mark.parametrize("text", [
    "a = " + "[" * 2000 + "]" * 2000,  # deeper than Python's recursion limit
    "[cam_0]\nname = 'a'\nsize = [" + ", ".join(["1"] * 10000) + "]\n",
])
def test_pathological_calibrations(text):
    _outcome(load_calibration, _write("calibration.toml", text.encode()))
