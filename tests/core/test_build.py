"""mvcore.build: which components a config selects, their params, project checks, building."""

from typing import ClassVar

import pytest
import torch
from fake_plugins import (
    AcmePlugin,
    BoneLengthLoss,
    NeedsMagicLoss,
    SquaredErrorLoss,
    TinyBackbonePlugin,
)

from mvcore import Augmenter, AugmenterParams, BackboneParams, hookimpl
from mvcore.build import build_backbone, build_losses, plan_run
from mvcore.config.load import parse_config
from mvcore.errors import ConfigError, MissingLossInputError, UnknownComponentError
from mvcore.losses.base import Loss, LossParams
from mvcore.plugin.components import build_components
from mvcore.plugin.manager import get_plugin_manager
from mvcore.testing import toy_context

CALIBRATED = toy_context(num_views=2, num_keypoints=3)
UNCALIBRATED = toy_context(num_views=2, num_keypoints=3, calibrated=False)


class ScaleParams(LossParams):
    scale: float = 1.0


class Supervised3DLoss(Loss):
    loss_name = "supervised_toy_3d"
    Params = ScaleParams

    def forward(self, *, keypoints_targ_3d, stage=None):
        scalar = self.params.scale * keypoints_targ_3d.abs().mean()
        return self.weight * scalar, self.log_loss(scalar, stage)


class NeedsTargetsLoss(Loss):
    loss_name = "greedy_unsupervised"
    supervised = False

    def forward(self, *, keypoints_pred, keypoints_targ, stage=None):  # pragma: no cover
        raise AssertionError


class ShiftParams(AugmenterParams):
    lightning_pose_keys: ClassVar[dict[str, str]] = {"training.imgaug_3d": "with_3d"}
    with_3d: bool | None = False


class ShiftAugmenter(Augmenter):
    name = "shift"
    Params = ShiftParams

    def __call__(self, sample, rng):
        return sample


class Needs3D(Augmenter):
    name = "imgaug_3d"
    requires_calibration = True

    def __call__(self, sample, rng):
        return sample


class Plugin:
    @hookimpl
    def mvcore_register_losses(self, registry):
        for cls in (SquaredErrorLoss, Supervised3DLoss, NeedsMagicLoss, NeedsTargetsLoss):
            registry.add(cls)

    @hookimpl
    def mvcore_register_augmenters(self, registry):
        registry.add(ShiftAugmenter)
        registry.add(Needs3D)


@pytest.fixture
def components():
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(Plugin(), name="toy-plugin", version="0.1")
    manager.register(AcmePlugin(), name="acme-losses", version="1.0")
    manager.register(TinyBackbonePlugin(), name="tiny-backbones", version="2.0")
    return build_components(manager)


def config(**sections):
    raw = {"model": {"model_type": "tiny_conv"},
           "training": {"imgaug": "none", "imgaug_3d": False}}
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return parse_config(raw)


def test_active_losses_follow_lightning_pose_rules(components):
    cfg = config(losses={"supervised_toy_3d": {"log_weight": 0.5},
                         "acme_bone_length": {"log_weight": 1.0}})
    with pytest.warns(UserWarning, match="losses.acme_bone_length is configured but off.*"
                                         "model.losses_to_use"):
        plan = plan_run(cfg, components, CALIBRATED)
    assert plan.loss_names == ["heatmap_mse", "supervised_toy_3d"]
    cfg.model.losses_to_use = ["acme_bone_length"]
    assert plan_run(cfg, components, CALIBRATED).loss_names[-1] == "acme_bone_length"
    cfg.losses["supervised_toy_3d"] = {"log_weight": None}  # null turns it off
    assert "supervised_toy_3d" not in plan_run(cfg, components, CALIBRATED).loss_names


