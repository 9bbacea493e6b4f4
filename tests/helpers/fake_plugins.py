"""Test-only plugins: plain objects with hook implementations, built on the public surface."""

from __future__ import annotations

import torch
from torch import nn

from mvcore import Backbone, Context, Loss, LossParams, ParamError, hookimpl


class BoneParams(LossParams):
    bones: list[tuple[int, int]] = [(0, 1)]


class BoneLengthLoss(Loss):
    """Variance of bone lengths over the batch (a third-party style loss)."""

    loss_name = "acme_bone_length"
    Params = BoneParams
    supervised = False

    @classmethod
    def validate_context(cls, params: BoneParams, context: Context) -> None:
        for bone in params.bones:
            if not all(0 <= k < context.num_keypoints * context.num_views for k in bone):
                raise ParamError("bones", f"{list(bone)} names a keypoint outside the "
                                          f"{context.num_views * context.num_keypoints}")

    def __init__(self, params: BoneParams, context: Context) -> None:
        super().__init__(params, context)
        self.register_buffer("bones", torch.as_tensor(params.bones, dtype=torch.long))

    def forward(self, *, keypoints_pred: torch.Tensor, stage=None):
        points = keypoints_pred.reshape(keypoints_pred.shape[0], -1, 2)
        lengths = (points[:, self.bones[:, 0]] - points[:, self.bones[:, 1]]).norm(dim=-1)
        scalar = self.reduce_loss(lengths.var(dim=0))
        return self.weight * scalar, self.log_loss(scalar, stage)


class SquaredErrorLoss(Loss):
    """A stand-in supervised heatmap loss (never annealed), keyword-only inputs."""

    loss_name = "heatmap_mse"
    annealed = False

    def forward(self, *, heatmaps_targ, heatmaps_pred, stage=None):
        scalar = self.reduce_loss((heatmaps_targ - heatmaps_pred) ** 2)
        return self.weight * scalar, self.log_loss(scalar, stage)


class NeedsMagicLoss(Loss):
    loss_name = "needs_magic"

    def forward(self, *, magic_input, stage=None):  # pragma: no cover - never run
        raise AssertionError


class AcmePlugin:
    @hookimpl
    def mvcore_register_losses(self, registry):
        registry.add(BoneLengthLoss)


class LazyPlugin:
    @hookimpl
    def mvcore_register_losses(self, registry):
        registry.add(f"{__name__}:BoneLengthLoss", name="lazy_bone")


class LazyTypoPlugin:
    @hookimpl
    def mvcore_register_losses(self, registry):
        registry.add("fake_plugins_typo:BoneLengthLoss", name="typo_bone")


class CopycatPlugin:
    @hookimpl
    def mvcore_register_losses(self, registry):
        registry.add(BoneLengthLoss)  # same name as AcmePlugin


class RaisingPlugin:
    """Registers one name, then its hook raises."""

    @hookimpl
    def mvcore_register_losses(self, registry):
        registry.add(f"{__name__}:BoneLengthLoss", name="raising_bone")
        raise RuntimeError("needs a licence server")


class TypoPlugin:
    @hookimpl
    def mvcore_register_loses(self, registry):  # typo: no such hook
        registry.add(BoneLengthLoss)


class WrongArgPlugin:
    @hookimpl
    def mvcore_register_losses(self, registry, surprise):  # argument the spec lacks
        pass


class NotALossPlugin:
    @hookimpl
    def mvcore_register_losses(self, registry):
        registry.add(dict, name="not_a_loss")


class TinyConvBackbone(Backbone):
    """A few convolutions: images (B, V, 3, H, W) -> heatmaps (B, V, K, H/4, W/4)."""

    name = "tiny_conv"

    def __init__(self, params, context):
        super().__init__(params, context)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, self.num_keypoints, 3, stride=2, padding=1),
        )

    def forward(self, images):
        b, v = images.shape[:2]
        maps = self.features(images.flatten(0, 1))
        h, w = maps.shape[-2:]
        return torch.softmax(maps.flatten(-2), -1).reshape(b, v, self.num_keypoints, h, w)


class TinyBackbonePlugin:
    @hookimpl
    def mvcore_register_backbones(self, registry):
        registry.add(TinyConvBackbone)
