"""``data.skeleton``: edges between keypoint names for figures (the report's 3D view); names
must be keypoints; the example writes its body's edges."""

from __future__ import annotations

import pytest
import yaml

from mvcore.config.load import dump_config, parse_config
from mvcore.errors import ConfigError
from mvcore.example import KEYPOINT_NAMES

DATA = {"image_resize_dims": {"height": 32, "width": 32}, "data_dir": "/tmp",
        "view_names": ["a", "b"], "keypoint_names": ["nose", "neck", "tail"], "num_keypoints": 3}


def test_skeleton_is_optional_and_read_back():
    assert parse_config({"data": DATA}).data.skeleton is None
    config = parse_config({"data": {**DATA, "skeleton": [["nose", "neck"], ["neck", "tail"]]}})
    assert config.data.skeleton == [("nose", "neck"), ("neck", "tail")]
    again = parse_config(yaml.safe_load(yaml.safe_dump(dump_config(config))))  # config.yaml
    assert again.data.skeleton == config.data.skeleton


def test_an_edge_naming_no_keypoint_is_one_line():
    with pytest.raises(ConfigError) as info:
        parse_config({"data": {**DATA, "skeleton": [["nose", "neck"], ["neck", "paw"]]}})
    assert "data.skeleton names ['paw'], which data.keypoint_names does not have; give edges " \
        "as pairs of keypoint names" in str(info.value)
    with pytest.raises(ConfigError, match="data.skeleton"):
        parse_config({"data": {**DATA, "skeleton": [["nose", "neck", "tail"]]}})  # not a pair


def test_the_example_config_has_its_bodys_edges(tmp_path):
    from mvcore.example.render import SKELETON

    assert {name for edge in SKELETON for name in edge} == set(KEYPOINT_NAMES)
    from mvcore.example.write import _config

    config = parse_config(_config(["cam_a", "cam_b"], ["a.csv", "b.csv"], 64, "vit_micro"))
    assert config.data.skeleton == list(SKELETON)
