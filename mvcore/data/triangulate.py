"""Triangulating 2D keypoints of several views: one function for labels and predictions.

``triangulate_predictions`` is the one implementation behind the 3D targets of training, the
after-training report, ``mvcore evaluate``, ``mvcore predict`` and ``mvcore triangulate``:
per frame and keypoint, a linear (DLT) triangulation on undistorted points over the views that
take part, each view's rows weighted by its confidence, then the reprojection error of the 3D
point in every view that took part. A view takes part when its point is finite, its
undistortion converged and its confidence is >= ``threshold``; labels have no confidence and
take part with weight 1. The metrics built on it are defined in ``docs/metrics.md``.

The solve (``mvcore.geometry.triangulate_checked``) leaves out a view that sees a point from
behind and gives no point where the rays meet at too small an angle; ``Triangulation`` keeps
both findings, ``pair_geometry`` measures each camera pair's angles on the 2D points, and
``geometry_findings`` turns them into the warnings the commands print.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mvcore.data.csv_io import read_keypoints_csv, write_3d_csv
from mvcore.data.project import MultiviewProject
from mvcore.errors import DataError
from mvcore.geometry import (
    DEFAULT_MIN_RAY_ANGLE,
    CameraGroup,
    CameraTensors,
    camera_centers,
    camera_pairs,
    project_points,
    reprojection_error,
    triangulate_checked,
    triangulate_pairs,
    undistort_points,
)

__all__ = [
    "DEFAULT_CONFIDENCE_THRESHOLD",
    "PairGeometry",
    "PredictionFiles",
    "Triangulation",
    "read_prediction_files",
    "triangulate_ransac",
    "check_view_order",
    "view_order_findings",
    "geometry_findings",
    "label_geometry_findings",
    "pair_geometry",
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
    point); ``behind (..., V, K)`` views whose 2D point sees the 3D point from behind (they
    took no part); ``narrow (..., K)`` points left NaN because their rays meet at too small an
    angle."""

    points: np.ndarray
    view_errors: np.ndarray
    ncams: np.ndarray
    scores: np.ndarray
    behind: np.ndarray
    narrow: np.ndarray

    def behind_per_view(self) -> np.ndarray:
        """``(V,)`` how many points each view saw from behind."""
        return self.behind.reshape((-1,) + self.behind.shape[-2:]).sum((0, 2))

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
    offered = (conf >= threshold) & torch.isfinite(points).all(-1) & torch.isfinite(conf)
    with torch.no_grad():
        weights = torch.where(offered, conf, torch.zeros_like(conf))
        solved = triangulate_checked(points, *args, weights=weights)
        used = solved.used  # offered, undistortion converged, in front, point valid
        masked = torch.where(used[..., None], points, torch.full_like(points, float("nan")))
        view_errors = reprojection_error(solved.points, masked, *args)
    ncams = used.sum(-2)
    scores = torch.where(used, conf, torch.full_like(conf, float("inf"))).amin(-2)
    scores = torch.where(ncams > 0, scores, torch.full_like(scores, float("nan")))
    return Triangulation(solved.points.numpy(), view_errors.numpy(),
                         ncams.numpy().astype(np.int64), scores.numpy(),
                         solved.behind.numpy(), solved.narrow.numpy())


@dataclass
class PairGeometry:
    """How well one camera pair fixes depth, measured on the 2D points both views see.

    ``angle_deg``: median angle between the two views' viewing rays (0 or 180: no depth);
    ``baseline``: distance between the camera centres (world units, median over rows);
    ``narrow``: points whose two rays meet at less than the minimum angle;
    ``depth_error``: median relative depth error that ``noise_px`` (the measured 2D noise) causes,
    ``noise_px / (f sin(angle))``; ``near_degenerate``: the median angle is below the minimum,
    or 1 px of 2D error alone moves the pair's points by more than ``MAX_PAIR_DEPTH_ERROR`` of
    their depth (a geometric verdict: a wrong camera inflates the measured noise of well-angled
    pairs too, and that is reported as the camera's problem, not the pair's)."""

    views: tuple[str, str]
    points: int
    angle_deg: float
    baseline: float
    narrow: int
    noise_px: float
    depth_error: float
    near_degenerate: bool


