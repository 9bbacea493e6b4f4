"""``mvcore calib ACTION``: calibration files. ``convert`` turns other tools' files (OpenCV
YAML / XML, Label3D / DANNCE ``.mat``) into one anipose TOML; ``check`` measures how well a
calibration explains a project's labels and exits 1 when something is wrong.

Each action is one ``_register_<action>(actions)`` function adding its parser to the
sub-parsers of ``calib`` and one ``run_<action>(args)``; a new action (``check``, say) adds a
pair and one line in ``register``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

FORMATS = ("opencv", "matlab")  # mvcore.geometry.calibration_formats.CALIBRATION_FORMATS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calib", help="calibration files: convert other tools' files to anipose TOML, check "
                      "a calibration against a project's labels"
    )
    actions = parser.add_subparsers(dest="calib_command", metavar="ACTION", required=True)
    _register_convert(actions)
    _register_check(actions)


def _register_convert(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "convert",
        help="convert OpenCV YAML / XML or Label3D / DANNCE .mat calibrations to anipose TOML",
        description="Read one or more calibration files (each holds one camera, or several) "
                    "and write one anipose calibration TOML; see docs/calibration.md for the "
                    "layouts and conventions.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help=".yml / .yaml / .xml (OpenCV FileStorage) or .mat (MATLAB)")
    parser.add_argument("--out", required=True, help="anipose calibration TOML to write")
    parser.add_argument("--names", nargs="+", default=None, metavar="NAME",
                        help="camera names, one per camera in file order (default: each "
                             "file's stem, or the names a multi-camera file stores)")
    parser.add_argument("--size", nargs=2, type=float, default=None, metavar=("W", "H"),
                        help="image width and height in pixels, for files that have none")
    parser.add_argument("--format", dest="file_format", choices=FORMATS, default=None,
                        help="file format (default: from each extension)")
    parser.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.geometry import convert_calibration, save_calibration_atomically

    group = convert_calibration(args.files, names=args.names, size=args.size,
                                file_format=args.file_format)
    out = save_calibration_atomically(group, args.out)
    print(f"wrote {out} ({group.num_views} cameras, anipose TOML)")
    width = max(len(name) for name in group.names)
    for i, name in enumerate(group.names):
        w, h = (int(s) if float(s).is_integer() else s for s in group.sizes[i])
        fx, fy = group.intrinsics[i, 0, 0], group.intrinsics[i, 1, 1]
        print(f"  {name:<{width}s}  {w}x{h} px  fx {fx:.1f}  fy {fy:.1f}")
    return 0


def _register_check(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "check",
        help="check a calibration against a project's labels (exit 1 when something is wrong)",
        description="Triangulate the labels of a project folder from all views and leaving "
                    "each view out; print per-camera and per-pair reprojection errors, outlier "
                    "labels and findings (a camera seeing points from behind, rays too close "
                    "to parallel, near-degenerate pairs, a camera that disagrees with the "
                    "others); write report.txt, report.json, rig.png and reprojection.png. "
                    "Exit 0: nothing wrong, 1: findings, 2: an error in the input. See "
                    "docs/calibration.md.",
    )
    parser.add_argument("project",
                        help="project folder (CollectedData_<view>.csv, calibration.toml)")
    parser.add_argument("--calibration", help="anipose calibration TOML (default: the "
                        "project's calibration.toml or calibrations/<session>.toml)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder for the reports and PNGs (default: PROJECT/calib_check)")
    parser.add_argument("--csv-prefix", default="CollectedData", help="label CSV prefix")
    parser.add_argument("--views", nargs="+", default=None,
                        help="which label CSVs (view names), in order; default: all, in the "
                             "calibration's order")
    parser.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.calib.check import check_project, format_report, write_reports
    from mvcore.calib.plots import plot_project
    from mvcore.data.project import project_from_folder
    from mvcore.files import writable_dir

    project = project_from_folder(args.project, args.csv_prefix, args.views, args.calibration)
    out = writable_dir(args.out if args.out else Path(args.project) / "calib_check", "--out")
    check = check_project(project)
    print(format_report(check), end="")
    for finding in check.findings:
        warnings.warn(finding, stacklevel=1)
    written = write_reports(check, out) + plot_project(check, project, out)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return check.exit_code
