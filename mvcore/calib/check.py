"""The numbers of ``mvcore calib check``: how well a calibration explains a project's labels.

Every labelled point is triangulated twice, in batched calls (no loops over frames, views or
pairs):

- from **all** views (``mvcore.data.triangulate.triangulate_predictions``): the reprojection
  error of each view, as everywhere in mvcore (``docs/metrics.md``);
- **leaving one view out** (LOO): for each view v, the point is triangulated from the other
  views only and projected into v. A view's own label cannot pull this point towards itself,
  so the LOO error measures how well the *other* cameras predict v's label: a wrong camera
  shows here even where the all-view solve hides it by spreading the error over every view.

From these come the per-camera and per-pair tables, the outlier labels and the findings
(``docs/calibration.md`` gives the rules and why):

- **outlier label**: its LOO error exceeds ``max(OUTLIER_FACTOR x its camera's LOO median,
  OUTLIER_MIN_PX)`` and, of the views of its frame and keypoint, its camera is the one whose
  removal leaves the others most consistent (a wrong label also inflates the LOO errors of the
  other views, through the solves it takes part in; only one view is blamed);
- **finding** (exit 1): a view that sees points from behind, points whose rays meet at less
  than the minimum angle, a near-degenerate camera pair (``geometry_findings``), and a camera
  that **disagrees with the others**: leaving it out lowers the other cameras' median
  reprojection error ``DISAGREE_RATIO`` times or more and by ``DISAGREE_MIN_PX`` or more.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvcore.data.project import MultiviewProject
from mvcore.data.triangulate import (
    PairGeometry,
    Triangulation,
    geometry_findings,
    pair_geometry,
    triangulate_predictions,
)
from mvcore.errors import DataError
from mvcore.files import write_json_atomically, write_text_atomically
from mvcore.geometry import CameraTensors, camera_pairs, project_points, triangulate_pairs

__all__ = [
    "DISAGREE_MIN_PX",
    "DISAGREE_RATIO",
    "OUTLIER_FACTOR",
    "OUTLIER_MIN_PX",
    "CalibrationCheck",
    "CameraCheck",
    "LeaveOneOut",
    "Outlier",
    "PairCheck",
    "check_labels",
    "check_project",
    "format_report",
    "leave_one_view_out",
    "write_reports",
]

#: a label is an outlier beyond this many times its camera's median LOO error ...
OUTLIER_FACTOR = 3.0
#: ... and beyond this many pixels (noise-free rigs have sub-pixel medians)
OUTLIER_MIN_PX = 20.0
#: a camera disagrees when leaving it out divides the others' median error by this much ...
DISAGREE_RATIO = 3.0
#: ... and lowers it by at least this many pixels (sub-pixel changes are noise)
DISAGREE_MIN_PX = 2.0
#: how many outliers the text report lists (report.json has all)
WORST_LISTED = 10


@dataclass
class CameraCheck:
    """One camera's row of the report (pixels; NaN where there is nothing to measure).

    ``labelled``: finite labels; ``used``: labels that took part in the all-view solve;
    ``median`` / ``p95``: their all-view reprojection error; ``loo_points``, ``loo_median``,
    ``loo_p95``: labels with a point from >= 2 other views, and their LOO error; ``rest_with``
    / ``rest_without``: median reprojection error of the *other* cameras on the same points
    with this camera in the solve / left out; ``behind``: labels that see their point from
    behind; ``outliers``: outlier labels blamed on this camera."""

    name: str
    labelled: int
    used: int
    median: float
    p95: float
    loo_points: int
    loo_median: float
    loo_p95: float
    rest_with: float
    rest_without: float
    behind: int
    outliers: int

    @property
    def rest_ratio(self) -> float:
        """How many times better the other cameras agree without this one."""
        return self.rest_with / self.rest_without if self.rest_without > 0 else math.nan

    @property
    def disagrees(self) -> bool:
        """The rule of the 'disagrees with the others' finding (module docstring)."""
        return bool(self.rest_ratio >= DISAGREE_RATIO
                    and self.rest_with - self.rest_without >= DISAGREE_MIN_PX)


@dataclass
class PairCheck:
    """One camera pair: its ``pair_geometry`` and the reprojection error of the points it
    triangulates on its own, in both of its views (``median`` / ``p95``, pixels; NaN where it
    triangulates none)."""

    geometry: PairGeometry
    median: float
    p95: float


@dataclass
class Outlier:
    """One outlier label: ``row`` of the project, ``image`` its file (as in the label CSV),
    ``keypoint``, ``view``, its LOO ``error`` and the camera's ``limit`` (pixels)."""

    row: int
    image: str
    keypoint: str
    view: str
    error: float
    limit: float


