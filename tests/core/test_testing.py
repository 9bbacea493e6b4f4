"""mvcore.testing: the contract checks catch the mistakes they promise to catch."""

import numpy as np
import pytest
import torch
from fake_plugins import BoneLengthLoss, TinyConvBackbone
from torch import nn

from mvcore import Augmenter, AugmenterParams, Loss, LossParams
from mvcore.contracts import LOSS_INPUTS, produced_inputs
from mvcore.testing import (
    check_augmenter,
    check_backbone,
    check_loss,
    toy_context,
    toy_loss_inputs,
)


def test_toy_inputs_are_every_input_a_model_produces():
    calibrated = toy_loss_inputs(toy_context())
    assert set(calibrated) == produced_inputs(True) == set(LOSS_INPUTS)
    assert set(toy_loss_inputs(toy_context(calibrated=False))) == produced_inputs(False)
    inputs = toy_loss_inputs(toy_context(), uncalibrated_frames=(1,))
    assert inputs["has_calibration"].tolist() == [True, False, True, True]
    assert torch.isnan(inputs["keypoints_pred_3d"][1]).all()
    assert torch.equal(inputs["cameras"].intrinsics[1], torch.eye(3).expand(2, 3, 3))
    assert torch.isfinite(inputs["keypoints_pred_3d"][0]).all()


class UsesCalibration(Loss):
    """A 3D loss that reads has_calibration, as a careful loss should."""

    loss_name = "uses_calibration"

    def forward(self, *, keypoints_pred_3d, has_calibration, stage=None):
        keep = has_calibration[:, None, None] & torch.isfinite(keypoints_pred_3d).all(-1)
        values = torch.where(keep[..., None], keypoints_pred_3d, 0.0).pow(2).sum(-1)
        scalar = self.reduce_loss(values[keep])
        return self.weight * scalar, self.log_loss(scalar, stage)


def test_a_loss_that_takes_has_calibration_passes():
    check_loss(UsesCalibration)


class IgnoresParams(LossParams):
    scale: float = 2.0


class IgnoresAField(BoneLengthLoss):
    loss_name = "ignores_a_field"

    class Params(IgnoresParams):
        bones: list[tuple[int, int]] = [(0, 1)]


def test_a_params_field_the_loss_never_reads_is_caught():
    with pytest.raises(AssertionError, match=r"never reads Params field\(s\) \['scale'\]"):
        check_loss(IgnoresAField)


class NaNWithMissingLabels(Loss):
    loss_name = "nan_with_missing_labels"

    def forward(self, *, keypoints_targ, keypoints_pred, stage=None):
        scalar = self.reduce_loss((keypoints_pred - keypoints_targ).abs())
        return self.weight * scalar, self.log_loss(scalar, stage)


def test_a_loss_that_is_nan_with_missing_labels_is_caught():
    with pytest.raises(AssertionError, match="is not finite with NaN labels"):
        check_loss(NaNWithMissingLabels)


class NaNGradient(Loss):
    loss_name = "nan_gradient"

    def forward(self, *, keypoints_pred, stage=None):
        distance = ((keypoints_pred - keypoints_pred.detach()) ** 2).sqrt().sum()  # sqrt'(0)
        return self.weight * distance, self.log_loss(distance.detach(), stage)


def test_a_loss_with_nan_gradients_is_caught():
    with pytest.raises(AssertionError, match="gradients contain NaN or inf"):
        check_loss(NaNGradient)


class UsesPlaceholderCameras(Loss):
    loss_name = "uses_placeholder_cameras"

    def forward(self, *, cameras, keypoints_pred, stage=None):
        scalar = keypoints_pred.mean() * cameras.extrinsics[..., 3].abs().mean()
        return self.weight * scalar, self.log_loss(scalar, stage)


def test_a_loss_that_uses_the_cameras_of_uncalibrated_frames_is_caught():
    with pytest.raises(AssertionError, match="uses the cameras of frames without calibration"):
        check_loss(UsesPlaceholderCameras)


class UnsupervisedWithLabels(NaNWithMissingLabels):
    loss_name = "unsupervised_with_labels"
    supervised = False


class MisspeltInput(Loss):
    loss_name = "misspelt_input"

    def forward(self, *, keypoints_pred, confidence=None, stage=None):  # pragma: no cover
        raise AssertionError


def test_inputs_that_cannot_be_fed_are_caught():
    with pytest.raises(AssertionError, match="is unsupervised but requires keypoints_targ"):
        check_loss(UnsupervisedWithLabels)
    with pytest.raises(AssertionError, match="'confidence', which is not a loss input .*did "
                                             "you mean 'confidences'"):
        check_loss(MisspeltInput)


class OpenParams(LossParams):
    model_config = {"extra": "allow"}


class AcceptsAnything(BoneLengthLoss):
    loss_name = "accepts_anything"
    Params = OpenParams


def test_params_that_accept_unknown_keys_are_caught():
    with pytest.raises(AssertionError, match="must forbid unknown keys"):
        check_loss(AcceptsAnything)


class LabelsOnly(Augmenter):
    """Moves the labels but not the images: the mistake alignment catches."""

    name = "labels_only"

    def __call__(self, sample, rng):
        return {**sample, "keypoints": sample["keypoints"] + float(rng.uniform(2, 4))}


class GlobalRandom(Augmenter):
    name = "global_random"

    def __call__(self, sample, rng):
        factor = 1.0 + 0.1 * float(np.random.rand())
        return {**sample, "images": sample["images"] * factor}


class Brightness(Augmenter):
    name = "brightness"

    class Params(AugmenterParams):
        gain: float = 0.1

    def __call__(self, sample, rng):
        factor = 1.0 + self.params.gain * float(rng.uniform(-1, 1))
        return {**sample, "images": (sample["images"] * factor).clamp(0, 1),
                "aug_stats": {"brightness_applied": 1}}


def test_the_augmenter_check_catches_misalignment_and_global_randomness():
    check_augmenter(Brightness)
    with pytest.raises(AssertionError, match="images and labels must move together"):
        check_augmenter(LabelsOnly)
    with pytest.raises(AssertionError, match="draw all randomness from rng"):
        check_augmenter(GlobalRandom)


class Unused(TinyConvBackbone):
    name = "unused_parameter"

    def __init__(self, params, context):
        super().__init__(params, context)
        self.spare = nn.Linear(2, 2)  # trained by nothing


def test_the_backbone_check_catches_parameters_without_gradient():
    check_backbone(TinyConvBackbone)
    with pytest.raises(AssertionError, match=r"no gradient reaches parameters \['spare.weight'"):
        check_backbone(Unused)
