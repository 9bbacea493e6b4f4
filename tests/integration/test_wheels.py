"""The five distributions build as wheels and, installed into a fresh virtual environment,
register through their entry points (`mvcore plugins --json`)."""

import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

REPO = Path(__file__).resolve().parents[2]
PROJECTS = [REPO, REPO / "plugins" / "mv_losses", REPO / "plugins" / "mv_aug3d",
            REPO / "plugins" / "mv_vit", REPO / "plugins" / "mv_cnn"]


def test_wheels_install_into_a_fresh_venv_and_register(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(wheels), *map(str, PROJECTS)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    built = sorted(p.name.split("-")[0] for p in wheels.glob("*.whl"))
    assert built == ["mv_aug3d", "mv_cnn", "mv_losses", "mv_vit", "mvcore"]
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print("
                              "sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the wheels go into the fresh venv; their heavy dependencies (torch, ...) are borrowed
    # from this environment through a .pth line instead of being downloaded again
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--no-index", *map(str, sorted(wheels.glob("*.whl")))],
        check=True, capture_output=True, text=True, timeout=600,
    )
    Path(purelib, "borrowed_dependencies.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MVCORE_")}
    env["MVCORE_STRICT_PLUGINS"] = "1"
    result = subprocess.run([str(env_dir / "bin" / "mvcore"), "plugins", "--json"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert {"mv-losses", "mv-aug3d", "mv-vit", "mv-cnn"} <= set(plugins)
    assert all(p["error"] is None for p in plugins.values())
    assert "heatmap_mse" in plugins["mv-losses"]["registered"]["loss"]
    assert plugins["mv-vit"]["registered"]["backbone"] == ["heatmap_multiview_transformer"]
    assert plugins["mv-cnn"]["registered"]["backbone"] == ["heatmap"]
    where = subprocess.run([str(python), "-c", "import mvcore, mv_losses; "
                            "print(mvcore.__file__); print(mv_losses.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert all(line.startswith(purelib) for line in where.stdout.split())