@dataclass
class LeaveOneOut:
    """Leave-one-view-out solves of ``(..., V, K, 2)`` labels.

    ``errors (..., V, K)``: distance in pixels between view v's label and the point
    triangulated from the other views, projected into v (NaN: no label, fewer than 2 other
    views took part, or the point lies behind camera v); ``rest (..., V, U, K)``: reprojection
    error of each other view u in the solve without v (NaN for u = v and for views that took
    no part)."""

    errors: np.ndarray
    rest: np.ndarray


@dataclass
class CalibrationCheck:
    """Everything ``mvcore calib check`` reports, and the arrays its plots draw.

    ``keypoints (N, V, K, 2)`` labels in frame pixels; ``points (N, K, 3)`` all-view
    triangulation; ``reprojected (N, V, K, 2)`` its projection into every view (NaN where it
    lies behind the camera);
    ``loo_errors (N, V, K)``; ``outliers`` all of them, the most anomalous first (error /
    limit); ``findings`` one line per problem (exit 1 when there are any)."""

    source: str
    calibration_files: list[str]
    view_names: list[str]
    keypoint_names: list[str]
    images: list[list[str]]
    cameras: list[CameraCheck]
    pairs: list[PairCheck]
    outliers: list[Outlier]
    findings: list[str]
    keypoints: np.ndarray
    points: np.ndarray
    reprojected: np.ndarray
    loo_errors: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0: nothing wrong; 1: findings (2, an input error, is raised as ``DataError``)."""
        return 1 if self.findings else 0

    def to_dict(self) -> dict[str, Any]:
        """All numbers, JSON-ready (NaN -> None)."""
        pairs = [{**asdict(p.geometry), "views": list(p.geometry.views), "median": p.median,
                  "p95": p.p95} for p in self.pairs]
        cameras = [{**asdict(c), "rest_ratio": c.rest_ratio, "disagrees": c.disagrees}
                   for c in self.cameras]
        return _json_ready({
            "source": self.source,
            "calibration_files": self.calibration_files,
            "rows": len(self.images),
            "views": self.view_names,
            "keypoints": self.keypoint_names,
            "rules": {"outlier_factor": OUTLIER_FACTOR, "outlier_min_px": OUTLIER_MIN_PX,
                      "disagree_ratio": DISAGREE_RATIO, "disagree_min_px": DISAGREE_MIN_PX},
            "cameras": cameras,
            "pairs": pairs,
            "outliers": {"count": len(self.outliers),
                         "labels": [asdict(o) for o in self.outliers]},
            "findings": self.findings,
            "notes": self.notes,
            "exit_code": self.exit_code,
        })


def _json_ready(value: Any) -> Any:
    """Nested dicts / lists with NaN and inf floats as None and numpy / torch scalars as
    Python's."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.generic, torch.Tensor)):  # scalars of the statistics
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, median and 95th percentile of the finite values of each row of ``(R, M)`` ->
    three ``(R,)`` arrays (NaN statistics for rows without any)."""
    with warnings.catch_warnings():  # an all-NaN row is a '-' in the table, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(values, axis=1) if values.shape[1] else np.full(len(values), np.nan)
        p95 = (np.nanpercentile(values, 95, axis=1) if values.shape[1]
               else np.full(len(values), np.nan))
    return np.isfinite(values).sum(1), median, p95


def _rows_by(values: np.ndarray, axis: int) -> np.ndarray:
    """``values`` with ``axis`` first and everything else flattened: ``(R, M)``."""
    moved = np.moveaxis(values, axis, 0)
    return moved.reshape(moved.shape[0], -1)


def _depths(points: torch.Tensor, extrinsics: torch.Tensor) -> torch.Tensor:
    """Depth of world ``points (..., K, 3)`` in every camera ``[R|t] (..., V, 3, 4)`` ->
    ``(..., V, K)`` (<= 0: behind the camera; NaN for NaN points)."""
    axis, shift = extrinsics[..., 2, :3], extrinsics[..., 2, 3]  # (..., V, 3), (..., V)
    return (points.unsqueeze(-3) * axis.unsqueeze(-2)).sum(-1) + shift[..., None]


def leave_one_view_out(keypoints: Any, cameras: CameraTensors) -> LeaveOneOut:
    """Triangulate ``keypoints (..., V, K, 2)`` (pixels, NaN = missing) once per left-out view,
    in one batched call on a ``(V, ..., V, K, 2)`` stack whose slice v has view v masked, and
    project each point into the view left out. ``cameras`` broadcast to ``(..., V, ...)``."""
    points = torch.as_tensor(np.asarray(keypoints), dtype=torch.float64)
    lead, v = points.shape[:-3], points.shape[-3]
    masked = torch.eye(v, dtype=torch.bool).reshape((v,) + (1,) * len(lead) + (v, 1, 1))
    stack = torch.where(masked, torch.full_like(points, float("nan")), points.unsqueeze(0))
    solved = triangulate_predictions(stack, cameras)
    cams = cameras.to(dtype=torch.float64)
    with torch.no_grad():
        solved_points = torch.as_tensor(solved.points)  # (V, ..., K, 3)
        projected = project_points(solved_points, cams.intrinsics, cams.extrinsics,
                                   cams.distortions)  # (V, ..., V, K, 2)
        own = torch.diagonal(projected, dim1=0, dim2=-3).movedim(-1, -3)  # (..., V, K, 2)
        errors = (own - points).norm(dim=-1)
        depth = _depths(solved_points, cams.extrinsics)  # (V, ..., V, K)
        depth = torch.diagonal(depth, dim1=0, dim2=-2).movedim(-1, -2)  # in the view left out
        # a point behind the camera projects mirrored, often close to the label: no error
        errors = torch.where(depth > 0, errors, torch.full_like(errors, float("nan")))
    return LeaveOneOut(errors.numpy(), np.moveaxis(solved.view_errors, 0, -3))


def _pair_errors(keypoints: np.ndarray, cameras: CameraTensors) -> tuple[np.ndarray, np.ndarray]:
    """Median and 95th percentile ``(P,)`` of the reprojection error of each camera pair's own
    two-view points ``(N, P, K, 3)`` in its two views."""
    points = torch.as_tensor(keypoints, dtype=torch.float64)
    cams = cameras.to(dtype=torch.float64)
    v = points.shape[-3]
    pairs = camera_pairs(v)
    with torch.no_grad():
        solved = triangulate_pairs(points, cams.intrinsics, cams.extrinsics, cams.distortions)
        projected = project_points(solved, cams.intrinsics.unsqueeze(-4),
                                   cams.extrinsics.unsqueeze(-4),
                                   cams.distortions.unsqueeze(-3))  # (N, P, V, K, 2)
        errors = (projected - points.unsqueeze(-4)).norm(dim=-1)  # (N, P, V, K)
    member = np.zeros((len(pairs), v), dtype=bool)
    member[np.arange(len(pairs))[:, None], pairs.numpy()] = True
    errors = np.where(member[:, :, None], errors.numpy(), np.nan)
    _, median, p95 = _stats(_rows_by(errors, -3))
    return median, p95


def _outliers(loo: LeaveOneOut, loo_median: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outlier mask ``(N, V, K)`` (module docstring) and the per-view limits ``(V,)``."""
    v = loo.errors.shape[-2]
    limit = np.fmax(OUTLIER_FACTOR * loo_median, OUTLIER_MIN_PX)  # NaN median -> the floor
    over = loo.errors > limit[:, None]
    others = np.where(np.isfinite(loo.rest), loo.rest, -np.inf).max(-2)  # (N, V, K)
    others = np.where(np.isfinite(loo.errors) & np.isfinite(others), others, np.inf)
    culprit = others.argmin(-2)  # (N, K): leaving it out leaves the most consistent rest
    blamed = over & (np.arange(v)[None, :, None] == culprit[:, None, :])
    return blamed, limit