#: a pair where 1 px of 2D error moves points by more than this fraction of their depth is
#: near-degenerate (f sin(angle) < 20 px: about 1.4 degrees at f = 800 px)
MAX_PAIR_DEPTH_ERROR = 0.05


def pair_geometry(keypoints: Any, cameras: CameraTensors, view_names: list[str],
                  view_errors: np.ndarray | None = None,
                  min_ray_angle: float = DEFAULT_MIN_RAY_ANGLE) -> list[PairGeometry]:
    """Per camera pair, the angles of the viewing rays of ``keypoints (..., V, K, 2)`` (pixels,
    NaN = missing) seen by ``cameras`` (``(..., V, ...)``), in ``camera_pairs`` order.

    Works without 3D points, so it also measures pairs whose points could not be
    triangulated. ``view_errors (..., V, K)`` (a ``Triangulation``'s): the 2D noise of a pair is
    the median reprojection error of its two views, at least 1 px (1 px without them)."""
    points = torch.as_tensor(np.asarray(keypoints), dtype=torch.float64)
    cams = cameras.to(dtype=torch.float64)
    pairs = camera_pairs(len(view_names))
    with torch.no_grad():
        xy, ok = undistort_points(points, cams.intrinsics, cams.distortions)
        # world direction of each viewing ray, R^T (x, y, 1): (..., V, K, 3)
        rays = torch.cat([xy, torch.ones_like(xy[..., :1])], -1) @ cams.extrinsics[..., :3]
        rays = rays / rays.norm(dim=-1, keepdim=True)
        first, second = (rays.index_select(-3, pairs[:, i]) for i in (0, 1))  # (..., P, K, 3)
        sine = torch.linalg.cross(first, second).norm(dim=-1)  # (..., P, K)
        angle = torch.rad2deg(torch.atan2(sine, (first * second).sum(-1)))
        both = ok.index_select(-2, pairs[:, 0]) & ok.index_select(-2, pairs[:, 1])
        focal = torch.linalg.det(cams.intrinsics[..., :2, :2]).abs().sqrt()  # (..., V)
        pair_focal = (focal.index_select(-1, pairs[:, 0]) * focal.index_select(-1, pairs[:, 1]))
        centers = camera_centers(cams.extrinsics)
        baseline = (centers.index_select(-2, pairs[:, 0])
                    - centers.index_select(-2, pairs[:, 1])).norm(dim=-1)  # (..., P)
        noise = torch.ones(len(pairs), dtype=torch.float64)
        if view_errors is not None:
            errors = torch.as_tensor(np.asarray(view_errors), dtype=torch.float64)
            per_pair = torch.stack([errors.index_select(-2, pairs[:, i]) for i in (0, 1)], -2)
            per_pair = per_pair.movedim(-3, 0).reshape(len(pairs), -1)  # (P, everything)
            noise = per_pair.nanmedian(-1).values.nan_to_num(1.0).clamp(min=1.0)
        shape = torch.broadcast_shapes(both.shape, sine.shape)
        per_px = 1.0 / (pair_focal.sqrt().unsqueeze(-1) * sine)  # relative depth error / px

        def per_pair_values(t: Tensor) -> Tensor:
            """``(..., P, K)`` -> ``(P, rest)`` with NaN where the pair lacks a point."""
            t = torch.where(both, t.expand(shape), torch.full(shape, float("nan"),
                                                              dtype=torch.float64))
            return t.movedim(-2, 0).reshape(len(pairs), -1)

        counts = per_pair_values(torch.ones(shape, dtype=torch.float64)).nan_to_num(0).sum(-1)
        median_angle = per_pair_values(angle).nanmedian(-1).values
        median_per_px = per_pair_values(per_px).nanmedian(-1).values
        min_sine = math.sin(math.radians(min_ray_angle))
        narrow = per_pair_values((sine < min_sine).double()).nan_to_num(0).sum(-1)
        degenerate = (torch.sin(torch.deg2rad(median_angle)) < min_sine) | (
            median_per_px > MAX_PAIR_DEPTH_ERROR)
        median_baseline = baseline.reshape(-1, len(pairs)).median(0).values
    return [
        PairGeometry((view_names[a], view_names[b]), int(counts[p]), float(median_angle[p]),
                     float(median_baseline[p]), int(narrow[p]), float(noise[p]),
                     float(noise[p] * median_per_px[p]),
                     bool(degenerate[p]) and bool(counts[p] > 0))
        for p, (a, b) in enumerate(pairs.tolist())
    ]


