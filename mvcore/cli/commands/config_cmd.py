"""``mvcore config check|show CFG``: validate a config against the plugins and the project."""

from __future__ import annotations

import argparse

import yaml


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="check or show a config file")
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    for name, helptext in (
        ("check", "validate a config: its shape, each component's parameters, and (unless "
                  "--no-data) the project's labels and calibration"),
        ("show", "print the resolved config with every default filled in"),
    ):
        action = sub.add_parser(name, help=helptext)
        action.add_argument("config", help="path to the YAML config")
        action.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
            help="override a key, e.g. --set training.max_epochs=5 (repeatable)",
        )
        if name == "check":
            action.add_argument("--no-data", action="store_true",
                                help="do not read the project (its labels, images and "
                                     "calibration); check the config and plugins only")
        action.set_defaults(func=run_check if name == "check" else run_show)


def run_check(args: argparse.Namespace) -> int:
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.build import make_context, plan_run
    from mvcore.config import load_config
    from mvcore.plugin.components import load_components

    config = load_config(args.config, args.overrides)
    components = load_components()
    context = None
    frames = 0
    if not args.no_data:
        # lazy: the project reader is imported only when the project is read
        from mvcore.data.project import MultiviewProject

        project = MultiviewProject.from_config(config)  # labels, images, calibration checked
        context = make_context(config, project)
        frames = len(project)
    plan = plan_run(config, components, context)
    variant = config.lightning_pose.get("model.backbone")
    model = plan.backbone.name + (f" / {variant}" if variant else "")
    checked = ("config and plugins only (--no-data)" if context is None else
               f"{frames} labelled frames, {context.num_views} views, "
               f"{context.num_keypoints} keypoints, "
               f"{'calibrated' if context.has_calibration else 'no calibration'}")
    print(f"{args.config}: OK (losses: {', '.join(plan.loss_names)}; model: {model}; "
          f"augmenters: {', '.join(s.name for s in plan.augmenters) or 'none'}; {checked})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.config import dump_config, load_config

    config = load_config(args.config, args.overrides)
    print(yaml.safe_dump(dump_config(config), sort_keys=False), end="")
    return 0
