"""``mvcore config check|show CFG``: validate a config against the installed plugins."""

from __future__ import annotations

import argparse

import yaml


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="check or show a config file")
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    for name, helptext in (
        ("check", "validate a config (shape, then each plugin's parameters)"),
        ("show", "print the resolved config with every default filled in"),
    ):
        action = sub.add_parser(name, help=helptext)
        action.add_argument("config", help="path to the YAML config")
        action.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
            help="override a key, e.g. --set training.max_epochs=5 (repeatable)",
        )
        action.set_defaults(func=run_check if name == "check" else run_show)


def run_check(args: argparse.Namespace) -> int:
    from mvcore.config import load_config, validate_components
    from mvcore.plugin.components import load_components

    config = load_config(args.config, args.overrides)
    names = validate_components(config, load_components())
    print(f"{args.config}: OK (losses: {', '.join(names)}; model: {config.model.model_type} / "
          f"{config.model.backbone})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from mvcore.config import load_config

    config = load_config(args.config, args.overrides)
    data = config.model_dump(mode="json", exclude={"config_dir"})
    print(yaml.safe_dump(data, sort_keys=False), end="")
    return 0
