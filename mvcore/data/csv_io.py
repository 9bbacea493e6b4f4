"""DeepLabCut-style keypoint CSVs (labels and predictions) and anipose-style 3D CSVs.

Label / prediction files have three header rows (``scorer``, ``bodyparts``, ``coords``), then
one row per image (index column = image path) with ``x``, ``y`` and optionally ``visible``
(labels) or ``likelihood`` (predictions) per keypoint; an empty cell is missing (NaN). The
DeepLabCut 2.2 variant whose index is split over several leading columns
(``labeled-data,<video>,<img>.png``) is read too (joined with ``/``). Columns whose ``coords``
cell is empty (such as the ``("set", "", "")`` column of prediction files) are extra columns and
are skipped by the readers. Every error names the file, the line and the column.

The readers recognise the usual ways a file is not such a CSV and say what to do, on one line:
another delimiter (``;`` or tab, as spreadsheet programs write in some locales), a missing
scorer row, a multi-animal file (its ``individuals`` row), an unclosed quote (a cell that spans
lines), text that is not UTF-8, and numbers that are not finite (``inf``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mvcore.errors import DataError
from mvcore.files import atomic_path

__all__ = [
    "LabelTable",
    "read_keypoints_csv",
    "read_label_csv",
    "write_3d_csv",
    "write_keypoints_csv",
]

_HEADER_ROWS = 3
_KNOWN_COORDS = ("x", "y", "visible", "likelihood")
#: per-keypoint statistics of ensembles and smoothers (mvcore's ``predict`` of several models,
#: the ensemble-kalman-smoother package's outputs): read past, not returned
_STAT_COORDS = ("x_ens_mean", "y_ens_mean", "x_ens_median", "y_ens_median", "x_ens_var",
                "y_ens_var", "x_posterior_var", "y_posterior_var")
_NAN_TEXT = {"", "nan", "NaN", "NAN", "null", "None"}
#: delimiters other than ',' that a one-column header line gives away
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


@dataclass
class LabelTable:
    """One view's label CSV.

    Shapes: ``coords (n, K, 2)`` float64 with NaN = missing; ``visibility (n, K)`` int with
    0/1/2 from a ``visible`` column and -1 where that cell is empty (None without the column).
    """

    path: Path
    image_paths: list[str]
    keypoint_names: list[str]
    coords: np.ndarray
    visibility: np.ndarray | None
    scorer: str
    #: ``(n, K)`` likelihoods when the file is a prediction file, else None
    likelihood: np.ndarray | None = None
    #: extra (non-keypoint) columns by name, as strings
    extra_columns: dict[str, list[str]] = field(default_factory=dict)
    #: 1-based file line of each row (blank lines are skipped, so not always row + 4)
    lines: list[int] = field(default_factory=list)
    #: 0-based file column of each ``(keypoint, coord)`` cell
    columns: dict[tuple[str, str], int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_paths)


def show(text: str) -> str:
    """``text`` as it can stand in a one-line message: line breaks and other unprintable
    characters escaped (``\\n``), printable text unchanged."""
    return text if text.isprintable() else repr(text)[1:-1]


def _where(path: Path, line: int, column: int | None = None, what: str = "") -> str:
    """``file, line L, column C (what)`` with 1-based line/column numbers as in an editor."""
    text = f"{path}, line {line}"
    if column is not None:
        text += f", column {column + 1}"
    if what:
        text += f" ({show(what)})"
    return text


def read_csv_rows(path: Path, what: str = "CSV file") -> list[list[str]]:
    """The rows of a comma-separated UTF-8 file (a BOM is skipped); DataError for a missing
    file, text that is not UTF-8, a NUL byte, and a cell that spans lines (an unclosed
    quote). ``what`` names the file's role in the not-found message."""
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            rows: list[list[str]] = []
            start = 1  # the file line where the next row starts
            for row in reader:
                for col, cell in enumerate(row):
                    if "\n" in cell or "\r" in cell:
                        raise DataError(
                            f"{_where(path, start, col)}: a quoted cell spans several lines "
                            "(an unclosed quote?); remove the stray '\"'")
                    if "\x00" in cell:
                        raise DataError(f"{_where(path, start, col)}: a NUL byte; the file is "
                                        "damaged or not a text file")
                rows.append(row)
                start = reader.line_num + 1
            return rows
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at "
            f"position {exc.start}); save the file as UTF-8 CSV") from None
    except csv.Error as exc:
        raise DataError(f"{path}: cannot be read as a CSV file: {show(str(exc))}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def check_delimiter(path: Path, rows: list[list[str]], header_rows: int = _HEADER_ROWS) -> None:
    """A file whose ``header_rows`` header lines are one cell each, holding ';' or a tab, uses
    another delimiter: say so (the reader would otherwise find no columns)."""
    head = [row for row in rows[:header_rows] if row]
    if not head or any(len(row) > 1 for row in head):
        return
    for char, name in _OTHER_DELIMITERS.items():
        if char in head[0][0]:
            raise DataError(
                f"{path}: the file is {name}-separated ({char!r} in line 1, no ','); mvcore "
                "reads comma-separated CSV: save it with ',' as the delimiter")


def _check_header_kind(path: Path, rows: list[list[str]]) -> None:
    """Headers that are not DeepLabCut's single-animal 3 rows: a multi-animal file (an
    ``individuals`` row) or a file without its scorer row (bodyparts, then coords)."""
    firsts = [row[0].strip().lower() if row else "" for row in rows[:4]] or [""]
    if "individuals" in firsts:
        line = firsts.index("individuals") + 1
        raise DataError(
            f"{path}: line {line} is an 'individuals' row: a multi-animal DeepLabCut file; "
            "mvcore reads single-animal files (scorer, bodyparts, coords rows): export one "
            "animal per file")

    def coords_like(row: list[str]) -> bool:
        cells = [c.strip().lower() for c in row[1:] if c.strip()]
        return bool(cells) and all(c in _KNOWN_COORDS + _STAT_COORDS for c in cells)

    if firsts[0] == "scorer":
        return
    if firsts[0] == "bodyparts" or firsts[1:2] == ["coords"] or (
            len(rows) > 1 and coords_like(rows[1]) and not coords_like(rows[0])):
        raise DataError(
            f"{path}: line 1 is the bodyparts row and line 2 the coords row: the scorer row is "
            "missing; DeepLabCut CSVs start with 3 header rows (scorer, bodyparts, coords): "
            "add a line 'scorer,<name>,<name>,...' above line 1")


def _to_float(
    cells: np.ndarray, path: Path, lines: list[int], cols: list[int], names: list[str]
) -> np.ndarray:
    """Vectorised float conversion of ``(n, c)`` strings; DataError at the first bad cell."""
    stripped = np.char.strip(cells.astype(str)) if cells.size else cells.astype(str)
    missing = np.isin(stripped, list(_NAN_TEXT))
    filled = np.where(missing, "nan", stripped)
    try:
        values = filled.astype(np.float64)
    except ValueError:
        for (r, c), text in np.ndenumerate(filled):
            try:
                float(text)
            except ValueError:
                raise DataError(
                    f"{_where(path, lines[r], cols[c], names[c])}: not a number: {str(text)!r}"
                ) from None
        raise  # pragma: no cover - astype failed but every cell parses
    infinite = np.isinf(values)
    if infinite.any():
        r, c = np.argwhere(infinite)[0]
        raise DataError(f"{_where(path, lines[r], cols[c], names[c])}: not a finite number: "
                        f"{str(filled[r, c])!r}; leave the cell empty for a missing value")
    return values


@dataclass
class _Parsed:
    index: list[str]
    scorer: str
    keypoints: list[str]
    values: dict[str, np.ndarray]  # coord -> (n, K), NaN where the column is absent
    present: dict[str, list[bool]]  # coord -> per keypoint: column present
    extra: dict[str, list[str]]
    lines: list[int]  # 1-based file line of each data row
    columns: dict[tuple[str, str], int]  # (keypoint, coord) -> 0-based column


def _parse(path: str | Path) -> _Parsed:
    """Parse a DLC-style CSV into per-coordinate ``(n, K)`` arrays."""
    path = Path(path)
    rows = read_csv_rows(path)
    check_delimiter(path, rows)
    _check_header_kind(path, rows)
    if len(rows) < _HEADER_ROWS:
        raise DataError(
            f"{path}: expected 3 header rows (scorer, bodyparts, coords), found {len(rows)} rows"
        )
    scorer_row, parts_row, coords_row = rows[:_HEADER_ROWS]
    width = len(coords_row)
    for line, row in enumerate(rows[:_HEADER_ROWS], start=1):
        if len(row) != width:
            raise DataError(
                f"{_where(path, line)}: header row has {len(row)} cells, the coords row {width}"
            )
    # leading index columns: the first, plus empty header cells right after it (DLC >= 2.2)
    n_index = 1
    while n_index < width and not any(r[n_index].strip() for r in rows[:_HEADER_ROWS]):
        n_index += 1
    if width <= n_index:
        raise DataError(f"{path}: no keypoint columns after the index column")

    keypoints: list[str] = []
    columns: dict[tuple[str, str], int] = {}
    extra_cols: dict[str, int] = {}
    for col in range(n_index, width):
        part, coord = parts_row[col].strip(), coords_row[col].strip().lower()
        if not coord:
            extra_cols[scorer_row[col].strip() or part or f"column_{col + 1}"] = col
            continue
        if coord in _STAT_COORDS:
            continue
        if coord not in _KNOWN_COORDS:
            raise DataError(
                f"{_where(path, 3, col)}: unknown coords value {coords_row[col]!r}; expected one "
                f"of {list(_KNOWN_COORDS)}"
            )
        if not part:
            raise DataError(f"{_where(path, 2, col)}: empty bodyparts cell")
        if (part, coord) in columns:
            raise DataError(f"{_where(path, 2, col)}: duplicate column {part!r} {coord!r}")
        if part not in keypoints:
            keypoints.append(part)
        columns[(part, coord)] = col
    for part in keypoints:
        for coord in ("x", "y"):
            if (part, coord) not in columns:
                raise DataError(f"{path}: keypoint {part!r} has no {coord!r} column")

    data, lines = [], []
    for line, row in enumerate(rows[_HEADER_ROWS:], start=_HEADER_ROWS + 1):
        if not row or not any(cell.strip() for cell in row):
            continue  # blank line
        if len(row) != width:
            raise DataError(
                f"{_where(path, line)}: row has {len(row)} cells but the header has {width}"
            )
        data.append(row)
        lines.append(line)
    cells = np.array(data, dtype=object).reshape(len(data), width)
    index = ["/".join(c.strip() for c in r[:n_index] if c.strip()) for r in data]
    for r, name in enumerate(index):
        if not name:
            raise DataError(f"{_where(path, lines[r], 0)}: empty image path in the index column")

    values: dict[str, np.ndarray] = {}
    present: dict[str, list[bool]] = {}
    n, k = len(data), len(keypoints)
    for coord in _KNOWN_COORDS:
        have = [(p, coord) in columns for p in keypoints]
        present[coord] = have
        out = np.full((n, k), np.nan)
        idx = [columns[(p, coord)] for p, h in zip(keypoints, have) if h]
        if idx:
            names = [f"{p} {coord}" for p, h in zip(keypoints, have) if h]
            out[:, np.flatnonzero(have)] = _to_float(cells[:, idx], path, lines, idx, names)
        values[coord] = out
    extra = {name: [str(c) for c in cells[:, col]] for name, col in extra_cols.items()}
    scorer = next((c.strip() for c in scorer_row[n_index:] if c.strip()), "")
    return _Parsed(index, scorer, keypoints, values, present, extra, lines, columns)


def read_label_csv(path: str | Path) -> LabelTable:
    """Read one view's label CSV (see module docstring); DataError naming file/line/column."""
    path = Path(path)
    parsed = _parse(path)
    coords = np.stack([parsed.values["x"], parsed.values["y"]], axis=-1)
    visibility = None
    have = parsed.present["visible"]
    if any(have):
        if not all(have):
            missing = [p for p, h in zip(parsed.keypoints, have) if not h]
            raise DataError(
                f"{path}: some keypoints have a 'visible' column and others do not ({missing}); "
                "give x, y, visible for every keypoint or for none"
            )
        raw = parsed.values["visible"]
        ok = np.isnan(raw) | np.isin(raw, (0.0, 1.0, 2.0))
        if not ok.all():
            r, c = np.argwhere(~ok)[0]
            col = parsed.columns[(parsed.keypoints[c], "visible")]
            raise DataError(
                f"{_where(path, parsed.lines[r], col, parsed.keypoints[c] + ' visible')}: "
                f"visible must be 0, 1 or 2, got {raw[r, c]:g}"
            )
        visibility = np.where(np.isnan(raw), -1, raw).astype(np.int64)
    likelihood = parsed.values["likelihood"] if any(parsed.present["likelihood"]) else None
    return LabelTable(
        path=path,
        image_paths=parsed.index,
        keypoint_names=parsed.keypoints,
        coords=coords,
        visibility=visibility,
        scorer=parsed.scorer,
        likelihood=likelihood,
        extra_columns=parsed.extra,
        lines=parsed.lines,
        columns=parsed.columns,
    )


def read_keypoints_csv(
    path: str | Path,
) -> tuple[list[str], list[str], np.ndarray, np.ndarray | None]:
    """Read a prediction / label CSV -> ``(index, keypoint names, coords (n, K, 2),
    likelihood (n, K) or None)``. Extra columns (``set``) are ignored."""
    table = read_label_csv(path)
    return table.image_paths, table.keypoint_names, table.coords, table.likelihood


def _write_atomically(frame: pd.DataFrame, path: str | Path, **options: Any) -> None:
    """``frame.to_csv(path)`` through ``mvcore.files.atomic_path``: a reader (or a crash)
    never sees a half-written file."""
    with atomic_path(path) as partial:
        frame.to_csv(partial, **options)


def write_keypoints_csv(
    path: str | Path,
    index: list,
    keypoint_names: list[str],
    coords: np.ndarray,
    likelihood: np.ndarray | None = None,
    scorer: str = "mvcore",
    extra_columns: dict[str, list] | None = None,
) -> None:
    """Write a DLC-style CSV: ``coords (n, K, 2)``, optional ``likelihood (n, K)``; NaN -> empty
    cell. ``extra_columns`` (e.g. ``{"set": [...]}``) are appended as ``(name, "", "")``."""

    coords = np.asarray(coords, dtype=np.float64)
    n, k = len(index), len(keypoint_names)
    if coords.shape != (n, k, 2):
        raise ValueError(
            f"coords must be ({n}, {k}, 2) for {n} rows, {k} keypoints; got {coords.shape}"
        )
    fields = ["x", "y"]
    blocks = [coords[..., 0], coords[..., 1]]
    if likelihood is not None:
        likelihood = np.asarray(likelihood, dtype=np.float64)
        if likelihood.shape != (n, k):
            raise ValueError(f"likelihood must be ({n}, {k}), got {likelihood.shape}")
        fields.append("likelihood")
        blocks.append(likelihood)
    values = np.stack(blocks, axis=-1).reshape(n, k * len(fields))
    tuples = [(scorer, name, f) for name in keypoint_names for f in fields]
    frame = pd.DataFrame(values, index=list(index))
    for name, column in (extra_columns or {}).items():
        if len(column) != n:
            raise ValueError(f"extra column {name!r} has {len(column)} values, expected {n}")
        frame[frame.shape[1]] = list(column)
        tuples.append((name, "", ""))
    frame.columns = pd.MultiIndex.from_tuples(tuples, names=["scorer", "bodyparts", "coords"])
    _write_atomically(frame, path)


def write_3d_csv(
    path: str | Path,
    points: np.ndarray,
    errors: np.ndarray,
    ncams: np.ndarray,
    keypoint_names: list[str],
    scores: np.ndarray | None = None,
    fnum: Any = None,
) -> None:
    """Write anipose-style 3D points with anipose's whole column set, which movement's anipose
    loader reads: ``<kp>_x, _y, _z, _error, _ncams, _score`` per keypoint, then ``M_00..M_22``
    (identity: no axes transform), ``center_0..2`` (zero), ``fnum``.

    ``points (n, K, 3)`` world units, ``errors (n, K)`` px, ``ncams (n, K)`` int, ``scores
    (n, K)`` anipose's score (the lowest confidence among the views used); without scores (labels:
    every view counts fully) the score is 1.0 where ``ncams >= 2`` (a triangulated point), else
    NaN. ``fnum`` defaults to ``0 .. n-1``."""

    points = np.asarray(points, dtype=np.float64)
    n, k = points.shape[:2]
    if points.shape != (n, k, 3):
        raise ValueError(f"points must be (n, K, 3), got {points.shape}")
    if len(keypoint_names) != k:
        raise ValueError(f"{len(keypoint_names)} keypoint names for {k} keypoints")
    errors = np.asarray(errors, dtype=np.float64).reshape(n, k)
    ncams = np.asarray(ncams).reshape(n, k).astype(np.int64)
    if scores is None:
        scores = np.where(ncams >= 2, 1.0, np.nan)
    scores = np.asarray(scores, dtype=np.float64).reshape(n, k)
    data: dict[str, np.ndarray] = {}
    for j, name in enumerate(keypoint_names):
        for a, axis in enumerate("xyz"):
            data[f"{name}_{axis}"] = points[:, j, a]
        data[f"{name}_error"] = errors[:, j]
        data[f"{name}_ncams"] = ncams[:, j]
        data[f"{name}_score"] = scores[:, j]
    for i in range(3):
        for j in range(3):
            data[f"M_{i}{j}"] = np.full(n, float(i == j))
    for i in range(3):
        data[f"center_{i}"] = np.zeros(n)
    data["fnum"] = np.arange(n) if fnum is None else np.asarray(fnum)
    _write_atomically(pd.DataFrame(data), path, index=False)
