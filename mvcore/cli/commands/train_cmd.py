"""``mvcore train CFG [--set key=value ...]``: train, then predict the labelled frames."""

from __future__ import annotations

import argparse


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
                        help="continue the run in MODEL_DIR from its last checkpoint")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.config import load_config
    from mvcore.workflow import train

    config = load_config(args.config, args.overrides)
    model_dir = train(config, output_dir=args.output, resume=args.resume)
    print(f"model directory: {model_dir}")
    return 0