def geometry_findings(result: Triangulation, offered: np.ndarray, view_names: list[str],
                      pairs: list[PairGeometry] | None = None) -> list[str]:
    """One line per problem the solve found: views that see points from behind (of the
    ``offered (..., V, K)`` 2D points), points without depth, near-degenerate pairs."""
    lines = []
    offered = np.asarray(offered, dtype=bool)
    seen = offered.reshape((-1,) + offered.shape[-2:]).sum((0, 2))
    for v, count in enumerate(result.behind_per_view()):
        if count:
            hint = ("; its rotation is probably wrong (turned around?)"
                    if count > seen[v] / 2 else "")
            lines.append(f"camera {view_names[v]!r}: {count} of {seen[v]} points lie behind "
                         f"it, so it took no part in them{hint}")
    narrow = int(np.asarray(result.narrow).sum())
    if narrow:
        lines.append(f"{narrow} points have viewing rays meeting at less than "
                     f"{DEFAULT_MIN_RAY_ANGLE:g} degree: their depth is unknown, left empty")
    for pair in pairs or []:
        if pair.near_degenerate:
            a, b = pair.views
            lines.append(
                f"cameras {a!r} and {b!r} are near-degenerate: their rays meet at "
                f"{pair.angle_deg:.2f} degrees (median of {pair.points} points, baseline "
                f"{pair.baseline:.3g}); {pair.noise_px:.2g} px of 2D noise moves a point they "
                f"triangulate by {100 * pair.depth_error:.0f}% of its depth")
    return lines


