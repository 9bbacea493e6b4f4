"""``mvcore train CFG [--set key=value ...]``: train, then predict the labelled frames.

Ends with one line, the verdict (``docs/training.md``): ``trained: ...; model directory: DIR;
next: ...`` (the commands to run next) on stdout and exit code 0; ``error: diverged: ...`` /
``error: failed: ...`` on stderr and exit code 1 (the run went wrong; the last good checkpoint
is kept); ``stopped: ...`` with the ``--resume`` command that continues the run, exit code 130
(Ctrl-C) or 143 (SIGTERM). Input mistakes are ``error: ...`` and exit code 2, as for every
command.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model from a config")
    parser.add_argument("config", help="path to the YAML config")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a key, e.g. --set training.max_epochs=5 (repeatable)",
    )
    parser.add_argument("--output", default=None,
                        help="model directory (default: outputs/<date>/<time> beside the config)")
    parser.add_argument("--resume", default=None, metavar="MODEL_DIR",
                        help="continue the run in MODEL_DIR from its last checkpoint, with the "
                             "config it was trained with")
    parser.set_defaults(func=run)


def resume_command(args: argparse.Namespace, model_dir: object) -> str:
    """The command line that continues this run: the same config and overrides, ``--resume``."""
    words = ["mvcore", "train", args.config]
    for override in args.overrides:
        words += ["--set", override]
    return shlex.join([*words, "--resume", str(model_dir)])


def run(args: argparse.Namespace) -> int:
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.config import load_config
    from mvcore.training.outcome import TrainingFailed, TrainingInterrupted
    from mvcore.workflow import train_run

    config = load_config(args.config, args.overrides)
    try:
        result = train_run(config, output_dir=args.output, resume=args.resume)
    except TrainingFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return TrainingFailed.exit_code
    except TrainingInterrupted as exc:
        if exc.resumable:
            hint = f"continue with: {resume_command(args, exc.model_dir)}"
        else:
            hint = "nothing to resume; run the same command again to start over"
        print(f"{exc.message}; {hint}", file=sys.stderr)
        return exc.exit_code
    print(f"{result.verdict()}; next: {next_commands(result.model_dir, config)}")
    return 0


def next_commands(model_dir: object, config: object) -> str:
    """What to run after training: predict the videos (unless the run did), then the page."""
    where = shlex.quote(str(model_dir))
    report = f"mvcore report {where} (an HTML page of the run)"
    if getattr(getattr(config, "eval", None), "predict_vids_after_training", False):
        return f"{report}; the videos are predicted in {model_dir}/video_preds"
    return f"mvcore predict {where} --labeled-video (the videos: 2D and 3D CSVs), then {report}"
