"""A third-party loss package, installed for real, is found through its entry point.

Nothing in mvcore changes: the package is built from files written here, installed into a
temporary folder with pip, and exercised through the CLI in subprocesses.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "mv-acme-losses"
version = "1.2.3"
dependencies = []

[project.entry-points.mvcore]
mv-acme-losses = "mv_acme_losses.plugin"
"""

PLUGIN = """
from mvcore import hookimpl


@hookimpl
def mvcore_register_losses(registry):
    registry.add("mv_acme_losses.bone:BoneLengthLoss", name="acme_bone_length")
"""

BONE = """
import torch
from mvcore import Loss, LossParams


class BoneParams(LossParams):
    bones: list[tuple[int, int]] = [(0, 1)]


class BoneLengthLoss(Loss):
    loss_name = "acme_bone_length"
    Params = BoneParams
    supervised = False

    def __init__(self, bones=((0, 1),), **kwargs):
        super().__init__(**kwargs)
        self.register_buffer("bones", torch.as_tensor(bones))

    def __call__(self, keypoints_pred, stage=None, **kwargs):
        points = keypoints_pred.reshape(keypoints_pred.shape[0], -1, 2)
        lengths = (points[:, self.bones[:, 0]] - points[:, self.bones[:, 1]]).norm(dim=-1)
        scalar = self.reduce_loss(lengths.var(dim=0))
        return self.weight * scalar, self.log_loss(scalar, stage)
"""

CONFIG = """
data:
  view_names: [top, side]
  csv_file: [CollectedData_top.csv, CollectedData_side.csv]
model:
  model_type: heatmap_multiview_transformer
  backbone: vit_micro_scratch
  backbone_pretrained: false
  losses_to_use: [acme_bone_length]
training:
  imgaug: none
  imgaug_3d: false
losses:
  acme_bone_length:
    log_weight: 2.0
    bones: [[0, 1], [1, 2]]
"""

BUILD_FACTORY = """
from mvcore.config import load_config
from mvcore.losses import LossFactory
from mvcore.plugin.components import load_components
config = load_config("{config}")
components = load_components()
factory = LossFactory.from_config(config, components.losses, supervised=False)
loss = factory.losses["acme_bone_length"]
print(type(loss).__module__, loss.bones.tolist(), components.losses.entry(
    "acme_bone_length").provider_label)
"""


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    root = tmp_path_factory.mktemp("acme")
    package = root / "src" / "mv_acme_losses"
    package.mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(textwrap.dedent(PLUGIN))
    (package / "bone.py").write_text(textwrap.dedent(BONE))
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(root)],
        check=True, capture_output=True, text=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    for key in ("MVCORE_LOAD_PLUGINS", "MVCORE_DISABLE_PLUGINS"):
        env.pop(key, None)
    env["MVCORE_STRICT_PLUGINS"] = "1"
    return root, env


def run(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "mvcore.cli.main", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_plugins_json_lists_the_third_party_distribution(installed_plugin):
    root, env = installed_plugin
    result = run(["plugins", "--json"], env, root)
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["mv-acme-losses"]["version"] == "1.2.3"
    assert plugins["mv-acme-losses"]["registered"]["loss"] == ["acme_bone_length"]
    assert plugins["mv-acme-losses"]["error"] is None


def test_config_naming_its_loss_passes_check_and_builds(installed_plugin):
    root, env = installed_plugin
    config = Path(root) / "config.yaml"
    config.write_text(CONFIG)
    result = run(["config", "check", str(config)], env, root)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "acme_bone_length" in result.stdout
    code = BUILD_FACTORY.format(config=config)
    built = subprocess.run([sys.executable, "-c", code], env=env, cwd=root,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert built.stdout.split() == ["mv_acme_losses.bone", "[[0,", "1],", "[1,", "2]]",
                                    "mv-acme-losses", "1.2.3"]


def test_a_typo_in_its_params_is_reported_with_the_key_path(installed_plugin):
    root, env = installed_plugin
    config = Path(root) / "bad.yaml"
    config.write_text(CONFIG.replace("    bones:", "    bonez:"))
    result = run(["config", "check", str(config)], env, root)
    assert result.returncode == 2
    assert "losses.acme_bone_length.bonez: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_broken_plugin_does_not_lock_the_cli(tmp_path, installed_plugin):
    root, env = installed_plugin
    broken = tmp_path / "site"
    dist = broken / "mv_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mv-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mvcore]\nmv-broken = mv_broken_plugin\n")
    (broken / "mv_broken_plugin.py").write_text("raise ImportError('needs libfoo')\n")
    env = {**env, "PYTHONPATH": f"{broken}{os.pathsep}{env['PYTHONPATH']}"}
    lenient = {k: v for k, v in env.items() if k != "MVCORE_STRICT_PLUGINS"}
    for args in (["--help"], ["--version"]):
        assert run(args, env, root).returncode == 0
    listed = run(["plugins", "--json"], lenient, root)
    assert listed.returncode == 0
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert "needs libfoo" in plugins["mv-broken"]["error"]
    assert plugins["mv-acme-losses"]["error"] is None
    assert run(["plugins"], env, root).returncode == 1  # strict: reported, non-zero
    config = Path(root) / "config.yaml"
    config.write_text(CONFIG)
    strict = run(["config", "check", str(config)], env, root)
    assert strict.returncode == 2 and "needs libfoo" in strict.stderr
    assert run(["config", "check", str(config)], lenient, root).returncode == 0
