"""Each distribution declares exactly the libraries its code imports (the core and each
plugin), so a plugin installed on its own has what it needs."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "mvcore": (REPO / "pyproject.toml", REPO / "mvcore"),
    "mv-losses": (REPO / "plugins/mv_losses/pyproject.toml",
                  REPO / "plugins/mv_losses/src/mv_losses"),
    "mv-aug3d": (REPO / "plugins/mv_aug3d/pyproject.toml", REPO / "plugins/mv_aug3d/src/mv_aug3d"),
    "mv-vit": (REPO / "plugins/mv_vit/pyproject.toml", REPO / "plugins/mv_vit/src/mv_vit"),
    "mv-cnn": (REPO / "plugins/mv_cnn/pyproject.toml", REPO / "plugins/mv_cnn/src/mv_cnn"),
}
OWN = {"mvcore", "mv_losses", "mv_aug3d", "mv_vit", "mv_cnn"}
#: imports that come with a declared distribution rather than their own
BUNDLED = {"lightning_fabric": "pytorch-lightning"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported(nodes) -> set[str]:
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    # tomli: the tomllib backport, imported (and declared) on Python < 3.11 only
    return {n for n in names if n not in sys.stdlib_module_names and n not in OWN | {"tomli"}}


def _imports(package: Path) -> tuple[set[str], set[str]]:
    """``(required, optional)`` third-party imports; optional ones sit in a ``try`` whose
    handler catches ImportError (the code works, with less, without them)."""
    required, optional = set(), set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                    isinstance(h.type, ast.Name) and h.type.id in {"ImportError",
                                                                   "ModuleNotFoundError"}
                    for h in node.handlers):
                inner = [n for stmt in node.body for n in ast.walk(stmt)]
                guarded |= {id(n) for n in inner}
                optional |= _imported(inner)
        required |= _imported(n for n in ast.walk(tree) if id(n) not in guarded)
    return required, optional - required


def _names(requirements: list[str]) -> set[str]:
    return {_normalise(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in requirements}


def _declared(pyproject: Path) -> tuple[set[str], set[str]]:
    """``(dependencies, optional-dependency extras' names)``."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return _names(project["dependencies"]), _names(extras)


@pytest.mark.parametrize("dist", sorted(PACKAGES))
def test_declared_dependencies_are_the_imported_ones(dist):
    pyproject, package = PACKAGES[dist]
    providers = importlib.metadata.packages_distributions()

    def distributions(modules: set[str]) -> set[str]:
        found = set()
        for module in modules:
            assert module in providers or module in BUNDLED, (
                f"{dist} imports {module!r}, which is not installed")
            found.add(BUNDLED.get(module) or _normalise(providers[module][0]))
        return found

    required, optional = _imports(package)
    needed = distributions(required)
    declared, extras = _declared(pyproject)
    declared -= {"mvcore", "tomli"}
    assert needed <= declared, f"{dist} imports but does not declare {sorted(needed - declared)}"
    # a declared library may be imported inside an ImportError guard (TensorBoard, which
    # mvcore.training.fit uses when importable): installed by default, yet not required
    imported = needed | distributions(optional)
    assert declared <= imported, (
        f"{dist} declares but never imports {sorted(declared - imported)}")
    wanted = distributions(optional) - declared
    assert wanted <= extras, f"{dist}: optional imports {sorted(wanted - extras)} are in no extra"
