"""``mvcore example-data DIR``: write the built-in synthetic multi-camera project."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "example-data", help="write a small synthetic calibrated multi-camera project"
    )
    parser.add_argument("directory", help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.example import make_example_project

    config_path = make_example_project(args.directory, seed=args.seed)
    print(f"wrote example project; config: {config_path}")
    print(f"train it with: mvcore train {config_path}")
    return 0
