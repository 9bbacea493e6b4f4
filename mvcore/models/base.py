"""The ``Backbone`` base class: a network from all views' images to per-view heatmaps.

A backbone is registered under a ``model.model_type`` name (for example
``heatmap_multiview_transformer``). Construction is ``Backbone(params, context)``: ``params``
the validated ``Params`` model (``model.backbone_params``, plus the Lightning Pose keys the
class maps in, such as ``model.backbone``), ``context`` a ``mvcore.Context`` (views,
keypoints, input and heatmap sizes, seed). The core wraps it in the Lightning module, reads
keypoints out of its heatmaps, and feeds the losses.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from mvcore.component import Component, ComponentParams
from mvcore.context import Context

__all__ = ["Backbone", "BackboneParams"]


class BackboneParams(ComponentParams):
    """Parameters of a backbone (``model.backbone_params``)."""


class Backbone(Component, nn.Module):
    """Base class of backbones.

    ``forward(images (B, V, 3, H, W)) -> heatmaps (B, V, K, h, w)`` with
    ``(h, w) = context.heatmap_size``; every heatmap is a spatial softmax (sums to 1).
    Images are ImageNet-normalised.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[BackboneParams]] = BackboneParams

    def __init__(self, params: BackboneParams, context: Context) -> None:
        super().__init__()
        self._take(params, context)
        self.num_views = context.num_views
        self.num_keypoints = context.num_keypoints

    @classmethod
    def architecture_only(cls, params: BackboneParams) -> BackboneParams:
        """Params that build the same network without fetching or loading pretrained weights:
        prediction loads every weight from the trained model's checkpoint (and may run
        offline). Override when your params name pretrained weights; the default returns
        ``params``."""
        return params

    @classmethod
    def from_lightning_pose(
        cls, params: BackboneParams, state: dict[str, torch.Tensor], context: Context
    ) -> tuple[BackboneParams, dict[str, torch.Tensor]]:
        """Convert a network trained by Lightning Pose (``mvcore import-lightning-pose``).

        ``params``: this backbone's params as read from the Lightning Pose config;
        ``state``: the network tensors of its checkpoint (the LightningModule's
        ``state_dict``, names as Lightning Pose saved them, loss buffers removed).
        Returns the params that build the same network without pretrained weights (the
        architecture read from the tensors where the config does not fix it) and the state
        dict of that network under this class's own names (``self.state_dict()``). Raise
        ``ValueError`` naming the first tensor that does not fit. The default: this backbone
        cannot import Lightning Pose models (``NotImplementedError``)."""
        raise NotImplementedError(
            f"the {cls.name!r} backbone cannot import Lightning Pose checkpoints")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups; ``backbone`` (frozen until unfreezing) first, then others."""
        return {"backbone": [], "head": list(self.parameters())}

    def set_progress(self, epoch: int, global_step: int, steps_per_epoch: int) -> dict[str, float]:
        """Called by the trainer before each training batch; returns values to log each step
        (e.g. ``{"patch_mask_ratio": 0.2}``). Curricula (patch masking) live here."""
        return {}
