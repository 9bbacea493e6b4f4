"""``mvcore example-data DIR``: write the built-in synthetic multi-camera project."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "example-data", help="write a small synthetic calibrated multi-camera project",
        description=("Write a small synthetic calibrated multi-camera project (videos, labelled "
                     "frames, label CSVs, calibration, ground truth, config.yaml) into DIR. "
                     "The project is written beside DIR and moved in when complete: an "
                     "interrupted run leaves no half project."),
    )
    parser.add_argument("directory", help="output folder (created; must be empty unless "
                                           "--overwrite)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty folder: the project's files replace "
                             "those of the same name, other files stay")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.example import make_example_project

    config_path = make_example_project(args.directory, seed=args.seed,
                                       overwrite=args.overwrite)
    print(f"wrote example project; config: {config_path}")
    print(f"train it with: mvcore train {config_path}")
    return 0
