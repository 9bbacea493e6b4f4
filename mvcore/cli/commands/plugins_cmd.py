"""``mvcore plugins [--json]``: installed plugins, versions, registered names, load errors."""

from __future__ import annotations

import argparse
import json
import os
import warnings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plugins", help="list installed plugins and what they register")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def collect() -> list[dict]:
    """Plugin reports; load errors are collected, never raised (even in strict mode)."""
    from mvcore.plugin.components import build_components
    from mvcore.plugin.manager import ENV_STRICT, get_plugin_manager

    strict = os.environ.pop(ENV_STRICT, None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            manager = get_plugin_manager(load_entrypoints=True)
            errors: dict[str, str] = {}
            try:
                build_components(manager)
            except Exception as exc:  # noqa: BLE001 - e.g. duplicate names: report them
                errors["(registries)"] = f"{type(exc).__name__}: {exc}"
    finally:
        if strict is not None:
            os.environ[ENV_STRICT] = strict
    report = [info.as_dict() for info in manager.report()]
    for name, message in errors.items():
        report.append({"name": name, "version": None, "module": None, "hooks": [],
                       "registered": {}, "error": message})
    return report


def run(args: argparse.Namespace) -> int:
    from mvcore.plugin.manager import strict_mode

    report = collect()
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
            if item["error"]:
                print(f"    LOAD ERROR: {item['error']}")
    has_errors = any(item["error"] for item in report)
    return 1 if has_errors and strict_mode() else 0