def check_labels(keypoints: np.ndarray, cameras: CameraTensors, view_names: list[str],
                 keypoint_names: list[str], images: list[list[str]], source: str = "",
                 calibration_files: list[str] | None = None) -> CalibrationCheck:
    """Check ``cameras`` (broadcast to ``(N, V, ...)``) against labels ``keypoints (N, V, K,
    2)`` in frame pixels (NaN = unlabelled); ``images[n][v]`` names the labelled images."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    n, v, k, _ = keypoints.shape
    if n == 0:
        raise DataError(f"{source}: no labelled rows to check the calibration with")
    cams = cameras.to(dtype=torch.float64)
    full: Triangulation = triangulate_predictions(keypoints, cams)
    loo = leave_one_view_out(keypoints, cams)
    with torch.no_grad():
        points = torch.as_tensor(full.points)
        reprojected = project_points(points, cams.intrinsics, cams.extrinsics, cams.distortions)
        # points behind a camera would be drawn mirrored, often onto its labels: not at all
        ahead = _depths(points, cams.extrinsics) > 0
        reprojected = torch.where(ahead[..., None], reprojected,
                                  torch.full_like(reprojected, float("nan"))).numpy()

    labelled = np.isfinite(keypoints).all(-1)  # (N, V, K)
    count, median, p95 = _stats(_rows_by(full.view_errors, 1))
    loo_count, loo_median, loo_p95 = _stats(_rows_by(loo.errors, 1))
    # the other cameras' errors on the points a camera took part in and has a LOO error for
    same = (np.isfinite(full.view_errors) & np.isfinite(loo.errors))[:, :, None, :]
    others = ~np.eye(v, dtype=bool)[None, :, :, None]  # (1, V, U, 1)
    keep = same & others
    with_it = np.where(keep, full.view_errors[:, None], np.nan)  # (N, V, U, K)
    without = np.where(keep, loo.rest, np.nan)
    _, rest_with, _ = _stats(_rows_by(with_it, 1))
    _, rest_without, _ = _stats(_rows_by(without, 1))
    blamed, limit = _outliers(loo, loo_median)
    behind = full.behind_per_view()

    camera_rows = [
        CameraCheck(view_names[i], int(labelled[:, i].sum()), int(count[i]), float(median[i]),
                    float(p95[i]), int(loo_count[i]), float(loo_median[i]), float(loo_p95[i]),
                    float(rest_with[i]), float(rest_without[i]), int(behind[i]),
                    int(blamed[:, i].sum()))
        for i in range(v)
    ]
    geometry = pair_geometry(keypoints, cams, view_names, full.view_errors)
    pair_median, pair_p95 = _pair_errors(keypoints, cams)
    pairs = [PairCheck(g, float(pair_median[p]), float(pair_p95[p]))
             for p, g in enumerate(geometry)]

    rows, views, kps = np.nonzero(blamed)
    errors = loo.errors[rows, views, kps]
    order = np.argsort(-(errors / limit[views]), kind="stable")
    outliers = [Outlier(int(rows[i]), images[rows[i]][views[i]], keypoint_names[kps[i]],
                        view_names[views[i]], float(errors[i]), float(limit[views[i]]))
                for i in order]

    findings = geometry_findings(full, labelled, view_names, geometry)
    findings += [_disagreement(c) for c in camera_rows if c.disagrees]
    notes = []
    if v < 3:
        notes.append(f"leave-one-view-out needs >= 3 cameras ({v} here): its columns are empty "
                     "and no camera can be told apart from the others")
    return CalibrationCheck(source, list(calibration_files or []), list(view_names),
                            list(keypoint_names), images, camera_rows, pairs, outliers, findings,
                            keypoints, full.points, reprojected, loo.errors, notes)


def _disagreement(camera: CameraCheck) -> str:
    """The finding line of a camera that disagrees with the others."""
    return (f"camera {camera.name!r} disagrees with the others: without it their labels fit "
            f"{camera.rest_ratio:.1f}x better ({camera.rest_without:.1f} px median instead of "
            f"{camera.rest_with:.1f} px), and the points they triangulate land "
            f"{camera.loo_median:.1f} px (median) from its labels; check its calibration "
            "(camera moved or turned since, or another camera's parameters)")


def check_project(project: MultiviewProject) -> CalibrationCheck:
    """``check_labels`` on every row of a project (every row needs a calibration)."""
    if not project.has_calibration:
        raise DataError(f"{project.root}: every labelled row needs a calibration to be checked "
                        "(calibration.toml, calibrations/<session>.toml or --calibration)")
    return check_labels(project.keypoints, project.row_cameras(dtype=torch.float64),
                        project.view_names, project.keypoint_names, project.image_paths,
                        source=str(project.root),
                        calibration_files=[str(f) for f in project.calibration_files])


def _number(value: float, width: int, digits: int = 2) -> str:
    """``value`` right-aligned in ``width`` characters, '-' for NaN."""
    return f"{value:{width}.{digits}f}" if math.isfinite(value) else f"{'-':>{width}s}"


def format_report(check: CalibrationCheck, worst: int = WORST_LISTED) -> str:
    """The text report: per-camera table, per-pair table, outliers (the ``worst`` first),
    findings. Printed by ``mvcore calib check`` and written to ``report.txt``."""
    n = len(check.images)
    lines = [f"calibration check of {check.source}: {n} rows, {len(check.view_names)} cameras, "
             f"{len(check.keypoint_names)} keypoints; calibration "
             f"{', '.join(check.calibration_files)}", "",
             "per camera (px): all = triangulated from every view, loo = from the other views "
             "only; rest = the other cameras' median error with / without this one",
             f"  {'camera':>10s} {'labelled':>8s} {'used':>6s} {'all med':>8s} {'all p95':>8s} "
             f"{'loo med':>8s} {'loo p95':>8s} {'rest with':>9s} {'rest w/o':>9s} "
             f"{'behind':>6s} {'outliers':>8s}"]
    for c in check.cameras:
        lines.append(
            f"  {c.name:>10s} {c.labelled:8d} {c.used:6d} {_number(c.median, 8)} "
            f"{_number(c.p95, 8)} {_number(c.loo_median, 8)} {_number(c.loo_p95, 8)} "
            f"{_number(c.rest_with, 9)} {_number(c.rest_without, 9)} {c.behind:6d} "
            f"{c.outliers:8d}")
    lines += ["", "per camera pair: 2-view reprojection error (px) of the points the pair "
              "triangulates alone; median ray angle (deg); baseline (calibration units); "
              "depth error = relative depth error for 'noise' px of 2D error",
              f"  {'pair':>21s} {'points':>6s} {'err med':>8s} {'err p95':>8s} {'angle':>6s} "
              f"{'baseline':>9s} {'narrow':>6s} {'noise':>6s} {'depth err':>9s}  "
              "near-degenerate"]
    for p in check.pairs:
        g = p.geometry
        name = f"{g.views[0]}-{g.views[1]}"
        lines.append(
            f"  {name:>21s} {g.points:6d} {_number(p.median, 8)} {_number(p.p95, 8)} "
            f"{_number(g.angle_deg, 6, 1)} {_number(g.baseline, 9, 1)} {g.narrow:6d} "
            f"{_number(g.noise_px, 6, 1)} {_number(100 * g.depth_error, 8, 2)}%  "
            f"{'YES' if g.near_degenerate else 'no'}")
    used = sum(c.loo_points for c in check.cameras)
    lines += ["", f"outliers: {len(check.outliers)} of {used} labels (loo error > "
              f"max({OUTLIER_FACTOR:g} x the camera's loo median, {OUTLIER_MIN_PX:g} px), "
              "blamed on the camera whose removal leaves the others most consistent)"]
    if check.outliers:
        groups = Counter((o.view, o.keypoint) for o in check.outliers).most_common()
        lines.append("  by camera and keypoint: " + ", ".join(
            f"{view} {keypoint} {count}" for (view, keypoint), count in groups[:worst])
            + (f" and {len(groups) - worst} more" if len(groups) > worst else ""))
        shown = check.outliers[:worst]
        lines.append(f"  the {len(shown)} worst (error / limit):")
        for o in shown:
            lines.append(f"  {o.image}  {o.keypoint}  {o.view}  {o.error:.1f} px "
                         f"(limit {o.limit:.1f})")
    lines += [f"note: {note}" for note in check.notes]
    lines += ["", f"findings: {len(check.findings) or 'none'} (exit {check.exit_code})"]
    lines += [f"  {finding}" for finding in check.findings]
    return "\n".join(lines) + "\n"


def write_reports(check: CalibrationCheck, out_dir: str | Path) -> list[Path]:
    """``report.txt`` (``format_report``) and ``report.json`` (``to_dict``) in ``out_dir``,
    each written atomically (``mvcore.files``)."""
    out = Path(out_dir)
    data = check.to_dict()
    json.dumps(data, allow_nan=False)  # NaN became None: the file is strict JSON
    write_text_atomically(out / "report.txt", format_report(check))
    write_json_atomically(out / "report.json", data)
    return [out / "report.txt", out / "report.json"]
