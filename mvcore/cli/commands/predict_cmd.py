"""``mvcore predict MODEL_DIR``: predict synchronised multi-view videos (2D, 3D, labelled)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from shlex import quote
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict <session>_<view>.mp4 videos with a trained model (2D and 3D CSVs)",
        description=(
            "Predict every session (<session>_<view>.mp4, all views) of a video directory. "
            "Writes <out>/<session>_<view>.csv (DeepLabCut format, frame pixels), "
            "<out>/<session>_3d.csv (anipose format) when the project is calibrated, and "
            "with --labeled-video <out>/labeled_videos/<session>_<view>_labeled.mp4. Each file "
            "appears only when complete; a session is skipped when its manifest "
            "(<out>/.mvcore/<session>.json, written last) matches its videos, calibration, "
            "checkpoint and settings, and predicted again otherwise. The output folder is "
            "locked while predict runs. A video that fails part-way keeps the frames before "
            "it as <session>_<view>.incomplete.csv (and exits 2). --devices N shares the "
            "sessions out among N processes (one per GPU); under srun or torchrun each "
            "process is one of them (docs/cluster.md). See docs/predict.md. Several model "
            "directories (same views and keypoints): each model's predictions in "
            "<out>/models/<name>, the ensemble's (mean, variance over models) in "
            "<out>/ensemble, and with --smooth eks the multi-camera Ensemble Kalman "
            "Smoother's in <out>/eks (docs/ensembles.md)."
        ),
    )
    parser.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR",
                        help="model directory written by `mvcore train`; several: an ensemble")
    parser.add_argument("--smooth", default=None, choices=["eks"],
                        help="smooth the (ensemble's) predictions with the multi-camera Ensemble "
                             "Kalman Smoother of the ensemble-kalman-smoother package "
                             '(pip install "mvcore[smooth]"); needs --out')
    parser.add_argument("--videos", default=None, metavar="DIR",
                        help="video directory (default: the config's data.video_dir)")
    parser.add_argument("--session", default=None, metavar="NAME",
                        help="predict only this session")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output directory (default: MODEL_DIR/video_preds)")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N",
                        help="frames per forward pass, all views together (default 16)")
    parser.add_argument("--precision", default="32", choices=["32", "16-mixed", "bf16-mixed"],
                        help="network precision (the keypoint read-out stays float32)")
    parser.add_argument("--checkpoint", default="best",
                        help="best, last or a .ckpt path (default best; last.ckpt, with a "
                             "warning, when the run wrote no best.ckpt)")
    parser.add_argument("--confidence-threshold", type=float, default=None, metavar="P",
                        help="views below this confidence are left out of the 3D "
                             "triangulation (default 0.5, anipose's score_threshold)")
    parser.add_argument("--labeled-video", action="store_true",
                        help="also write labelled videos (one per view)")
    parser.add_argument("--video-threshold", type=float, default=None, metavar="P",
                        help="labelled videos hide points below this confidence (default: "
                             "the config's eval.confidence_thresh_for_vid)")
    parser.add_argument("--calibration", default=None, metavar="TOML",
                        help="anipose calibration to use instead of the project's")
    parser.add_argument("--overwrite", action="store_true",
                        help="predict sessions whose manifest matches too")
    parser.add_argument("--device", default=None,
                        help="torch device (default: cuda if any); with --devices, the type "
                             "(cuda, cpu): process r of a node uses cuda:r")
    parser.add_argument("--devices", type=int, default=None, metavar="N",
                        help="processes per node, one per GPU, each predicting whole sessions "
                             "(default 1; under srun or torchrun: the processes they started)")
    parser.add_argument("--num-nodes", type=int, default=None, metavar="M",
                        help="nodes of a run started by srun or torchrun (default 1); "
                             "--devices x --num-nodes must be the number of processes")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.data.triangulate import DEFAULT_CONFIDENCE_THRESHOLD
    from mvcore.errors import ConfigError
    from mvcore.predict.distributed import RankFailed, predict_distributed

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    threshold = args.confidence_threshold
    if len(args.model_dirs) > 1 or args.smooth is not None:
        return _run_ensemble(args, DEFAULT_CONFIDENCE_THRESHOLD if threshold is None
                             else threshold)
    try:
        run = predict_distributed(
            args.model_dirs[0], video_dir=args.videos, session=args.session, out_dir=args.out,
            batch_size=args.batch_size, precision=args.precision,
            labeled_video=args.labeled_video, overwrite=args.overwrite,
            checkpoint=args.checkpoint,
            confidence_threshold=DEFAULT_CONFIDENCE_THRESHOLD if threshold is None
            else threshold, video_threshold=args.video_threshold,
            calibration=args.calibration, device=args.device, devices=args.devices,
            num_nodes=args.num_nodes,
        )
    except RankFailed as exc:  # a process crashed or died: not a mistake in the input
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not run.is_main:  # rank 0 reports for every process
        return run.exit_code
    done = sum(r.status == "predicted" for r in run.results)
    by = f" by {run.processes} processes" if run.processes > 1 else ""
    print(f"{done} session(s) predicted{by}, {len(run.results) - done} skipped; "
          f"{prediction_summary(run.results, args.model_dirs[0], args.out)}")
    return 0


def prediction_summary(results: list[Any], model_dir: str, out: str | None) -> str:
    """Where the CSVs are, the frames and their rate, and what to run next (the report page
    shows the sessions of ``MODEL_DIR/video_preds``, the default output folder)."""
    folder = Path(out) if out is not None else Path(model_dir) / "video_preds"
    predicted = [r for r in results if r.status == "predicted"]
    frames = sum(r.num_frames for r in predicted)
    seconds = sum(r.seconds for r in predicted)
    rate = f" ({frames / seconds:.1f} frames/s)" if frames and seconds > 0 else ""
    files = "<session>_<view>.csv" + (", <session>_3d.csv" if any(
        r.calibration is not None for r in results) else "")
    said = (f"{frames} frames{rate}; " if predicted else "") + f"CSVs in {folder} ({files})"
    if out is None or folder.resolve() == (Path(model_dir) / "video_preds").resolve():
        return f"{said}; next: mvcore report {quote(str(model_dir))}"
    return f"{said}; mvcore report shows the sessions of {Path(model_dir) / 'video_preds'}"


def _run_ensemble(args: argparse.Namespace, threshold: float) -> int:
    """Several models and/or ``--smooth``: ``mvcore.predict.ensemble.predict_ensemble``."""
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.errors import ConfigError
    from mvcore.predict.ensemble import predict_ensemble

    what = "an ensemble (several model directories)" if len(args.model_dirs) > 1 \
        else "--smooth"
    if args.out is None:
        raise ConfigError(f"{what} needs --out DIR: the folder of the ensemble's outputs")
    for flag, given in (("--labeled-video", args.labeled_video),
                        ("--devices", args.devices not in (None, 1)),
                        ("--num-nodes", args.num_nodes not in (None, 1))):
        if given:
            raise ConfigError(f"{flag} is not available with {what}; predict one model "
                              "without --smooth for it")
    results = predict_ensemble(
        args.model_dirs, args.out, video_dir=args.videos, session=args.session,
        smooth=args.smooth, batch_size=args.batch_size, precision=args.precision,
        overwrite=args.overwrite, checkpoint=args.checkpoint, confidence_threshold=threshold,
        calibration=args.calibration, device=args.device)
    done = sum(r.status == "predicted" for r in results)
    print(f"{done} session(s) of the ensemble written, {len(results) - done} skipped -> "
          f"{args.out}")
    return 0
