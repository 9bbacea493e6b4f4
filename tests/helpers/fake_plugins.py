"""Test-only plugins: plain objects with hook implementations."""

from __future__ import annotations

from typing import Any

import torch

from mvcore import hookimpl
from mvcore.losses.base import Loss, LossParams


class BoneParams(LossParams):
    bones: list[tuple[int, int]] = [(0, 1)]


class BoneLengthLoss(Loss):
    """Variance of bone lengths over the batch (a third-party style loss)."""

    loss_name = "acme_bone_length"
    Params = BoneParams
    supervised = False

    def __init__(self, bones=((0, 1),), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.register_buffer("bones", torch.as_tensor(bones, dtype=torch.long))

    def forward(self, *, keypoints_pred: torch.Tensor, stage=None, **kwargs: Any):
        points = keypoints_pred.reshape(keypoints_pred.shape[0], -1, 2)
        lengths = (points[:, self.bones[:, 0]] - points[:, self.bones[:, 1]]).norm(dim=-1)
        scalar = self.reduce_loss(lengths.var(dim=0))
        return self.weight * scalar, self.log_loss(scalar, stage)


class NeedsMagicLoss(Loss):
    loss_name = "needs_magic"

    def forward(self, *, magic_input, stage=None, **kwargs):  # pragma: no cover - never run
        raise AssertionError


class AcmePlugin:
    @hookimpl
    def mvcore_register_losses(self, registry):
        registry.add(BoneLengthLoss)


class LazyPlugin:
    @hookimpl
    def mvcore_register_losses(self, registry):
        registry.add(f"{__name__}:BoneLengthLoss", name="lazy_bone")


class CopycatPlugin:
    @hookimpl
    def mvcore_register_losses(self, registry):
        registry.add(BoneLengthLoss)  # same name as AcmePlugin


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


class TinyBackbone:
    """Placeholder so the name exists before mvcore.models is imported (see below)."""


def _make_tiny_backbone():
    from torch import nn

    from mvcore.models.base import Backbone

    class TinyConvBackbone(Backbone):
        """A few convolutions: images (B, V, 3, H, W) -> heatmaps (B, V, K, H/4, W/4)."""

        name = "tiny_conv"

        def __init__(self, config, params, num_views, num_keypoints):
            super().__init__(config, params, num_views, num_keypoints)
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(8, num_keypoints, 3, stride=2, padding=1),
            )

        def forward(self, images):
            b, v = images.shape[:2]
            maps = self.features(images.flatten(0, 1))
            h, w = maps.shape[-2:]
            maps = torch.softmax(maps.flatten(-2), -1).reshape(b, v, self.num_keypoints, h, w)
            return maps

        def param_groups(self):
            return {"backbone": [], "head": list(self.parameters())}

    return TinyConvBackbone


TinyConvBackbone = _make_tiny_backbone()


class TinyBackbonePlugin:
    @hookimpl
    def mvcore_register_backbones(self, registry):
        registry.add(TinyConvBackbone)
