"""``mvcore triangulate PROJECT_DIR --out FILE.csv``: triangulate a project's labels."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "triangulate", help="triangulate the labels of a calibrated project into a 3D CSV"
    )
    parser.add_argument("project", help="project folder (labeled-data/, CollectedData_*.csv)")
    parser.add_argument("--out", required=True, help="3D CSV to write (anipose columns)")
    parser.add_argument("--csv-prefix", default="CollectedData", help="label CSV prefix")
    parser.add_argument("--views", nargs="+", default=None,
                        help="view names (default: from the CSV names, in calibration order)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.config.schema import DataConfig, MvConfig
    from mvcore.data.project import MultiviewProject
    from mvcore.data.triangulate import triangulate_project, write_triangulation_csv
    from mvcore.errors import DataError
    from mvcore.geometry import load_calibration

    root = Path(args.project)
    views = args.views
    if views is None:
        calibration = root / "calibration.toml"
        prefix = f"{args.csv_prefix}_"
        found = sorted(p.stem[len(prefix):] for p in root.glob(f"{prefix}*.csv"))
        if calibration.is_file():
            names = load_calibration(calibration).names
            views = [n for n in names if n in found] or found
        else:
            views = found
    if len(views) < 2:
        raise DataError(
            f"{root}: found {len(views)} '{args.csv_prefix}_<view>.csv' files; need >= 2"
        )
    config = MvConfig(data=DataConfig(
        data_dir=str(root.resolve()), view_names=views,
        csv_file=[f"{args.csv_prefix}_{v}.csv" for v in views],
    ))
    project = MultiviewProject.from_config(config)
    if not project.has_calibration:
        raise DataError(f"{root}: no calibration found (calibration.toml or calibrations/*.toml)")
    result = triangulate_project(project)
    write_triangulation_csv(project, result["triangulation"], args.out)
    print(f"wrote {args.out} ({len(project)} frames x {len(project.keypoint_names)} keypoints)")
    print("median label reprojection error (px; docs/metrics.md):")
    for view, value in result["median_error_per_view"].items():
        print(f"  {view:>12s}  {value:7.2f}")
    return 0