def test_unknown_loss_in_config_gets_did_you_mean(components):
    with pytest.raises(UnknownComponentError) as info:
        plan_run(config(losses={"supervised_toy_3": {"log_weight": 0.5}}), components)
    assert "losses.supervised_toy_3: unknown loss" in str(info.value)
    assert "Did you mean 'supervised_toy_3d'" in str(info.value)
    with pytest.raises(UnknownComponentError, match=r"model.losses_to_use\[0\]"):
        plan_run(config(model={"losses_to_use": ["acme_bone"]}), components)


def test_params_are_validated_with_the_key_path(components):
    cfg = config(losses={"supervised_toy_3d": {"log_weight": 0.0, "scale": 3.0}})
    plan = plan_run(cfg, components, CALIBRATED)
    supervised, unsupervised = build_losses(plan, CALIBRATED)
    assert supervised.losses["supervised_toy_3d"].params.scale == 3.0 and not len(unsupervised)
    cfg.losses["supervised_toy_3d"]["scael"] = 1.0
    with pytest.raises(ConfigError, match="losses.supervised_toy_3d.scael: unknown key; did "
                                          "you mean 'losses.supervised_toy_3d.scale'"):
        plan_run(cfg, components, CALIBRATED)


def test_a_component_checks_its_params_against_the_project(components):
    cfg = config(model={"losses_to_use": ["acme_bone_length"]},
                 losses={"acme_bone_length": {"bones": [[0, 7]]}})
    with pytest.raises(ConfigError, match=r"^losses.acme_bone_length.bones: \[0, 7\] names a "
                                          "keypoint outside the 6$"):
        plan_run(cfg, components, CALIBRATED)
    plan_run(cfg, components)  # without a project the check cannot run


def test_missing_inputs_are_named_before_training(components):
    with pytest.raises(MissingLossInputError) as info:
        plan_run(config(losses={"needs_magic": {"log_weight": 0.0}}), components)
    assert ("losses.needs_magic: loss 'needs_magic' (from toy-plugin 0.1) declares the input "
            "'magic_input', which is not a loss input") in str(info.value)
    cfg = config(losses={"supervised_toy_3d": {"log_weight": 0.0}})
    plan_run(cfg, components, CALIBRATED)
    with pytest.raises(MissingLossInputError) as info:
        plan_run(cfg, components, UNCALIBRATED)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    # the missing calibration first, then what to do, then the tensors behind it
    assert message.startswith("losses.supervised_toy_3d: loss 'supervised_toy_3d' (from "
                              "toy-plugin 0.1) needs a camera calibration for every labelled "
                              "frame, and this project has none")
    assert message.index("add calibration.toml") < message.index("log_weight: null") \
        < message.index("requires keypoints_targ_3d, which exist only for calibrated projects")


def test_an_unsupervised_loss_cannot_require_labels(components):
    cfg = config(model={"losses_to_use": ["greedy_unsupervised"]})
    with pytest.raises(MissingLossInputError, match="is unsupervised but requires "
                                                    "keypoints_targ, which unlabelled clips"):
        plan_run(cfg, components, CALIBRATED)


def test_every_problem_is_reported_at_once(components):
    cfg = config(model={"losses_to_use": ["acme_bone"]},
                 losses={"supervised_toy_3d": {"scael": 1.0}})
    with pytest.raises(ConfigError) as info:
        plan_run(cfg, components, CALIBRATED)
    lines = str(info.value).splitlines()
    assert any(line.startswith("losses.supervised_toy_3d.scael: unknown key") for line in lines)
    assert any(line.startswith("model.losses_to_use[0]: unknown loss") for line in lines)


def test_groups_and_names(components):
    cfg = config(model={"losses_to_use": ["acme_bone_length"]})
    plan = plan_run(cfg, components, CALIBRATED)
    supervised, unsupervised = build_losses(plan, CALIBRATED)
    assert supervised.names() == ["heatmap_mse"]
    assert unsupervised.names() == ["acme_bone_length"]
    assert isinstance(unsupervised.losses["acme_bone_length"], BoneLengthLoss)
    assert "losses.acme_bone_length.bones" in unsupervised.state_dict()