def triangulate_ransac(keypoints: Any, cameras: CameraTensors, confidences: Any = None,
                       threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
                       inlier_px: float = 20.0, chunk: int = 4096
                       ) -> tuple[Triangulation, np.ndarray]:
    """``triangulate_predictions`` after leaving out, per frame and keypoint, the views that
    disagree with the others (RANSAC over views, as anipose's ``triangulate_ransac``).

    Every camera pair proposes a point (``triangulate_pairs``); the proposal that the most
    views reproject within ``inlier_px`` pixels of (ties: the smaller summed error) decides
    the inliers; the point is then triangulated from the inliers only. ``keypoints
    (..., V, K, 2)``, ``cameras`` broadcastable to ``(..., V, ...)``; works on ``chunk`` rows of
    the flattened leading dims at a time. Returns the result and ``rejected (..., V, K)``: the
    views that took part before but were left out as outliers."""
    points = np.asarray(keypoints, dtype=np.float64)
    lead = points.shape[:-3]
    v, k = points.shape[-3:-1]
    conf = (np.ones(points.shape[:-1]) if confidences is None
            else np.asarray(confidences, dtype=np.float64))
    limit = 0.0 if confidences is None else threshold
    flat_points = points.reshape(-1, v, k, 2)
    flat_conf = np.broadcast_to(conf, points.shape[:-1]).reshape(-1, v, k)
    cams = cameras.to(dtype=torch.float64)
    intr = cams.intrinsics.expand(lead + (v, 3, 3)).reshape(-1, v, 3, 3)
    extr = cams.extrinsics.expand(lead + (v, 3, 4)).reshape(-1, v, 3, 4)
    dist = cams.distortions.expand(lead + (v, 5)).reshape(-1, v, 5)
    inliers = np.zeros(flat_conf.shape, dtype=bool)
    offered_all = (flat_conf >= limit) & np.isfinite(flat_points).all(-1) & np.isfinite(flat_conf)
    for start in range(0, len(flat_points), chunk):
        rows = slice(start, start + chunk)
        k_, e_, d_ = intr[rows], extr[rows], dist[rows]
        offered = torch.as_tensor(offered_all[rows])
        pts = torch.as_tensor(flat_points[rows])
        pts = torch.where(offered[..., None], pts, torch.full_like(pts, float("nan")))
        with torch.no_grad():
            proposals = triangulate_pairs(pts, k_, e_, d_)  # (n, P, K, 3)
            projected = project_points(proposals, k_.unsqueeze(-4), e_.unsqueeze(-4),
                                       d_.unsqueeze(-3))  # (n, P, V, K, 2)
            errors = (projected - pts.unsqueeze(-4)).norm(dim=-1)  # (n, P, V, K)
            agree = errors < inlier_px  # NaN compares False
            count = agree.sum(-2).double()  # (n, P, K)
            spent = torch.where(agree, errors, torch.zeros_like(errors)).sum(-2)
            score = count - spent / (inlier_px * v + 1.0)  # fewer errors break ties
            best = score.argmax(-2, keepdim=True)  # (n, 1, K)
            chosen = agree.gather(-3, best.unsqueeze(-2).expand(-1, -1, v, -1)).squeeze(-3)
        inliers[rows] = chosen.numpy()
    use = np.where(inliers, flat_conf, np.nan).reshape(points.shape[:-1])
    result = triangulate_predictions(points, cameras, use, threshold=limit)
    rejected = (offered_all & ~inliers).reshape(points.shape[:-1])
    return result, rejected


@dataclass
class PredictionFiles:
    """Per-view 2D prediction CSVs of one session, aligned: ``keypoints (T, V, K, 2)`` frame
    pixels, ``likelihood (T, V, K)`` (1 where a file has none), the cameras in view order."""

    paths: list[Path]
    view_names: list[str]
    keypoint_names: list[str]
    index: list[str]
    keypoints: np.ndarray
    likelihood: np.ndarray
    cameras: CameraGroup


def _view_of_file(path: Path, camera_names: list[str]) -> str:
    """The camera a prediction file belongs to: its stem is ``<name>`` or ends ``_<name>``
    (``mvcore predict`` writes ``<session>_<view>.csv``); the longest such name wins."""
    stem = path.stem
    matches = [n for n in camera_names if stem == n or stem.endswith(f"_{n}")]
    if not matches:
        raise DataError(f"{path}: no camera of the calibration ({camera_names}) matches the "
                        "file name '<session>_<view>.csv'; name the views with --views")
    return max(matches, key=len)


def read_prediction_files(paths: list[str | Path], cameras: CameraGroup, where: str,
                          views: list[str] | None = None) -> PredictionFiles:
    """Read per-view prediction CSVs (``mvcore predict``'s or DeepLabCut's) for one session.

    ``views`` names the view of each file in order (default: from the file names); every view
    needs a camera in ``cameras`` (read from ``where``), and the files must have the same rows
    and keypoints. Errors name the file and what to do."""
    files = [Path(p) for p in paths]
    if len(files) < 2:
        raise DataError(f"need the prediction CSVs of at least 2 views, got {len(files)}")
    if views is not None and len(views) != len(files):
        raise DataError(f"--views names {len(views)} views for {len(files)} files; give one "
                        "view name per file, in the same order")
    names = list(views) if views is not None else [_view_of_file(f, cameras.names)
                                                   for f in files]
    missing = [(f, n) for f, n in zip(files, names) if n not in cameras.names]
    if missing:
        f, n = missing[0]
        raise DataError(f"{where}: no camera named {n!r} (the view of {f}); cameras: "
                        f"{cameras.names}. Add the camera or leave the file out")
    if len(set(names)) != len(names):
        raise DataError(f"two files for one view: {dict(zip(map(str, files), names))}")
    tables = [read_keypoints_csv(f) for f in files]
    index, keypoint_names = tables[0][0], tables[0][1]
    for f, (rows, kps, _, _) in zip(files[1:], tables[1:]):
        if kps != keypoint_names:
            raise DataError(f"{f}: keypoints {kps} differ from {keypoint_names} in {files[0]}")
        if len(rows) != len(index):
            raise DataError(f"{f}: {len(rows)} rows but {files[0]} has {len(index)}; the "
                            "views of a session must have the same frames")
    keypoints = np.stack([t[2] for t in tables], axis=1)
    likelihood = np.stack([np.ones(t[2].shape[:2]) if t[3] is None else t[3] for t in tables],
                          axis=1)
    return PredictionFiles(files, names, keypoint_names, index, keypoints, likelihood,
                           cameras.select(names))


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


