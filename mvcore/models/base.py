"""The ``Backbone`` base class: a network from all views' images to per-view heatmaps.

A backbone is registered under a ``model.model_type`` name (for example
``heatmap_multiview_transformer``) and chooses its variant from ``model.backbone``. The core
wraps it in the Lightning module, reads keypoints out of its heatmaps, and feeds losses.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn


class BackboneParams(BaseModel):
    """Extra parameters of a backbone (``model.backbone_params``)."""

    model_config = ConfigDict(extra="forbid")


class Backbone(nn.Module):
    """Base class of backbones.

    Constructor: ``Backbone(config, params, num_views, num_keypoints)`` where ``config`` is the
    whole ``MvConfig`` (image size, downsample factor, seeds, patch masking...) and ``params``
    the validated ``Params`` instance.

    ``forward(images (B, V, 3, H, W)) -> heatmaps (B, V, K, h, w)`` with ``h = H / 2**ds``;
    every heatmap is a spatial softmax (sums to 1).
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[BackboneParams]] = BackboneParams

    def __init__(
        self, config: Any, params: BackboneParams, num_views: int, num_keypoints: int
    ) -> None:
        super().__init__()
        self.config = config
        self.params = params
        self.num_views = num_views
        self.num_keypoints = num_keypoints

    @classmethod
    def validate_config(cls, config: Any) -> BackboneParams:
        """Check the config for this backbone (pass 2) and return the validated params.

        Raise ``mvcore.errors.ConfigError`` naming the key (e.g. ``model.backbone``)."""
        return cls.Params.model_validate(config.model.backbone_params)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups; ``backbone`` (frozen until unfreezing) first, then others."""
        return {"backbone": [], "head": list(self.parameters())}

    def set_progress(self, epoch: int, global_step: int, steps_per_epoch: int) -> dict[str, float]:
        """Called by the trainer before each training batch; returns values to log each step
        (e.g. ``{"patch_mask_ratio": 0.2}``). Curricula (patch masking) live here."""
        return {}
