"""The Lightning module builds the loss inputs from a batch, with and without calibration."""

import math

import pytest
import torch
from fake_plugins import TinyBackbonePlugin

from mvcore import hookimpl
from mvcore.config.load import parse_config
from mvcore.errors import MissingLossInputError
from mvcore.losses.base import Loss
from mvcore.plugin.components import build_components
from mvcore.plugin.manager import get_plugin_manager
from mvcore.testing import toy_context
from mvcore.training.module import MultiviewPoseModule, apply_homography


class Heatmap(Loss):
    loss_name = "heatmap_mse"
    annealed = False

    def forward(self, *, heatmaps_targ, heatmaps_pred, stage=None, **kwargs):
        scalar = self.reduce_loss((heatmaps_targ - heatmaps_pred) ** 2)
        return self.weight * scalar, self.log_loss(scalar, stage)


class Pairwise3D(Loss):
    loss_name = "supervised_toy_pairs"

    def forward(self, *, keypoints_targ_3d, keypoints_pred_3d, stage=None, **kwargs):
        diff = (keypoints_pred_3d - keypoints_targ_3d[:, None]).norm(dim=-1)
        scalar = self.reduce_loss(diff[torch.isfinite(diff)])
        return self.weight * scalar, self.log_loss(scalar, stage)


class Losses:
    @hookimpl
    def mvcore_register_losses(self, registry):
        registry.add(Heatmap)
        registry.add(Pairwise3D)


@pytest.fixture
def components():
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(TinyBackbonePlugin(), name="tiny")
    manager.register(Losses(), name="toy-losses")
    return build_components(manager)


def _config(**losses):
    return parse_config({
        "data": {"image_resize_dims": {"height": 32, "width": 32}},
        "model": {"model_type": "tiny_conv"},
        "training": {"imgaug": "none", "imgaug_3d": False},
        "losses": losses,
    })


def _batch(b=2, v=2, k=3, size=32):
    g = torch.Generator().manual_seed(0)
    angles = torch.tensor([0.0, math.pi / 2])
    rot = torch.zeros(v, 3, 3)
    rot[:, 0, 0], rot[:, 0, 2] = torch.cos(angles), torch.sin(angles)
    rot[:, 1, 1] = 1
    rot[:, 2, 0], rot[:, 2, 2] = -torch.sin(angles), torch.cos(angles)
    extrinsics = torch.cat([rot, torch.tensor([[0.0], [0.0], [10.0]]).expand(v, 3, 1)], -1)
    intrinsics = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]).expand(v, 3, 3)
    return {
        "images": torch.randn(b, v, 3, size, size, generator=g),
        "keypoints": 8 + 16 * torch.rand(b, v, k, 2, generator=g),
        "heatmaps": torch.softmax(torch.randn(b, v, k, 64, generator=g), -1).reshape(
            b, v, k, 8, 8),
        "bbox": torch.tensor([0.0, 0.0, size, size]).expand(b, v, 4).clone(),
        "transforms": torch.eye(3).expand(b, v, 3, 3).clone(),
        "intrinsics": intrinsics.expand(b, v, 3, 3).clone(),
        "extrinsics": extrinsics.expand(b, v, 3, 4).clone(),
        "distortions": torch.zeros(b, v, 5),
        "has_calibration": torch.tensor([True, False]),
        "keypoints_3d": torch.randn(b, k, 3, generator=g),
    }


def test_loss_inputs_shapes_and_3d_only_for_calibrated_samples(components):
    context = toy_context(num_views=2, num_keypoints=3, image_size=32)
    config = _config(supervised_toy_pairs={"log_weight": 0.0})
    module = MultiviewPoseModule(config, components, context)
    inputs = module.loss_inputs(_batch())
    assert inputs["heatmaps_pred"].shape == (2, 6, 8, 8)
    assert inputs["keypoints_pred"].shape == (2, 12)
    assert inputs["confidences"].shape == (2, 6)
    pairs = inputs["keypoints_pred_3d"]
    assert pairs.shape == (2, 1, 3, 3)
    assert torch.isfinite(pairs[0]).all() and torch.isnan(pairs[1]).all()
    assert inputs["has_calibration"].tolist() == [True, False]
    assert inputs["intrinsics"].shape == (2, 2, 3, 3)
    total, _ = module.loss_supervised(stage="train", **inputs)
    total.backward()
    grads = [p.grad for p in module.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_augmentation_is_undone_for_keypoints_pred(components):
    context = toy_context(num_views=2, num_keypoints=3, image_size=32)
    module = MultiviewPoseModule(_config(), components, context)
    batch = _batch()
    shift = torch.eye(3).expand(2, 2, 3, 3).clone()
    shift[..., 0, 2] = 3.0  # augmentation moved everything 3 px to the right
    batch["transforms"] = shift
    inputs = module.loss_inputs(batch)
    augmented = inputs["keypoints_pred_augmented"].reshape(2, 2, 3, 2)
    original = inputs["keypoints_pred"].reshape(2, 2, 3, 2)
    assert torch.allclose(augmented[..., 0] - original[..., 0], torch.full((2, 2, 3), 3.0))
    assert torch.allclose(apply_homography(original, shift), augmented, atol=1e-5)


def test_uncalibrated_project_with_3d_loss_fails_before_training(components):
    context = toy_context(num_views=2, num_keypoints=3, image_size=32)
    context.has_calibration = False
    config = _config(supervised_toy_pairs={"log_weight": 0.0})
    with pytest.raises(MissingLossInputError, match="keypoints_pred_3d, keypoints_targ_3d"):
        MultiviewPoseModule(config, components, context)
