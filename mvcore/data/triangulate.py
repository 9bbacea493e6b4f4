"""Triangulating 2D keypoints of several views: one function for labels and predictions.

``triangulate_predictions`` is the one implementation behind the 3D targets of training, the
after-training report, ``mvcore evaluate``, ``mvcore predict`` and ``mvcore triangulate``:
per frame and keypoint, a linear (DLT) triangulation on undistorted points over the views that
take part, each view's rows weighted by its confidence, then the reprojection error of the 3D
point in every view that took part. A view takes part when its point is finite, its
undistortion converged and its confidence is >= ``threshold``; labels have no confidence and
take part with weight 1. The metrics built on it are defined in ``docs/metrics.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvcore.data.csv_io import write_3d_csv
from mvcore.data.project import MultiviewProject
from mvcore.geometry import CameraTensors, reprojection_error, triangulate, undistort_points

__all__ = [
    "DEFAULT_CONFIDENCE_THRESHOLD",
    "Triangulation",
    "triangulate_keypoints",
    "triangulate_predictions",
    "triangulate_project",
    "write_triangulation_csv",
]

#: views below this confidence take no part (anipose's ``score_threshold`` default)
DEFAULT_CONFIDENCE_THRESHOLD = 0.5


@dataclass
class Triangulation:
    """The 3D points of ``(..., V, K, 2)`` 2D points and how well they fit.

    ``points (..., K, 3)`` world units, NaN where fewer than two views took part;
    ``view_errors (..., V, K)`` reprojection error in pixels of each view that took part (NaN
    for the others); ``ncams (..., K)`` views that took part (0 where no point);
    ``scores (..., K)`` the lowest confidence among them (anipose's score; NaN where no
    point)."""

    points: np.ndarray
    view_errors: np.ndarray
    ncams: np.ndarray
    scores: np.ndarray

    @property
    def errors(self) -> np.ndarray:
        """``(..., K)`` mean reprojection error over the views that took part (NaN: none)."""
        used = np.isfinite(self.view_errors)
        total = np.where(used, self.view_errors, 0.0).sum(-2)
        count = used.sum(-2)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def triangulate_predictions(keypoints: Any, cameras: CameraTensors, confidences: Any = None,
                            threshold: float = DEFAULT_CONFIDENCE_THRESHOLD) -> Triangulation:
    """Triangulate ``keypoints (..., V, K, 2)`` frame pixels (NaN = missing) seen by
    ``cameras`` (broadcastable to ``(..., V, ...)``), in float64, without gradients.

    ``confidences (..., V, K)``: the views' weights, and those below ``threshold`` take no
    part; None (labels): every finite point takes part with weight 1."""
    points = torch.as_tensor(np.asarray(keypoints), dtype=torch.float64)
    if confidences is None:
        conf = torch.ones(points.shape[:-1], dtype=torch.float64)
        threshold = 0.0
    else:
        conf = torch.as_tensor(np.asarray(confidences), dtype=torch.float64)
    cams = cameras.to(dtype=torch.float64)
    args = (cams.intrinsics, cams.extrinsics, cams.distortions)
    used = (conf >= threshold) & torch.isfinite(points).all(-1) & torch.isfinite(conf)
    with torch.no_grad():
        _, converged = undistort_points(points, cams.intrinsics, cams.distortions)
        used &= converged
        weights = torch.where(used, conf, torch.zeros_like(conf))
        points_3d = triangulate(points, *args, weights=weights)
        used &= torch.isfinite(points_3d).all(-1).unsqueeze(-2)
        masked = torch.where(used[..., None], points, torch.full_like(points, float("nan")))
        view_errors = reprojection_error(points_3d, masked, *args)
    ncams = used.sum(-2)
    scores = torch.where(used, conf, torch.full_like(conf, float("inf"))).amin(-2)
    scores = torch.where(ncams > 0, scores, torch.full_like(scores, float("nan")))
    return Triangulation(points_3d.numpy(), view_errors.numpy(),
                         ncams.numpy().astype(np.int64), scores.numpy())


def triangulate_keypoints(project: MultiviewProject, indices: np.ndarray | None = None
                          ) -> Triangulation:
    """The labels of rows ``indices`` (all by default) in one batched call; rows without
    calibration give NaN."""
    idx = np.arange(len(project)) if indices is None else np.asarray(indices, dtype=np.int64)
    labels = project.keypoints[idx]
    calibrated = (project.calibration_index[idx] >= 0)[:, None, None, None]
    # uncalibrated rows: NaN input -> NaN output (and no work spent on placeholder cameras)
    labels = np.where(calibrated, labels, np.nan)
    return triangulate_predictions(labels, project.row_cameras(idx, dtype=torch.float64))


def triangulate_project(project: MultiviewProject) -> dict[str, Any]:
    """Triangulate every row's labels and summarise their reprojection error (the label
    reprojection error of ``docs/metrics.md``).

    Returns ``triangulation`` (a ``Triangulation``), ``median_error_per_view``
    ``{view: median px, ..., "all": median over all views}`` and ``mean_error_per_view`` (same
    keys), over finite errors only (NaN when there are none)."""
    result = triangulate_keypoints(project)
    median: dict[str, float] = {}
    mean: dict[str, float] = {}
    for v, name in enumerate(project.view_names):
        median[name], mean[name] = _median_mean(result.view_errors[:, v])
    median["all"], mean["all"] = _median_mean(result.view_errors)
    return {"triangulation": result, "median_error_per_view": median,
            "mean_error_per_view": mean}


def _median_mean(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    return float(np.median(finite)), float(np.mean(finite))


def write_triangulation_csv(project: MultiviewProject, result: Triangulation,
                            path: str | Path) -> None:
    """Write triangulated labels as an anipose-style CSV (``mvcore.data.csv_io.write_3d_csv``;
    ``_score`` 1.0 where a point was triangulated, ``fnum`` = row index)."""
    write_3d_csv(path, result.points, result.errors, result.ncams, project.keypoint_names,
                 scores=result.scores, fnum=np.arange(len(project)))