#: views beyond this are not checked for a swapped order (V! orders are compared)
MAX_VIEWS_ORDER_CHECK = 8
#: rows used by the order check (evenly spaced; its tensors grow as rows x V^4 x K)
MAX_ROWS_ORDER_CHECK = 200


def _epipolar_costs(keypoints: Tensor, cameras: CameraTensors) -> np.ndarray:
    """``cost[i, a, j, b]``: median symmetric epipolar distance (px) between the labels of
    view i seen by camera a and those of view j seen by camera b, over the (frame, keypoint)
    points both label (NaN where none, and for i == j or a == b). ``keypoints (n, V, K, 2)``,
    cameras broadcastable to ``(n, V, ...)``."""
    n, v = keypoints.shape[:2]
    k_ = cameras.intrinsics.expand(n, v, 3, 3)
    e_ = cameras.extrinsics.expand(n, v, 3, 4)
    d_ = cameras.distortions.expand(n, v, 5)
    # labels of every view undistorted by every camera: (n, V_labels, V_cameras, K, 2)
    xy, ok = undistort_points(keypoints.unsqueeze(2), k_.unsqueeze(1), d_.unsqueeze(1))
    h = torch.cat([xy, torch.ones_like(xy[..., :1])], -1)
    rot, t = e_[..., :3], e_[..., 3]
    # relative pose a -> b: x_b = R_ab x_a + t_ab, (n, a, b, ...)
    rel_rot = rot.unsqueeze(1) @ rot.transpose(-1, -2).unsqueeze(2)
    rel_t = t.unsqueeze(1) - (rel_rot @ t.unsqueeze(2).unsqueeze(-1)).squeeze(-1)
    zero = torch.zeros_like(rel_t[..., 0])
    cross = torch.stack([zero, -rel_t[..., 2], rel_t[..., 1], rel_t[..., 2], zero,
                         -rel_t[..., 0], -rel_t[..., 1], rel_t[..., 0], zero], -1)
    essential = cross.unflatten(-1, (3, 3)) @ rel_rot  # x_b^T E_ab x_a = 0
    # epipolar lines in b of labels i via a, and in a of labels j via b
    lines_b = torch.einsum("nabxy,niaky->niabkx", essential, h)  # (n, i, a, b, K, 3)
    lines_a = torch.einsum("nabyx,njbky->njabkx", essential, h)  # (n, j, a, b, K, 3)
    residual = torch.einsum("niabkx,njbkx->niajbk", lines_b, h)  # (n, i, a, j, b, K)
    tiny = torch.finfo(residual.dtype).tiny
    norm_b = lines_b[..., :2].norm(dim=-1).clamp(min=tiny).unsqueeze(3)  # (n, i, a, 1, b, K)
    norm_a = lines_a[..., :2].norm(dim=-1).clamp(min=tiny).permute(0, 2, 1, 3, 4).unsqueeze(1)
    focal = torch.linalg.det(k_[..., :2, :2]).abs().sqrt()  # (n, V) pixels
    f_a = focal[:, None, :, None, None, None]
    f_b = focal[:, None, None, None, :, None]
    dist = 0.5 * residual.abs() * (f_b / norm_b + f_a / norm_a)
    both = ok[:, :, :, None, None, :] & ok[:, None, None, :, :, :]
    dist = torch.where(both, dist, torch.full_like(dist, float("nan")))
    cost = dist.permute(1, 2, 3, 4, 0, 5).reshape(v, v, v, v, -1).nanmedian(-1).values.numpy()
    same = np.arange(v)
    cost[same, :, same, :] = np.nan  # a view with itself
    cost[:, same, :, same] = np.nan  # two views through one camera
    return cost


