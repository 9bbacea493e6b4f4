"""Third-party plugins, installed for real, extend mvcore with no change to it.

Packages are written here, installed with pip into a temporary folder (``--target``) and
exercised through the CLI in subprocesses: the plugin author guide's own package (its files
are read from ``docs/plugins.md``, so the guide is tested code), a package with a supervised
loss on the reprojected 2D keypoints, an unsupervised loss on the pairwise 3D keypoints, an
augmenter, a backbone and a CLI command, and broken packages for the isolation rules.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.install

REPO = Path(__file__).resolve().parents[2]
GUIDE = (REPO / "docs" / "plugins.md").read_text()
EPOCH = ["--set", "training.max_epochs=1", "--set", "training.min_epochs=1",
         "--set", "training.check_val_every_n_epoch=1", "--set", "training.num_workers=0",
         "--set", "training.unlabeled_clips_per_epoch=2"]

ACME = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "mv-acme"
        version = "0.4.0"
        dependencies = []

        [project.entry-points.mvcore]
        mv-acme = "mv_acme.plugin"
    """,
    "src/mv_acme/__init__.py": "",
    "src/mv_acme/plugin.py": """
        from mvcore import hookimpl


        @hookimpl
        def mvcore_register_losses(registry):
            registry.add("mv_acme.losses:ReprojectionLoss", name="acme_reprojection")
            registry.add("mv_acme.losses:PairwiseSpreadLoss", name="acme_pairwise_spread")


        @hookimpl
        def mvcore_register_augmenters(registry):
            registry.add("mv_acme.components:BrightnessJitter", name="acme_jitter")


        @hookimpl
        def mvcore_register_backbones(registry):
            registry.add("mv_acme.components:TinyConv", name="acme_tiny")


        def hello(args):
            print(f"acme says hello to {args.who}")
            return 0


        @hookimpl
        def mvcore_add_cli_commands(subparsers):
            parser = subparsers.add_parser("acme-hello", help="greet from the acme plugin")
            parser.add_argument("who")
            parser.set_defaults(func=hello)
    """,
    "src/mv_acme/losses.py": """
        import torch

        from mvcore import Loss, LossParams
        from mvcore.data.heatmaps import heatmap_to_keypoints


        class ReprojectionLoss(Loss):
            '''Supervised: reprojected 3D predictions against the labels, model pixels.'''

            loss_name = "acme_reprojection"

            def forward(self, *, heatmaps_targ, keypoints_pred_2d_reprojected, stage=None):
                labels, _ = heatmap_to_keypoints(heatmaps_targ, self.context.image_size)
                flat = heatmaps_targ.flatten(-2)
                labelled = (flat.amax(-1) - flat.amin(-1)) > 0  # not empty, not uniform
                diff = keypoints_pred_2d_reprojected - labels
                valid = labelled & torch.isfinite(diff).all(-1)
                diff = torch.where(valid[..., None], diff, 0.0)
                scalar = self.reduce_loss((diff ** 2).sum(-1)[valid])
                return self.weight * scalar, self.log_loss(scalar, stage)


        class SpreadParams(LossParams):
            log_weight: float | None = 2.0


        class PairwiseSpreadLoss(Loss):
            '''Unsupervised: the camera pairs' 3D triangulations of a keypoint must agree.'''

            loss_name = "acme_pairwise_spread"
            Params = SpreadParams
            supervised = False

            def forward(self, *, keypoints_pred_3d, stage=None):
                valid = torch.isfinite(keypoints_pred_3d).all(-1).all(1)  # (B, K)
                points = torch.where(valid[:, None, :, None], keypoints_pred_3d, 0.0)
                spread = (points - points.mean(1, keepdim=True)).pow(2).sum(-1).mean(1)
                scalar = self.reduce_loss(self.rectify_epsilon(spread[valid]))
                return self.weight * scalar, self.log_loss(scalar, stage)
    """,
    "src/mv_acme/components.py": """
        import torch
        from torch import nn

        from mvcore import Augmenter, AugmenterParams, Backbone, BackboneParams


        class JitterParams(AugmenterParams):
            brightness: float = 0.2


        class BrightnessJitter(Augmenter):
            name = "acme_jitter"
            Params = JitterParams

            def __call__(self, sample, rng):
                b = self.params.brightness
                factor = 1.0 + float(rng.uniform(-b, b))
                images = (sample["images"] * factor).clamp(0.0, 1.0)
                return {**sample, "images": images, "aug_stats": {"acme_jitter_applied": 1}}


        class TinyParams(BackboneParams):
            channels: int = 8


        class TinyConv(Backbone):
            name = "acme_tiny"
            Params = TinyParams

            def __init__(self, params, context):
                super().__init__(params, context)
                torch.manual_seed(context.seed)
                self.features = nn.Sequential(
                    nn.Conv2d(3, params.channels, 3, stride=2, padding=1), nn.ReLU(),
                    nn.Conv2d(params.channels, self.num_keypoints, 3, stride=2, padding=1))

            def forward(self, images):
                b, v = images.shape[:2]
                maps = self.features(images.flatten(0, 1))
                return torch.softmax(maps.flatten(-2), -1).reshape(b, v, *maps.shape[1:])
    """,
}

