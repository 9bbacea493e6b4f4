"""Import hygiene of mvcore: a function-local import says why it is not at the top, and the
command line starts without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _local_import_blocks(path: Path) -> list[int]:
    """First line numbers of the runs of consecutive imports inside functions."""
    lines = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    lines.update(range(inner.lineno, inner.end_lineno + 1))
    return sorted(n for n in lines if n - 1 not in lines)


def test_every_function_local_import_gives_its_reason():
    missing = []
    for path in sorted((REPO / "mvcore").rglob("*.py")):
        text = path.read_text().splitlines()
        for line in _local_import_blocks(path):
            if not text[line - 2].strip().startswith("# lazy:"):
                missing.append(f"{path.relative_to(REPO)}:{line}: {text[line - 1].strip()}")
    assert not missing, ("function-local imports without a '# lazy: <reason>' comment above "
                         "them (or move them to the top of the module):\n" + "\n".join(missing))


def test_the_command_line_starts_without_torch():
    code = ("import sys\nfrom mvcore.cli.main import build_parser\n"
            "build_parser(with_plugin_commands=True)\nprint('torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
