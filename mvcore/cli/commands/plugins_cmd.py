"""``mvcore plugins [--json] [--check]``: installed plugins, versions, names and problems."""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plugins", help="list installed plugins and what they register")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--check", action="store_true",
                        help="also import every lazily registered component (slower: imports "
                             "torch) and report those that do not import")
    parser.set_defaults(func=run)


def collect(check: bool = False) -> tuple[list[dict], bool]:
    """Plugin reports and whether strict mode is on; problems are collected, never raised."""
    # lazy: the work of this command is imported when it runs, so mvcore --help stays fast
    from mvcore.plugin.components import build_components
    from mvcore.plugin.manager import PluginSettings, get_plugin_manager

    settings = PluginSettings.from_env()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manager = get_plugin_manager(load_entrypoints=True,
                                     settings=dataclasses.replace(settings, strict=False))
        build_components(manager, check=check or settings.strict)
    return [info.as_dict() for info in manager.report()], settings.strict


def run(args: argparse.Namespace) -> int:
    report, strict = collect(check=args.check)
    if args.json:
        print(json.dumps({"plugins": report}, indent=2))
    else:
        if not report:
            print("no mvcore plugins installed (try: pip install mv-losses mv-vit mv-aug3d)")
        for item in report:
            version = f" {item['version']}" if item["version"] else ""
            print(f"{item['name']}{version}" + (f"  ({item['module']})" if item["module"] else ""))
            for kind, names in sorted(item["registered"].items()):
                if names:
                    print(f"    {kind}: {', '.join(names)}")
            for kind, names in sorted(item["disabled"].items()):
                for name, reason in names.items():
                    print(f"    {kind} {name}: DISABLED, {reason}")
            for problem in item["problems"]:
                print(f"    PROBLEM: {problem}")
    has_problems = any(item["problems"] for item in report)
    return 1 if has_problems and (strict or args.check) else 0
