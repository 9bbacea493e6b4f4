"""Evaluate a model's labelled-frame predictions against the project labels (``mvcore evaluate``).

Inputs: the model directory's ``predictions_<view>.csv`` (written by ``mvcore train``; index =
labelled image path, x / y / likelihood in labelled-image pixels, ``set`` column) or any
prediction CSVs in that format, one per view. Rows are matched to the project's label rows by
image path; labelled-image pixels are mapped to frame pixels through the project's bboxes.

Metrics, per split (the ``set`` column: train / validation / test / unused; ``all``):

- pixel error: Euclidean distance (frame px) per keypoint and view, over points that have
  both a label and a prediction;
- PCK: the fraction of labelled points whose prediction lies within 5, 10 and 20 px, and
  within 5 % of the bbox diagonal (``PCK@0.05diag``; the bbox is the whole frame when the
  project has no bbox CSVs); a missing prediction counts as a miss;
- prediction reprojection error (``docs/metrics.md``): predictions triangulated per row with
  the row's calibration by ``mvcore.data.triangulate.triangulate_predictions``, as
  ``mvcore predict`` and the training report do, reprojected into the views used (px);
- 3D error (world units, mm in the example) where a ground-truth file exists
  (``ground_truth_3d.csv``: ``frame`` + ``<kp>_x/_y/_z``): labelled rows are matched to
  frames by the number at the end of the image file name (``img0042.png`` -> frame 42). The
  triangulated labels get the same metric as a reference floor.

Written to ``MODEL_DIR/eval/`` (or ``out_dir``): ``pixel_error.csv``, ``pck.csv``,
``prediction_reprojection_error.csv``, ``error_3d.csv`` (with ground truth) and
``summary.csv`` (metric, value), deleted first and written last: a folder without it holds
no finished evaluation. Each file is written under a temporary name and renamed
when complete (``mvcore.files.atomic_path``), the folder is locked while they are written (a
second writer gets a ``BusyError``), and a table of an earlier evaluation that this one does
not produce is removed, so the folder always holds one evaluation.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import torch

from mvcore.data.bbox import model_to_frame
from mvcore.data.csv_io import read_label_csv
from mvcore.data.project import MultiviewProject
from mvcore.data.sessions import resolve_data_dir
from mvcore.data.triangulate import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    triangulate_keypoints,
    triangulate_predictions,
)
from mvcore.errors import DataError
from mvcore.files import DirectoryLock, atomic_path, writable_dir
from mvcore.predict.model_io import load_model_config

__all__ = [
    "PCK_FRACTION",
    "PCK_THRESHOLDS_PX",
    "EvaluationResult",
    "compute_evaluation",
    "evaluate_model",
    "frame_numbers",
    "load_predictions",
    "pck",
    "read_ground_truth_3d",
]

#: PCK thresholds in frame pixels
PCK_THRESHOLDS_PX = (5.0, 10.0, 20.0)
#: PCK threshold as a fraction of the bbox diagonal
PCK_FRACTION = 0.05
_FRAME_NUMBER = re.compile(r"(\d+)$")
_SPLITS = ("train", "validation", "test", "unused", "all")


@dataclass
class EvaluationResult:
    """All tables of one evaluation (pandas DataFrames) and the summary ``{metric: value}``."""

    pixel_error: Any
    pck: Any
    reprojection_error: Any | None
    error_3d: Any | None
    summary: dict[str, float] = field(default_factory=dict)
    main_split: str = "all"
    written: list[Path] = field(default_factory=list)


# -------------------------------------------------------------------------------- inputs
def _norm(path: str) -> str:
    return path.replace("\\", "/").strip()


def load_predictions(project: Any, csv_files: list[Path]
                     ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read one prediction CSV per view and align it with the project rows.

    Returns ``keypoints (n, V, K, 2)`` frame px and ``confidences (n, V, K)`` (NaN for rows
    not predicted) and the split name of every project row (``"all"`` without a ``set``
    column, ``"unpredicted"`` for rows no file covers)."""

    n, v_count, k = len(project), project.num_views, project.num_keypoints
    if len(csv_files) != v_count:
        raise DataError(f"give one prediction CSV per view ({project.view_names}), got "
                        f"{len(csv_files)}: {[str(p) for p in csv_files]}")
    coords = np.full((n, v_count, k, 2), np.nan)
    conf = np.full((n, v_count, k), np.nan)
    splits = np.full(n, "unpredicted", dtype=object)
    names = project.keypoint_names
    for v, path in enumerate(csv_files):
        table = read_label_csv(path)
        if sorted(table.keypoint_names) != sorted(names):
            raise DataError(f"{path}: keypoints {table.keypoint_names} differ from the "
                            f"project's {names}")
        order = [table.keypoint_names.index(name) for name in names]
        row_of = {_norm(p[v]): r for r, p in enumerate(project.image_paths)}
        rows = np.array([row_of.get(_norm(p), -1) for p in table.image_paths], dtype=np.int64)
        unknown = int((rows < 0).sum())
        if unknown:
            first = table.image_paths[int(np.flatnonzero(rows < 0)[0])]
            warnings.warn(f"{path}: {unknown} row(s) are not labelled images of view "
                          f"{project.view_names[v]!r} in the project (first: {first}); "
                          "ignored", stacklevel=2)
        keep = rows >= 0
        coords[rows[keep], v] = table.coords[keep][:, order]
        if table.likelihood is not None:
            conf[rows[keep], v] = table.likelihood[keep][:, order]
        sets = table.extra_columns.get("set")
        labels = np.asarray(sets, dtype=object)[keep] if sets is not None else "all"
        splits[rows[keep]] = np.where(splits[rows[keep]] == "unpredicted", labels,
                                      splits[rows[keep]])
    frame = model_to_frame(coords, project.bboxes, project.image_sizes)
    return frame, conf, [str(s) for s in splits]