#: broken distributions, one per isolation rule (written as installed metadata + modules)
BROKEN = {
    "mv-broken-import": ("mv_broken_import", "raise ImportError('needs libfoo')\n"),
    "mv-broken-hook": ("mv_broken_hook", """
        from mvcore import hookimpl


        @hookimpl
        def mvcore_register_losses(registry):
            registry.add("mv_broken_hook:Nothing", name="hook_bone")
            raise RuntimeError("licence server unreachable")


        @hookimpl
        def mvcore_add_cli_commands(subparsers):
            raise RuntimeError("no commands today")
    """),
    "mv-wrong-kind": ("mv_wrong_kind", """
        from mvcore import hookimpl


        class NotALoss:
            loss_name = "wrong_kind_loss"


        @hookimpl
        def mvcore_register_losses(registry):
            registry.add(NotALoss)
    """),
    "mv-clash": ("mv_clash", """
        from mvcore import hookimpl


        @hookimpl
        def mvcore_register_losses(registry):
            registry.add("mv_clash_impl:Whatever", name="heatmap_mse")
    """),
    "mv-lazy-typo": ("mv_lazy_typo", """
        from mvcore import hookimpl


        @hookimpl
        def mvcore_register_losses(registry):
            registry.add("mv_lazy_tpyo.losses:TypoLoss", name="typo_loss")
    """),
}


def guide_files() -> dict[str, str]:
    """The files of the guide's package: fenced blocks whose first line names the file."""
    files = {}
    for block in re.findall(r"```(?:python|toml)\n(.*?)```", GUIDE, flags=re.S):
        first, _, body = block.partition("\n")
        match = re.fullmatch(r"# ((?:src|tests)/\S+\.py|pyproject\.toml)", first.strip())
        if match:
            files[match.group(1)] = body
    return files


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def mvcore(args: list[str], env: dict, cwd: Path, timeout: int = 300):
    return subprocess.run([sys.executable, "-m", "mvcore.cli.main", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def mvcore_all(commands: list[tuple[list[str], dict]], cwd: Path, timeout: int = 300
               ) -> list[subprocess.CompletedProcess]:
    """Several ``mvcore`` commands at once (each starts Python and torch: run them side by
    side), in the order given."""
    started = [(args, subprocess.Popen([sys.executable, "-m", "mvcore.cli.main", *args],
                                       env=env, cwd=cwd, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True))
               for args, env in commands]
    done = []
    for args, process in started:
        out, err = process.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    return done


def clean_env(site: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(site)}
    for key in ("MVCORE_LOAD_PLUGINS", "MVCORE_DISABLE_PLUGINS", "MVCORE_STRICT_PLUGINS"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The guide's package and mv-acme, pip-installed into one folder."""
    root = tmp_path_factory.mktemp("third_party")
    guide = guide_files()
    assert {"pyproject.toml", "src/mv_acme_losses/plugin.py", "src/mv_acme_losses/bone.py",
            "tests/test_bone.py"} <= set(guide), sorted(guide)
    write_package(root / "guide", {**guide, "src/mv_acme_losses/__init__.py": ""})
    write_package(root / "acme", ACME)
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(root / "guide"), str(root / "acme")],
        check=True, capture_output=True, text=True,
    )
    env = clean_env(site)
    env["MVCORE_STRICT_PLUGINS"] = "1"  # no plugin problem goes unnoticed here
    return root, env


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    from mvcore.example import make_example_project

    root = tmp_path_factory.mktemp("example")
    make_example_project(root)
    return root


def test_the_guides_package_installs_and_its_own_tests_pass(installed):
    root, env = installed
    listed = mvcore(["plugins", "--json"], env, root)
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert plugins["mv-acme-losses"]["version"] == "1.0.0"
    assert plugins["mv-acme-losses"]["registered"] == {"loss": ["acme_bone_length"]}
    assert plugins["mv-acme"]["registered"] == {
        "augmenter": ["acme_jitter"], "backbone": ["acme_tiny"],
        "loss": ["acme_pairwise_spread", "acme_reprojection"]}
    assert all(not p["problems"] for p in plugins.values())
    # the guide's test file, run as its author would (the venv's mvcore on PATH)
    env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(root / "guide" / "tests" / "test_bone.py")],
                           env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    assert "2 passed" in tests.stdout


