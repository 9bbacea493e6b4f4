"""``training.devices``: devices per node for every accelerator, null by default (then
Lightning Pose's ``num_gpus`` counts the GPUs); it survives the model directory's
``config.yaml``."""

from __future__ import annotations

import pytest

from mvcore.config.load import dump_config, parse_config
from mvcore.errors import ConfigError

RAW = {"data": {"image_resize_dims": {"height": 32, "width": 32}, "data_dir": "/tmp",
                "view_names": ["a", "b"], "keypoint_names": ["k"], "num_keypoints": 1}}


def _training(**training: object):
    return parse_config({**RAW, "training": training}).training


def test_devices_is_null_by_default_and_any_count_from_one():
    assert _training().devices is None
    assert _training(devices=3).devices == 3
    assert _training(devices=2, num_gpus=1).devices == 2  # set, it wins over num_gpus
    assert _training(devices=4, num_gpus=0).devices == 4


def test_devices_survives_a_dumped_config():
    config = parse_config({**RAW, "training": {"devices": 2, "num_nodes": 3}})
    again = parse_config(dump_config(config)).training
    assert (again.devices, again.num_nodes, again.num_gpus) == (2, 3, 1)


@pytest.mark.parametrize("value", [0, -1, 1.5, "two"])
def test_bad_devices_are_one_line(value):
    with pytest.raises(ConfigError) as caught:
        _training(devices=value)
    assert str(caught.value).startswith("invalid config: training.devices: ")
    assert "\n" not in str(caught.value)
