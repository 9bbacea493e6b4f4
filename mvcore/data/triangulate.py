"""Triangulation of a project's 2D labels (3D targets, ``mvcore triangulate``).

Linear DLT on undistorted points from every labelled view (``mvcore.geometry.triangulate``),
solved for all rows in one batched call; each row uses its own calibration, uncalibrated rows
give NaN. Reprojection errors are pixel distances in the frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvcore.data.csv_io import write_3d_csv
from mvcore.data.project import MultiviewProject
from mvcore.geometry import reprojection_error, triangulate, undistort_points

__all__ = ["triangulate_keypoints", "triangulate_project", "write_triangulation_csv"]


def triangulate_keypoints(
    project: MultiviewProject, indices: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangulate rows ``indices`` (all by default) in one batched call (float64).

    Returns ``points (m, K, 3)`` world units (NaN: uncalibrated row or < 2 usable views),
    ``errors (m, V, K)`` reprojection px (NaN where the view has no label or no 3D point) and
    ``ncams (m, K)`` number of views used (0 where NaN).
    """
    idx = np.arange(len(project)) if indices is None else np.asarray(indices, dtype=np.int64)
    cams = project.row_cameras(idx, dtype=torch.float64)
    points_2d = torch.as_tensor(project.keypoints[idx], dtype=torch.float64)
    calibrated = torch.as_tensor(project.calibration_index[idx] >= 0)
    # uncalibrated rows: NaN input -> NaN output (and no work wasted on dummy cameras)
    points_2d = torch.where(
        calibrated[:, None, None, None], points_2d, torch.full_like(points_2d, float("nan"))
    )
    with torch.no_grad():
        points_3d = triangulate(points_2d, cams.intrinsics, cams.extrinsics, cams.distortions)
        errors = reprojection_error(
            points_3d, points_2d, cams.intrinsics, cams.extrinsics, cams.distortions
        )
        _, converged = undistort_points(points_2d, cams.intrinsics, cams.distortions)
    has_3d = torch.isfinite(points_3d).all(-1)  # (m, K)
    used = converged & has_3d[:, None, :]
    errors = torch.where(used, errors, torch.full_like(errors, float("nan")))
    ncams = used.sum(-2)
    return points_3d.numpy(), errors.numpy(), ncams.numpy().astype(np.int64)


def triangulate_project(project: MultiviewProject) -> dict[str, Any]:
    """Triangulate every row and summarise the reprojection error.

    Returns a dict: ``points (n, K, 3)``, ``errors (n, V, K)`` px, ``ncams (n, K)``,
    ``median_error_per_view`` ``{view: median px, ..., "all": median over all views}`` and
    ``mean_error_per_view`` (same keys), over finite errors only (NaN when there are none).
    """
    points, errors, ncams = triangulate_keypoints(project)
    median: dict[str, float] = {}
    mean: dict[str, float] = {}
    for v, name in enumerate(project.view_names):
        median[name], mean[name] = _median_mean(errors[:, v])
    median["all"], mean["all"] = _median_mean(errors)
    return {
        "points": points,
        "errors": errors,
        "ncams": ncams,
        "median_error_per_view": median,
        "mean_error_per_view": mean,
    }


def _median_mean(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    return float(np.median(finite)), float(np.mean(finite))


def write_triangulation_csv(
    project: MultiviewProject, result: dict[str, Any], path: str | Path
) -> None:
    """Write ``triangulate_project``'s result as an anipose-style CSV (``fnum`` = row index,
    ``<kp>_error`` = mean reprojection error over the views used)."""
    errors = np.asarray(result["errors"])
    counts = np.isfinite(errors).sum(axis=1)
    total = np.where(np.isfinite(errors), errors, 0.0).sum(axis=1)
    mean_error = np.where(counts > 0, total / np.maximum(counts, 1), np.nan)
    write_3d_csv(
        path,
        result["points"],
        mean_error,
        result["ncams"],
        project.keypoint_names,
        fnum=np.arange(len(project)),
    )
