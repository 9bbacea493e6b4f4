"""``mvcore report MODEL_DIR``: one self-contained HTML page about a trained model (metrics,
loss curves, error tables, labelled frames, the predicted sessions in 3D); see
``mvcore.predict.html_report`` and ``docs/report.md``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write one HTML page about a trained model, to open in a browser",
        description=(
            "Write one self-contained HTML page (no network needed to open it) about a model "
            "directory: the run's metrics and config, the loss curves, per-keypoint and "
            "per-view errors on the labelled frames, a few labelled frames, and for each "
            "session predicted into MODEL_DIR/video_preds (`mvcore predict`) the 3D pose "
            "with a frame slider, the keypoint traces with their likelihood and the frames "
            "where the views disagree most. What is missing is said in the page."
        ),
    )
    parser.add_argument("model_dir", help="model directory written by `mvcore train`")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="the HTML file to write (default MODEL_DIR/report.html)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.predict.html_report import write_html_report

    path = write_html_report(args.model_dir, out=args.out)
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB); open it in a browser: file://{path.resolve()}")
    return 0
