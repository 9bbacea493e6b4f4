"""Entry point of the ``mvcore`` command.

argparse (standard library) rather than click: no extra dependency, fast start-up, and plugins
add commands by receiving the sub-parsers object through ``mvcore_add_cli_commands``.
``mvcore --help``, ``--version`` and ``mvcore plugins`` never fail because of a broken plugin.
Exit codes: 0 done, 2 a mistake in the input (``MvcoreError``, one line), 1 a file-system
failure (disk full, read-only; one line, ``MVCORE_DEBUG=1`` re-raises) or a run that did not
succeed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from mvcore import __version__
from mvcore.cli.commands import (
    calib_cmd,
    config_cmd,
    evaluate_cmd,
    example_cmd,
    import_cmd,
    plugins_cmd,
    predict_cmd,
    report_cmd,
    train_cmd,
    triangulate_cmd,
)
from mvcore.cli.console import quiet_console
from mvcore.errors import MvcoreError

CORE_COMMANDS = (plugins_cmd, config_cmd, train_cmd, predict_cmd, evaluate_cmd, report_cmd,
                 example_cmd, triangulate_cmd, calib_cmd, import_cmd)


def build_parser(with_plugin_commands: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mvcore",
        description="Multi-view pose estimation: train, predict and triangulate with plugins.",
    )
    parser.add_argument("--version", action="version", version=f"mvcore {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in CORE_COMMANDS:
        module.register(subparsers)
    if with_plugin_commands:
        _add_plugin_commands(subparsers)
    return parser


def _add_plugin_commands(subparsers: argparse._SubParsersAction) -> None:
    """Let plugins add commands; a failing plugin loses its commands, never the CLI. Plugin
    problems are reported by the command that uses the plugins (and ``mvcore plugins``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # lazy: plugins are loaded only when their commands may be wanted
        from mvcore.plugin.manager import get_plugin_manager

        get_plugin_manager(load_entrypoints=True).add_cli_commands(subparsers)


def main(argv: list[str] | None = None) -> int:
    quiet_console()  # one-line warnings; no libraries' deprecations, tips (cli/console.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_help_only = not argv or argv[0] in {"-h", "--help", "--version"}
    parser = build_parser(with_plugin_commands=not wants_help_only or "--help" in argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except MvcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the file system, not the input: full, read-only, gone
        if os.environ.get("MVCORE_DEBUG"):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc} ({type(exc).__name__}); free space or "
              "fix the path and run the command again (MVCORE_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
