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


def test_devices_per_node_on_each_accelerator():
    assert (_training().devices_per_node(on_gpu=False), _training().devices_per_node(True)) \
        == (1, 1)
    lp = _training(num_gpus=4)  # Lightning Pose counts GPUs; a CPU run is one process
    assert (lp.devices_per_node(on_gpu=False), lp.devices_per_node(on_gpu=True)) == (1, 4)
    both = _training(num_gpus=4, devices=2)  # set, it wins on every accelerator
    assert (both.devices_per_node(on_gpu=False), both.devices_per_node(on_gpu=True)) == (2, 2)


def test_training_and_batch_sizes_use_the_same_device_count():
    """``training.devices: 2`` on the CPU is Lightning's DDP over 2 processes, and each gets
    half the configured batch (the total stays the config's, as Lightning Pose's num_gpus)."""
    from mvcore.data.datamodule import MultiviewDataModule
    from mvcore.training.fit import accelerator

    config = parse_config({**RAW, "training": {
        "devices": 2, "accelerator": "cpu", "train_batch_size": 9, "val_batch_size": 4,
        "test_batch_size": 1}})
    assert accelerator(config) == ("cpu", 2)
    module = MultiviewDataModule(config)
    assert (module.train_batch_size, module.val_batch_size, module.test_batch_size) == (5, 2, 1)
    config = parse_config({**RAW, "training": {"num_gpus": 2, "accelerator": "cpu",
                                               "train_batch_size": 8}})
    assert accelerator(config) == ("cpu", 1)
    assert MultiviewDataModule(config).train_batch_size == 8