def view_order_findings(keypoints: Any, cameras: CameraTensors, view_names: list[str]
                        ) -> list[str]:
    """A finding when the labels fit the cameras much better in another order than the
    project's (label files and views, or camera names, swapped): every order of the cameras
    is scored by the sum over view pairs of the median epipolar distance of the labels."""
    points = torch.as_tensor(np.asarray(keypoints), dtype=torch.float64)
    v = points.shape[-3]
    if v < 3 or v > MAX_VIEWS_ORDER_CHECK:
        return []  # two views: any order fits alike
    cams = cameras.to(dtype=torch.float64)
    if len(points) > MAX_ROWS_ORDER_CHECK:
        rows = torch.linspace(0, len(points) - 1, MAX_ROWS_ORDER_CHECK).round().long()
        points = points[rows]
        if cams.intrinsics.dim() > 3 and cams.intrinsics.shape[0] > 1:
            cams = cams[rows]
    with torch.no_grad():
        cost = _epipolar_costs(points, cams)
    orders = np.array(list(itertools.permutations(range(v))))  # (P, V)
    first, second = np.triu_indices(v, k=1)
    per_pair = cost[first, orders[:, first], second, orders[:, second]]  # (P, pairs)
    counted = np.isfinite(per_pair).all(1)
    if not counted[0]:
        return []
    total = np.where(counted, np.nansum(per_pair, 1), np.inf)
    best = int(np.argmin(total))
    identity = total[0] / len(first)
    better = total[best] / len(first)
    if best == 0 or not (identity > 5.0 and better < 0.5 * identity):
        return []
    moved = [i for i in range(v) if orders[best, i] != i]
    labels = [view_names[i] for i in moved]
    cams = [view_names[orders[best, i]] for i in moved]
    return [f"the labels of views {labels} fit cameras {cams} much better (median epipolar "
            f"error {better:.1f} px against {identity:.1f} px in the project's order): "
            "data.view_names and data.csv_file are probably in different orders, or the "
            "calibration's camera names are swapped"]


def check_view_order(keypoints: Any, cameras: CameraTensors, view_names: list[str],
                     where: str) -> None:
    """DataError (naming ``where``) when ``view_order_findings`` finds that the labels fit
    another order of the cameras much better: every 3D result would be wrong."""
    for finding in view_order_findings(keypoints, cameras, view_names):
        raise DataError(f"{where}: {finding}")


def label_geometry_findings(project: MultiviewProject) -> list[str]:
    """``geometry_findings`` of the calibrated rows' labels (views that see labelled points
    from behind, points without depth, near-degenerate camera pairs); [] without calibration.
    Training warns with them: such labels give no 3D target from those views. Labels that fit
    another camera order much better are a DataError (``check_view_order``)."""
    rows = np.flatnonzero(project.calibrated_rows)
    if rows.size == 0:
        return []
    check_view_order(project.keypoints[rows], project.row_cameras(rows, dtype=torch.float64),
                     project.view_names, "labels and calibration")
    result = triangulate_keypoints(project, rows)
    labels = project.keypoints[rows]
    cameras = project.row_cameras(rows, dtype=torch.float64)
    pairs = pair_geometry(labels, cameras, project.view_names, result.view_errors)
    offered = np.isfinite(labels).all(-1)
    return geometry_findings(result, offered, project.view_names, pairs)


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