def test_a_plugin_adds_a_command(installed):
    root, env = installed
    hello = mvcore(["acme-hello", "lab"], env, root)
    assert hello.returncode == 0 and hello.stdout.strip() == "acme says hello to lab"
    assert "acme-hello" in mvcore(["--help"], env, root).stdout


def _acme_config(example: Path) -> dict:
    raw = yaml.safe_load((example / "config.yaml").read_text())
    for key in ("backbone", "backbone_pretrained"):
        raw["model"].pop(key)
    raw["training"].pop("patch_mask")
    raw["model"].update(model_type="acme_tiny",
                        losses_to_use=["acme_pairwise_spread", "acme_bone_length"])
    raw["training"].update(imgaug="acme_jitter", imgaug_3d=False)
    raw["losses"] = {"acme_reprojection": {"log_weight": 1.0},
                     "acme_bone_length": {"log_weight": 2.0, "bones": [[0, 1], [1, 2]]}}
    raw["data"]["data_dir"] = str(example)
    return raw


@pytest.mark.slow
def test_third_party_losses_augmenter_and_backbone_train(installed, example, tmp_path):
    root, env = installed
    config = tmp_path / "acme.yaml"
    config.write_text(yaml.safe_dump(_acme_config(example)))
    checked, run = mvcore_all([
        (["config", "check", str(config)], env),
        (["train", str(config), "--output", str(tmp_path / "run"), *EPOCH], env)], root)
    assert checked.returncode == 0, checked.stderr
    assert ("losses: heatmap_mse, acme_reprojection, acme_pairwise_spread, acme_bone_length; "
            "model: acme_tiny; augmenters: acme_jitter") in checked.stdout
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "mvcore plugin" not in run.stderr
    with (tmp_path / "run" / "logs" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    def logged(column):
        return [float(r[column]) for r in rows if r.get(column)]
    for loss in ("acme_reprojection", "acme_pairwise_spread", "acme_bone_length"):
        values = logged(f"train_{loss}_loss_epoch")
        assert values and all(v == v for v in values), loss  # logged and finite
    assert logged("train_acme_reprojection_loss_epoch")[0] > 0  # the reprojections are used
    with (tmp_path / "run" / "predictions_cam_a.csv").open() as handle:
        sets = [row[-1] for row in csv.reader(handle)][3:]  # DeepLabCut header: 3 rows
    assert logged("train_acme_jitter_applied") == [float(sets.count("train"))]  # each, once
    plugins = json.loads((tmp_path / "run" / "plugins.json").read_text())["plugins"]
    assert plugins["mv-acme"] == "0.4.0" and plugins["mv-acme-losses"] == "1.0.0"


# ------------------------------------------------------------------------------ isolation
@pytest.fixture(scope="module")
def broken(installed):
    """Five broken distributions beside the working ones (metadata written by hand)."""
    root, _ = installed
    site = root / "broken_site"
    for dist, (module, code) in BROKEN.items():
        info = site / f"{module}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[mvcore]\n{dist} = {module}\n")
        (site / f"{module}.py").write_text(textwrap.dedent(code).lstrip("\n"))
    env = clean_env(root / "site")
    env["PYTHONPATH"] = f"{site}{os.pathsep}{env['PYTHONPATH']}"
    return root, env


