"""Lightning Pose's shipped configs (unchanged copies in ``../shared/data/lightning-pose-configs``,
read from there, never copied into the repository) through ``mvcore config check --no-data``:
the multi-view ones pass (the template once its placeholders are filled), the template as
shipped and every single-view config are one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mvcore.cli.main import main

#: the multi-view configs Lightning Pose ships; the others are single-view
MULTIVIEW = {"config_default_multiview.yaml", "config_mirror-mouse-example_split.yaml"}
#: what ``config_default_multiview.yaml`` leaves to fill in
FILLED = ["data.image_resize_dims.height=256", "data.image_resize_dims.width=256",
          "data.data_dir=/data/project", "data.video_dir=/data/project/videos"]


def _configs(shared_data: Path) -> list[Path]:
    paths = sorted((shared_data / "lightning-pose-configs").glob("*.yaml"))
    assert MULTIVIEW <= {p.name for p in paths}
    return paths


def _check(path: Path, *sets: str) -> int:
    return main(["config", "check", "--no-data", str(path),
                 *[arg for item in sets for arg in ("--set", item)]])


def test_the_multiview_configs_pass_config_check(shared_data, capsys):
    outputs = {}
    for path in _configs(shared_data):
        if path.name not in MULTIVIEW:
            continue
        sets = FILLED if path.name == "config_default_multiview.yaml" else []
        assert _check(path, *sets) == 0, capsys.readouterr().err
        outputs[path.name] = capsys.readouterr().out
        assert f"{path}: OK" in outputs[path.name]
    assert "model: heatmap_multiview_transformer / vits_dino" in outputs[
        "config_default_multiview.yaml"]
    assert "model: heatmap / resnet50_animal_ap10k" in outputs[
        "config_mirror-mouse-example_split.yaml"]


def test_the_template_as_shipped_names_every_value_to_fill_in(shared_data, capsys):
    path = shared_data / "lightning-pose-configs" / "config_default_multiview.yaml"
    assert _check(path) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "fill in the values left open" in err
    for key in ("data.data_dir", "data.video_dir", "data.image_resize_dims.height",
                "data.image_resize_dims.width"):
        assert key in err
    assert "hydra" not in err and "Traceback" not in err


def test_the_single_view_configs_are_one_line(shared_data, capsys):
    for path in _configs(shared_data):
        if path.name in MULTIVIEW:
            continue
        assert _check(path) == 2, path
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert "a single-view Lightning Pose config" in err and "Traceback" not in err


def test_lightning_poses_own_root_path_reference_says_what_to_write(shared_data, capsys):
    """The example configs' ``data_dir: ${LP_ROOT_PATH:}/data/...`` names Lightning Pose's
    repository; with the data checked, the error says to write the project's folder."""
    path = shared_data / "lightning-pose-configs" / "config_mirror-mouse-example_split.yaml"
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "'${LP_ROOT_PATH:}/data/mirror-mouse-example_split' holds a reference mvcore " \
           "cannot resolve: write the project folder's path" in err


def test_without_mv_cnn_the_split_config_names_the_distribution_to_install(shared_data):
    path = shared_data / "lightning-pose-configs" / "config_mirror-mouse-example_split.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MVCORE_")}
    env["MVCORE_DISABLE_PLUGINS"] = "mv-cnn"
    command = [sys.executable, "-m", "mvcore.cli.main", "config", "check", "--no-data", str(path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: model.model_type: backbone 'heatmap' (Lightning Pose's per-view CNN model) "
        "comes with mvcore's plugin mv-cnn, which is not installed (or is disabled by "
        "MVCORE_DISABLE_PLUGINS / MVCORE_LOAD_PLUGINS): pip install mv-cnn (in the mvcore "
        "repository: pip install -e plugins/mv_cnn)"], result.stderr
    assert "Traceback" not in result.stderr
