"""``mvcore evaluate MODEL_DIR``: pixel error, PCK, reprojection and 3D error of predictions."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from shlex import quote


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model's labelled-frame predictions (pixel error, PCK, 3D)",
        description=(
            "Compare predictions on the labelled frames (MODEL_DIR/predictions_<view>.csv, or "
            "--csv files) with the project labels: pixel error per keypoint and view, PCK at "
            "5/10/20 px and at 5% of the bbox diagonal, the multi-view reprojection error "
            "and, where ground_truth_3d.csv exists, the 3D error. Prints a table and writes "
            "CSVs to MODEL_DIR/eval/ (each complete or absent; summary.csv last)."
        ),
    )
    parser.add_argument("model_dir", help="model directory written by `mvcore train`")
    parser.add_argument("--csv", nargs="+", default=None, metavar="FILE",
                        help="prediction CSVs, one per view in the config's view order "
                             "(default: MODEL_DIR/predictions_<view>.csv)")
    parser.add_argument("--gt-3d", default=None, metavar="CSV",
                        help="ground-truth 3D CSV (frame, <kp>_x/_y/_z; default: "
                             "ground_truth_3d.csv in the data directory, if any)")
    parser.add_argument("--confidence-threshold", type=float, default=None, metavar="P",
                        help="views below this confidence are left out of the triangulation "
                             "(default 0.5, as `mvcore predict`)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="where to write the CSVs (default MODEL_DIR/eval)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.predict.evaluate import evaluate_model, format_report

    result = evaluate_model(args.model_dir, csv_files=args.csv, ground_truth_3d=args.gt_3d,
                            confidence_threshold=args.confidence_threshold, out_dir=args.out)
    print(format_report(result))
    print(f"wrote {', '.join(str(p) for p in result.written)}")
    print(evaluation_summary(result.summary, result.main_split, result.written,
                             args.model_dir))
    return 0


def evaluation_summary(summary: dict[str, float], split: str, written: list[Path],
                       model_dir: str) -> str:
    """One line: the headline errors of ``split`` (2D pixel error, 3D error where there is
    ground truth), where the tables are, and what to run next."""
    def value(name: str, unit: str) -> str | None:
        got = summary.get(f"{split}_{name}")
        return None if got is None or not math.isfinite(got) else f"{got:.2f} {unit}"

    parts = [f"{label} {shown}" for label, shown in (
        ("pixel error mean", value("pixel_error_mean", "px")),
        ("median", value("pixel_error_median", "px")),
        ("3D error median", value("3d_error_median", "world units"))) if shown]
    tables = written[-1].parent if written else Path(model_dir) / "eval"
    measured = ", ".join(parts) if parts else "no error measured"
    return (f"evaluated ({split} split): {measured}; tables in {tables} (summary.csv); "
            f"next: mvcore report {quote(str(model_dir))}")
