"""LossFactory: which losses are active, parameters, input checks, annealing, logs."""

import pytest
import torch
from fake_plugins import AcmePlugin, BoneLengthLoss, NeedsMagicLoss

from mvcore import hookimpl
from mvcore.config.load import parse_config
from mvcore.errors import ConfigError, MissingLossInputError, UnknownComponentError
from mvcore.losses.base import Loss, LossParams
from mvcore.losses.factory import LossFactory, active_loss_names
from mvcore.plugin.manager import get_plugin_manager


class SquaredErrorLoss(Loss):
    """A stand-in supervised heatmap loss (never annealed)."""

    loss_name = "heatmap_mse"
    annealed = False

    def forward(self, *, heatmaps_targ, heatmaps_pred, stage=None, **kwargs):
        scalar = self.reduce_loss((heatmaps_targ - heatmaps_pred) ** 2)
        return self.weight * scalar, self.log_loss(scalar, stage)


class ScaleParams(LossParams):
    scale: float = 1.0


class Supervised3DLoss(Loss):
    loss_name = "supervised_toy_3d"
    Params = ScaleParams

    def __init__(self, scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def forward(self, *, keypoints_targ_3d, stage=None, **kwargs):
        scalar = self.scale * keypoints_targ_3d.abs().mean()
        return self.weight * scalar, self.log_loss(scalar, stage)


class Plugin:
    @hookimpl
    def mvcore_register_losses(self, registry):
        registry.add(SquaredErrorLoss)
        registry.add(Supervised3DLoss)
        registry.add(NeedsMagicLoss)


@pytest.fixture
def registry():
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(Plugin(), name="toy-losses", version="0.1")
    manager.register(AcmePlugin(), name="acme-losses", version="1.0")
    return manager.build_registry("loss", base=Loss, name_attr="loss_name")


INPUTS = {
    "heatmaps_targ": torch.ones(2, 3, 4, 4),
    "heatmaps_pred": torch.zeros(2, 3, 4, 4),
    "keypoints_targ_3d": torch.full((2, 3, 3), 2.0),
    "keypoints_pred": torch.arange(24.0).reshape(2, 12),
}


def test_active_losses_follow_lightning_pose_rules(registry):
    config = parse_config({
        "losses": {
            "supervised_toy_3d": {"log_weight": 0.5},
            "acme_bone_length": {"log_weight": 1.0},  # unsupervised: needs losses_to_use
        },
    })
    assert active_loss_names(config, registry) == ["heatmap_mse", "supervised_toy_3d"]
    config.model.losses_to_use = ["acme_bone_length"]
    assert active_loss_names(config, registry)[-1] == "acme_bone_length"
    config.losses["supervised_toy_3d"] = {"log_weight": None}  # null turns it off
    assert "supervised_toy_3d" not in active_loss_names(config, registry)


def test_unknown_loss_in_config_gets_did_you_mean(registry):
    config = parse_config({"losses": {"supervised_toy_3": {"log_weight": 0.5}}})
    with pytest.raises(UnknownComponentError) as info:
        active_loss_names(config, registry)
    assert "losses.supervised_toy_3: unknown loss" in str(info.value)
    assert "Did you mean 'supervised_toy_3d'?" in str(info.value)
    config = parse_config({"model": {"losses_to_use": ["acme_bone"]}})
    with pytest.raises(UnknownComponentError, match=r"model.losses_to_use\[0\]"):
        active_loss_names(config, registry)


def test_extra_config_fields_reach_the_constructor_and_typos_are_rejected(registry):
    config = parse_config({"losses": {"supervised_toy_3d": {"log_weight": 0.0, "scale": 3.0}}})
    factory = LossFactory.from_config(config, registry)
    assert factory.losses["supervised_toy_3d"].scale == 3.0
    config.losses["supervised_toy_3d"]["scael"] = 1.0
    with pytest.raises(ConfigError, match="losses.supervised_toy_3d.scael: unknown key"):
        LossFactory.from_config(config, registry)


def test_missing_required_input_is_named_before_training(registry):
    config = parse_config({"losses": {"needs_magic": {"log_weight": 0.0}}})
    with pytest.raises(MissingLossInputError) as info:
        LossFactory.from_config(config, registry, produced_inputs=set(INPUTS))
    message = str(info.value)
    assert "loss 'needs_magic' (from toy-losses 0.1) requires magic_input" in message
    assert "log_weight: null" in message
    config = parse_config({"losses": {"supervised_toy_3d": {"log_weight": 0.0}}})
    with pytest.raises(MissingLossInputError, match="calibrated project"):
        LossFactory.from_config(config, registry, produced_inputs={"heatmaps_targ",
                                                                   "heatmaps_pred"})


def test_weighted_sum_annealing_and_logs(registry):
    config = parse_config({"losses": {"supervised_toy_3d": {"log_weight": 0.0}}})
    factory = LossFactory.from_config(config, registry, produced_inputs=set(INPUTS))
    heat = 0.5 * 1.0  # weight 0.5 x mean squared error 1
    toy = 0.5 * 2.0
    total, logs = factory(stage="train", anneal_weight=0.25, **INPUTS)
    assert total.item() == pytest.approx(heat + 0.25 * toy)
    full, _ = factory(stage="val", anneal_weight=None, **INPUTS)
    assert full.item() == pytest.approx(heat + toy)
    names = {item["name"]: float(item["value"]) for item in logs}
    assert names["train_heatmap_mse_loss"] == 1.0
    assert names["train_heatmap_mse_loss_weighted"] == 0.5
    assert names["train_supervised_toy_3d_loss_weighted"] == pytest.approx(toy)
    assert names["train_supervised_toy_3d_loss_annealed"] == pytest.approx(0.25 * toy)
    assert "train_heatmap_mse_loss_annealed" not in names


def test_group_filter_and_module_semantics(registry):
    config = parse_config({"model": {"losses_to_use": ["acme_bone_length"]}})
    supervised = LossFactory.from_config(config, registry, supervised=True)
    unsupervised = LossFactory.from_config(config, registry, supervised=False)
    assert supervised.names() == ["heatmap_mse"]
    assert unsupervised.names() == ["acme_bone_length"]
    assert isinstance(unsupervised.losses["acme_bone_length"], BoneLengthLoss)
    assert "losses.acme_bone_length.bones" in unsupervised.state_dict()
