"""``mvcore triangulate``: 3D points from a project's labels, or from the per-view prediction
CSVs of one session, with calibration only (no images, no model).

    mvcore triangulate PROJECT_DIR --out labels_3d.csv
    mvcore triangulate --predictions out/minimal_*.csv --calibration calibration.toml \\
        --out minimal_3d.csv [--threshold 0.5] [--ransac 20]

Problems of the geometry (views that see points from behind, rays that meet at too small an
angle, near-degenerate camera pairs) are printed as warnings and the affected points are left
empty in the CSV; a calibration that cannot be right is an error (exit 2).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

DEFAULT_RANSAC_PX = 20.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "triangulate",
        help="triangulate labels or per-view prediction CSVs into an anipose 3D CSV",
        description="Triangulate a project's labels (PROJECT) or one session's per-view "
                    "prediction CSVs (--predictions) with a calibration; images are not needed.",
    )
    parser.add_argument("project", nargs="?",
                        help="project folder (CollectedData_<view>.csv, calibration.toml)")
    parser.add_argument("--out", required=True, help="3D CSV to write (anipose columns)")
    parser.add_argument("--predictions", nargs="+", metavar="CSV",
                        help="per-view 2D prediction CSVs of one session "
                             "('<session>_<view>.csv', as mvcore predict writes them)")
    parser.add_argument("--calibration", help="anipose calibration TOML (default for a "
                        "project: its calibration.toml or calibrations/<session>.toml)")
    parser.add_argument("--csv-prefix", default="CollectedData", help="label CSV prefix")
    parser.add_argument("--views", nargs="+", default=None,
                        help="view names (project: which label CSVs; predictions: the view of "
                             "each file, in order); default: from the file names")
    parser.add_argument("--threshold", type=float, default=None,
                        help="predictions: views below this likelihood take no part "
                             "(default 0.5)")
    parser.add_argument("--ransac", type=float, nargs="?", const=DEFAULT_RANSAC_PX,
                        default=None, metavar="PX",
                        help="leave out, per point, the views that disagree with the others "
                             f"by more than PX pixels (default {DEFAULT_RANSAC_PX:g})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    import numpy as np

    # lazy: as above
    from mvcore.data.csv_io import write_3d_csv
    from mvcore.data.triangulate import (
        DEFAULT_CONFIDENCE_THRESHOLD,
        check_view_order,
        geometry_findings,
        pair_geometry,
        triangulate_predictions,
        triangulate_ransac,
    )
    from mvcore.errors import DataError

    if (args.project is None) == (args.predictions is None):
        raise DataError("give a project folder or --predictions CSV ... (one of them)")
    if args.ransac is not None and not args.ransac > 0:
        raise DataError(f"--ransac: the inlier distance must be > 0 px, got {args.ransac}")
    if args.predictions is not None:
        source = _predictions(args)
    else:
        if args.threshold is not None:
            raise DataError("--threshold applies to --predictions (labels have no likelihood)")
        source = _project(args)
    keypoints, cameras, view_names = source["keypoints"], source["cameras"], source["views"]
    confidences = source["confidences"]
    threshold = DEFAULT_CONFIDENCE_THRESHOLD if args.threshold is None else args.threshold
    offered = np.isfinite(keypoints).all(-1)
    if confidences is not None:
        offered &= np.asarray(confidences) >= threshold
    check_view_order(np.where(offered[..., None], keypoints, np.nan), cameras, view_names,
                     source["what"])
    rejected = None
    if args.ransac is not None:
        result, rejected = triangulate_ransac(keypoints, cameras, confidences, threshold,
                                              inlier_px=args.ransac)
    else:
        result = triangulate_predictions(keypoints, cameras, confidences, threshold)
    pairs = pair_geometry(keypoints, cameras, view_names, result.view_errors)
    for line in geometry_findings(result, offered, view_names, pairs):
        warnings.warn(line, stacklevel=1)

    write_3d_csv(args.out, result.points, result.errors, result.ncams, source["keypoint_names"],
                 scores=None if confidences is None else result.scores, fnum=source["fnum"])
    n, k = result.ncams.shape
    made = int((result.ncams >= 2).sum())
    print(f"wrote {args.out}: {n} frames x {k} keypoints, {made} of {n * k} points "
          f"triangulated ({source['what']})")
    _print_views(view_names, result, offered, rejected)
    return 0


def _project(args: argparse.Namespace) -> dict[str, Any]:
    """Labels of a project folder (images not needed)."""
    # lazy: imported when the command runs (as in run)
    import numpy as np
    import torch

    # lazy: as above
    from mvcore.data.project import project_from_folder

    project = project_from_folder(args.project, args.csv_prefix, args.views, args.calibration)
    return {
        "keypoints": project.keypoints,
        "cameras": project.row_cameras(dtype=torch.float64),
        "confidences": None,
        "views": project.view_names,
        "keypoint_names": project.keypoint_names,
        "fnum": np.arange(len(project)),
        "what": f"labels of {Path(args.project)}",
    }


def _predictions(args: argparse.Namespace) -> dict[str, Any]:
    """One session's per-view prediction CSVs."""
    # lazy: imported when the command runs (as in run)
    import numpy as np
    import torch

    # lazy: as above
    from mvcore.data.triangulate import read_prediction_files
    from mvcore.errors import DataError
    from mvcore.geometry import load_calibration

    if not args.calibration:
        raise DataError("--predictions needs --calibration FILE.toml")
    group = load_calibration(args.calibration)
    files = read_prediction_files(args.predictions, group, args.calibration, args.views)
    index = files.index
    fnum = np.arange(len(index))
    if all(str(i).lstrip("-").isdigit() for i in index):
        fnum = np.array([int(i) for i in index])
    return {
        "keypoints": files.keypoints,
        "cameras": files.cameras.to_tensors(dtype=torch.float64),
        "confidences": files.likelihood,
        "views": files.view_names,
        "keypoint_names": files.keypoint_names,
        "fnum": fnum,
        "what": f"{len(files.paths)} prediction files",
    }


def _print_views(view_names: list[str], result: Any, offered: Any, rejected: Any) -> None:
    """Per view: median reprojection error of the points it took part in, and counts."""
    # lazy: imported when the command runs (as in run)
    import numpy as np

    print("per view: median reprojection error (px; docs/metrics.md), points used of offered"
          + (", left out by RANSAC" if rejected is not None else "")
          + ", behind the camera")
    behind = result.behind_per_view()
    for v, name in enumerate(view_names):
        errors = result.view_errors[..., v, :]
        errors = errors[np.isfinite(errors)]
        median = f"{np.median(errors):7.2f}" if errors.size else "      -"
        used = int(np.isfinite(result.view_errors[..., v, :]).sum())
        line = f"  {name:>12s}  {median}  {used:6d} of {int(offered[..., v, :].sum()):6d}"
        if rejected is not None:
            line += f"  {int(rejected[..., v, :].sum()):6d}"
        print(f"{line}  {int(behind[v]):6d}")