def frame_numbers(image_paths: list[str]) -> np.ndarray:
    """Frame index from the number at the end of each file stem (``img0042.png`` -> 42;
    -1 where the stem does not end in digits)."""
    out = []
    for path in image_paths:
        match = _FRAME_NUMBER.search(PurePosixPath(_norm(path)).stem)
        out.append(int(match.group(1)) if match else -1)
    return np.asarray(out, dtype=np.int64)


def read_ground_truth_3d(path: Path, keypoint_names: list[str]) -> dict[int, np.ndarray]:
    """``frame -> (K, 3)`` from a CSV with a ``frame`` column and ``<kp>_x/_y/_z`` columns."""

    table = pd.read_csv(path)
    columns = [f"{kp}_{axis}" for kp in keypoint_names for axis in "xyz"]
    missing = [c for c in ["frame", *columns] if c not in table.columns]
    if missing:
        raise DataError(f"{path}: ground-truth 3D file lacks columns {missing[:6]}")
    values = table[columns].to_numpy(np.float64).reshape(len(table), len(keypoint_names), 3)
    return {int(f): values[i] for i, f in enumerate(table["frame"].to_numpy())}


# ------------------------------------------------------------------------------- metrics
def pck(errors: np.ndarray, labelled: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of labelled points within the threshold.

    ``errors (...)`` px (NaN = no prediction -> miss), ``labelled (...)`` bool, ``thresholds``
    broadcastable to ``errors``. NaN when nothing is labelled."""
    hit = labelled & np.isfinite(errors) & (np.nan_to_num(errors, nan=np.inf) <= thresholds)
    count = labelled.sum()
    return float(hit.sum() / count) if count else float("nan")


def _stats(values: np.ndarray) -> tuple[int, float, float]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0, float("nan"), float("nan")
    return int(finite.size), float(finite.mean()), float(np.median(finite))


def _split_masks(splits: list[str]) -> dict[str, np.ndarray]:
    names = np.asarray(splits, dtype=object)
    masks = {s: names == s for s in _SPLITS[:-1] if (names == s).any()}
    masks["all"] = names != "unpredicted"
    return masks


def _pixel_table(errors: np.ndarray, masks: dict[str, np.ndarray], views: list[str],
                 keypoints: list[str]) -> Any:
    """Long table: split, view, keypoint (``all`` aggregates), n, mean, median (px)."""

    rows = []
    for split, mask in masks.items():
        chosen = errors[mask]  # (m, V, K)
        for v, view in enumerate([*views, "all"]):
            per_view = chosen if view == "all" else chosen[:, v : v + 1]
            for j, kp in enumerate([*keypoints, "all"]):
                values = per_view if kp == "all" else per_view[..., j]
                rows.append((split, view, kp, *_stats(values)))
    return pd.DataFrame(rows, columns=["split", "view", "keypoint", "n", "mean", "median"])


def _pck_table(errors: np.ndarray, labelled: np.ndarray, diagonals: np.ndarray,
               masks: dict[str, np.ndarray], views: list[str]) -> Any:
    """Long table: split, view (``all``), threshold, n labelled, pck."""

    rows = []
    thresholds = [(f"{t:g}px", np.float64(t)) for t in PCK_THRESHOLDS_PX]
    for split, mask in masks.items():
        for v, view in enumerate([*views, "all"]):
            sel = slice(None) if view == "all" else slice(v, v + 1)
            err, lab = errors[mask][:, sel], labelled[mask][:, sel]
            diag = diagonals[mask][:, sel]  # (m, V', K)
            for name, value in [*thresholds, (f"{PCK_FRACTION:g}diag", PCK_FRACTION * diag)]:
                rows.append((split, view, name, int(lab.sum()), pck(err, lab, value)))
    return pd.DataFrame(rows, columns=["split", "view", "threshold", "n", "pck"])


def _reprojection_table(view_errors: np.ndarray, ncams: np.ndarray, behind: np.ndarray,
                        calibrated: np.ndarray, masks: dict[str, np.ndarray],
                        views: list[str]) -> Any:
    """split, view (``all``), n, mean, median (px), the fraction of points triangulated and
    the points the view saw from behind (left out of their triangulation)."""

    rows = []
    for split, mask in masks.items():
        sel = mask & calibrated
        if not sel.any():
            continue
        coverage = float((ncams[sel] >= 2).mean())
        for v, view in enumerate([*views, "all"]):
            values = view_errors[sel] if view == "all" else view_errors[sel][:, v]
            seen = behind[sel] if view == "all" else behind[sel][:, v]
            rows.append((split, view, *_stats(values), coverage, int(seen.sum())))
    return pd.DataFrame(rows, columns=["split", "view", "n", "mean", "median",
                                       "fraction_triangulated", "behind_camera"])


def _error_3d_table(pred: np.ndarray, labels: np.ndarray, truth: np.ndarray,
                    masks: dict[str, np.ndarray], keypoints: list[str]) -> Any:
    """split, source (``prediction`` / ``labels``), keypoint (``all``), n, mean, median."""

    rows = []
    for source, points in (("prediction", pred), ("labels", labels)):
        dist = np.linalg.norm(points - truth, axis=-1)  # (n, K)
        for split, mask in masks.items():
            for j, kp in enumerate([*keypoints, "all"]):
                values = dist[mask] if kp == "all" else dist[mask][:, j]
                rows.append((split, source, kp, *_stats(values)))
    return pd.DataFrame(rows, columns=["split", "source", "keypoint", "n", "mean", "median"])


# ------------------------------------------------------------------------------ top level
def evaluate_model(model_dir: str | Path, csv_files: list[str | Path] | None = None,
                   ground_truth_3d: str | Path | None = None,
                   confidence_threshold: float | None = None,
                   out_dir: str | Path | None = None) -> EvaluationResult:
    """Compute every metric (module docstring) and write the CSVs to ``out_dir``
    (default ``MODEL_DIR/eval``)."""
    result = compute_evaluation(model_dir, csv_files, ground_truth_3d, confidence_threshold)
    out = writable_dir(out_dir if out_dir is not None else Path(model_dir) / "eval",
                       "--out" if out_dir is not None else "evaluation folder")
    tables = {"pixel_error": result.pixel_error, "pck": result.pck,
              "prediction_reprojection_error": result.reprojection_error,
              "error_3d": result.error_3d,
              "summary": pd.DataFrame({"metric": list(result.summary),
                                       "value": list(result.summary.values())})}
    with DirectoryLock(out, "evaluate"):
        # summary.csv is written last: without it the folder holds no finished evaluation
        (out / "summary.csv").unlink(missing_ok=True)
        for name, table in tables.items():
            path = out / f"{name}.csv"
            if table is None:
                path.unlink(missing_ok=True)  # an earlier evaluation's: not this one's
                continue
            with atomic_path(path) as partial:
                table.to_csv(partial, index=False)
            result.written.append(path)
    return result


def compute_evaluation(model_dir: str | Path, csv_files: list[str | Path] | None = None,
                       ground_truth_3d: str | Path | None = None,
                       confidence_threshold: float | None = None) -> EvaluationResult:
    """Every metric of ``evaluate_model``, written nowhere (the HTML report shows them)."""
    model_dir = Path(model_dir)
    config = load_model_config(model_dir)
    project = MultiviewProject.from_config(config)
    views, keypoints = list(project.view_names), list(project.keypoint_names)
    if csv_files:
        files = [Path(p) for p in csv_files]
    else:
        files = [model_dir / f"predictions_{v}.csv" for v in views]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise DataError(f"{model_dir}: no labelled-frame predictions {missing}; run "
                            "`mvcore train` to the end or pass --csv (one file per view)")
    pred, conf, splits = load_predictions(project, files)
    masks = _split_masks(splits)
    labels = project.keypoints
    labelled = np.isfinite(labels).all(-1)
    errors = np.linalg.norm(pred - labels, axis=-1)  # (n, V, K), NaN where either missing
    diagonal = np.hypot(project.bboxes[..., 2], project.bboxes[..., 3])  # (n, V) frame px
    diagonals = np.broadcast_to(diagonal[..., None], errors.shape)
    pixel = _pixel_table(errors, masks, views, keypoints)
    pck_table = _pck_table(errors, labelled, diagonals, masks, views)

    reprojection = error_3d = None
    threshold = DEFAULT_CONFIDENCE_THRESHOLD if confidence_threshold is None else \
        float(confidence_threshold)
    calibrated = project.calibrated_rows
    points_3d = None
    if calibrated.any():
        cams = project.row_cameras(dtype=torch.float64)
        tri = triangulate_predictions(pred, cams, np.nan_to_num(conf, nan=1.0), threshold)
        points_3d = np.where(calibrated[:, None, None], tri.points, np.nan)
        reprojection = _reprojection_table(tri.view_errors, tri.ncams, tri.behind, calibrated,
                                           masks, views)
    gt_path = Path(ground_truth_3d) if ground_truth_3d else \
        resolve_data_dir(config) / "ground_truth_3d.csv"
    if points_3d is not None and gt_path.is_file():
        truth_by_frame = read_ground_truth_3d(gt_path, keypoints)
        numbers = frame_numbers([p[0] for p in project.image_paths])
        truth = np.full((len(project), len(keypoints), 3), np.nan)
        found = np.array([f in truth_by_frame for f in numbers])
        if found.any():
            truth[found] = np.stack([truth_by_frame[f] for f in numbers[found]])
            label_points = triangulate_keypoints(project).points
            error_3d = _error_3d_table(points_3d, label_points, truth, masks, keypoints)
        else:
            warnings.warn(f"{gt_path}: no labelled image maps to a frame of the file "
                          "(frame = number at the end of the image name)", stacklevel=2)
    elif ground_truth_3d and points_3d is None:
        raise DataError(f"--gt-3d {ground_truth_3d}: the project has no calibration, so the "
                        "predictions cannot be triangulated")

    main = next((s for s in ("test", "validation") if s in masks), "all")
    summary = _summary(pixel, pck_table, reprojection, error_3d)
    summary["confidence_threshold_3d"] = threshold
    return EvaluationResult(pixel, pck_table, reprojection, error_3d, summary, main)


def _summary(pixel: Any, pck_table: Any, reprojection: Any | None,
             error_3d: Any | None) -> dict[str, float]:
    """``{<split>_<metric>: value}`` over all views and keypoints."""
    summary: dict[str, float] = {}
    overall = pixel[(pixel.view == "all") & (pixel.keypoint == "all")]
    for row in overall.itertuples():
        summary[f"{row.split}_pixel_error_mean"] = row.mean
        summary[f"{row.split}_pixel_error_median"] = row.median
    for row in pck_table[pck_table.view == "all"].itertuples():
        summary[f"{row.split}_pck@{row.threshold}"] = row.pck
    if reprojection is not None:
        for row in reprojection[reprojection.view == "all"].itertuples():
            summary[f"{row.split}_prediction_reprojection_error_median"] = row.median
            summary[f"{row.split}_fraction_triangulated"] = row.fraction_triangulated
    if error_3d is not None:
        for row in error_3d[error_3d.keypoint == "all"].itertuples():
            name = "3d_error" if row.source == "prediction" else "3d_error_of_labels"
            summary[f"{row.split}_{name}_mean"] = row.mean
            summary[f"{row.split}_{name}_median"] = row.median
    return summary


def format_report(result: EvaluationResult) -> str:
    """Terminal text: mean pixel error per keypoint x view for the main split, then the
    summary."""
    table = result.pixel_error[result.pixel_error.split == result.main_split]
    grid = table.pivot(index="keypoint", columns="view", values="mean")
    order = [k for k in dict.fromkeys(table.keypoint)]
    grid = grid.reindex(index=order, columns=list(dict.fromkeys(table.view)))
    lines = [f"mean pixel error (frame px), {result.main_split} split:",
             grid.to_string(float_format=lambda x: f"{x:7.2f}"), "",
             f"summary, {result.main_split} split (every split in summary.csv):"]
    shown = {k: v for k, v in result.summary.items()
             if k.startswith(f"{result.main_split}_") or k.split("_")[0] not in _SPLITS}
    width = max(len(k) for k in shown) if shown else 0
    lines += [f"  {k:<{width}}  {v:9.4f}" for k, v in shown.items()]
    return "\n".join(lines)