def test_augmenters_selection_calibration_and_unused_params(components):
    cfg = config(training={"imgaug": "shift", "imgaug_3d": True,
                           "augmentation_params": {"dlc": {"rotation": 5}}})
    with pytest.warns(UserWarning, match="training.augmentation_params.dlc: augmenter 'dlc' is "
                                         "not selected"):
        plan = plan_run(cfg, components, CALIBRATED)
    assert [s.name for s in plan.augmenters] == ["shift", "imgaug_3d"]
    # the Lightning Pose key the augmenter declares is copied into its params
    assert plan.augmenters[0].params.with_3d is True
    cfg.training.augmentation_params = {}
    with pytest.raises(ConfigError, match="training.imgaug_3d: augmenter 'imgaug_3d' .* needs "
                                          "camera calibration.*set training.imgaug_3d: false"):
        plan_run(cfg, components, UNCALIBRATED)


class VariantParams(BackboneParams):
    lightning_pose_keys: ClassVar[dict[str, str]] = {"model.backbone": "variant",
                                                      "training.patch_mask": "masking"}
    variant: str = "small"
    masking: dict[str, float] = {}
    width: int = 8


def test_lightning_pose_keys_reach_the_component_that_declares_them(components):
    from fake_plugins import TinyConvBackbone

    class VariantBackbone(TinyConvBackbone):
        name = "variant_conv"
        Params = VariantParams

    components.backbones._add(VariantBackbone, None, "tiny-backbones", "2.0")
    cfg = parse_config({
        "model": {"model_type": "variant_conv", "backbone": "large", "head": "heatmap_cnn"},
        "training": {"imgaug": "none", "imgaug_3d": False, "patch_mask": {"final_ratio": 0.5}},
    })
    assert cfg.lightning_pose == {"model.backbone": "large", "model.head": "heatmap_cnn",
                                  "training.patch_mask": {"final_ratio": 0.5}}
    with pytest.warns(UserWarning, match="model.head: a Lightning Pose key that no component"):
        plan = plan_run(cfg, components, CALIBRATED)
    assert plan.backbone.params.variant == "large"
    assert plan.backbone.params.masking == {"final_ratio": 0.5}
    assert isinstance(build_backbone(plan, CALIBRATED), VariantBackbone)
    cfg.lightning_pose["training.patch_mask"] = {"final_ratio": "half"}
    with pytest.raises(ConfigError, match=r"^training.patch_mask.final_ratio: Input should be"):
        plan_run(cfg, components, CALIBRATED)
    cfg.lightning_pose.pop("training.patch_mask")
    cfg.model.backbone_params = {"variant": "small"}
    with pytest.raises(ConfigError, match="model.backbone_params.variant: 'small' contradicts "
                                          "model.backbone: 'large'"):
        plan_run(cfg, components, CALIBRATED)


def test_built_components_get_params_and_context(components):
    plan = plan_run(config(), components, CALIBRATED)
    backbone = build_backbone(plan, CALIBRATED)
    heatmaps = backbone(torch.zeros(1, 2, 3, 64, 64))
    assert heatmaps.shape == (1, 2, 3, 16, 16)
    assert backbone.context is CALIBRATED


def test_lightning_pose_keys_without_effect_are_named(components):
    cfg = config(dali={"base": {"train": {"sequence_length": 32}}},
                 callbacks={"anneal_weight": {"attr_name": "something_else"}})
    with pytest.warns(UserWarning, match=r"^dali, callbacks.anneal_weight.attr_name: Lightning "
                                         "Pose keys that mvcore accepts but does not use"):
        plan_run(cfg, components, CALIBRATED)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the neutral values say nothing
        plan_run(config(callbacks={"anneal_weight": {"attr_name":
                                                     "total_unsupervised_importance"}}),
                 components, CALIBRATED)