def test_plugins_lists_every_plugin_with_its_names_and_problems(broken):
    root, env = broken
    listed, checked, helped = mvcore_all([(["plugins", "--json"], env),
                                          (["plugins", "--check"], env), (["--help"], env)], root)
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert "needs libfoo" in plugins["mv-broken-import"]["problems"][0]
    assert plugins["mv-broken-hook"]["problems"] == [
        "its mvcore_register_losses hook raised RuntimeError: licence server unreachable"]
    assert plugins["mv-broken-hook"]["disabled"]["loss"] == {
        "hook_bone": "its mvcore_register_losses hook raised RuntimeError: licence server "
                     "unreachable"}
    assert "not a subclass of mvcore.losses.base.Loss" in plugins["mv-wrong-kind"]["problems"][0]
    clash = plugins["mv-clash"]["problems"][0]
    assert "'heatmap_mse' is also registered by mv-losses" in clash
    assert "'mv-clash:heatmap_mse'" in clash and "MVCORE_DISABLE_PLUGINS" not in clash
    assert plugins["mv-lazy-typo"]["problems"] == []  # lazy: not imported by a plain listing
    assert "heatmap_mse" in plugins["mv-losses"]["registered"]["loss"]  # ours keeps its name
    assert plugins["mv-acme"]["problems"] == []
    assert checked.returncode == 1
    assert ("loss typo_loss: DISABLED, its target 'mv_lazy_tpyo.losses:TypoLoss' does not "
            "import: ModuleNotFoundError") in checked.stdout
    # a command hook that raises costs its own commands only
    assert helped.returncode == 0 and "acme-hello" in helped.stdout


@pytest.mark.slow
def test_a_config_that_uses_no_broken_name_trains_with_one_warning_each(broken, example,
                                                                         tmp_path):
    root, env = broken
    run = mvcore(["train", str(example / "config.yaml"), "--output", str(tmp_path / "run"),
                  *EPOCH], env, root)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    warnings = [line for line in run.stderr.splitlines()
                if line.startswith("warning: mvcore plugin")]
    assert sorted({re.match(r"warning: mvcore plugin '([^']+)'", w).group(1)
                   for w in warnings}) == ["mv-broken-hook", "mv-broken-import", "mv-clash",
                                           "mv-wrong-kind"]
    assert len(warnings) == 4, warnings
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


BROKEN_NAMES = {
    "hook_bone": "losses.hook_bone: loss 'hook_bone' from plugin mv-broken-hook 0.1 is broken: "
                 "its mvcore_register_losses hook raised RuntimeError: licence server "
                 "unreachable. To use it, update or reinstall mv-broken-hook, or report it to its "
                 "author",
    "wrong_kind_loss": "losses.wrong_kind_loss: loss 'wrong_kind_loss' from plugin "
                       "mv-wrong-kind 0.1 is broken: <class 'mv_wrong_kind.NotALoss'> is not a "
                       "subclass of mvcore.losses.base.Loss.",
    "typo_loss": "losses.typo_loss: loss 'typo_loss' from plugin mv-lazy-typo 0.1 is broken: its "
                 "target 'mv_lazy_tpyo.losses:TypoLoss' does not import: ModuleNotFoundError: No "
                 "module named 'mv_lazy_tpyo'.",
}


def test_a_config_that_uses_a_broken_name_gets_one_line(broken, example, tmp_path):
    root, env = broken
    commands, expected = [], []
    for name, message in BROKEN_NAMES.items():
        raw = yaml.safe_load((example / "config.yaml").read_text())
        raw["losses"] = {name: {"log_weight": 1.0}}
        raw["data"]["data_dir"] = str(example)
        config = tmp_path / f"uses_{name}.yaml"
        config.write_text(yaml.safe_dump(raw))
        commands.append((["config", "check", str(config)], env))
        expected.append(message)
    # training fails the same way, before writing anything
    commands.append((["train", str(tmp_path / "uses_typo_loss.yaml"), "--output",
                      str(tmp_path / "run")], env))
    expected.append(BROKEN_NAMES["typo_loss"])
    for result, message in zip(mvcore_all(commands, root), expected):
        assert result.returncode == 2, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # nothing written for a run that cannot start


def test_strict_mode_makes_every_problem_an_error(broken, example, tmp_path):
    root, env = broken
    strict = {**env, "MVCORE_STRICT_PLUGINS": "1"}
    result, listed = mvcore_all([
        (["train", str(example / "config.yaml"), "--output", str(tmp_path / "run")], strict),
        (["plugins"], strict)], root)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "plugin problems (MVCORE_STRICT_PLUGINS=1 makes them fatal" in result.stderr
    for dist in ("mv-broken-import", "mv-broken-hook", "mv-wrong-kind", "mv-clash",
                 "mv-lazy-typo"):
        assert f"  {dist}: " in result.stderr, dist
    assert listed.returncode == 1
