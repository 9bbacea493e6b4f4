"""Supervised heatmap losses: compare predicted and target heatmaps of labelled keypoints.

All three share ``HeatmapLoss``: maps whose target is NaN or all zero (no label) are dropped,
one value per remaining keypoint map is averaged, and the loss is never annealed.
"""

from __future__ import annotations

import torch
from kornia.losses import js_div_loss_2d, kl_div_loss_2d
from pydantic import field_validator

from mvcore import LogList, Loss, LossParams, Stage


class HeatmapLossParams(LossParams):
    log_weight: float | None = 0.0
    #: a heatmap loss is not epsilon-insensitive: only null or 0 are accepted
    epsilon: float | None = None

    @field_validator("epsilon")
    @classmethod
    def _no_epsilon(cls, value: float | None) -> float | None:
        if value not in (None, 0.0):
            raise ValueError("heatmap losses have no epsilon (use null or 0)")
        return value


class HeatmapLoss(Loss):
    """Shared pipeline: drop keypoints without a label (all-zero target map), compare maps,
    average over the remaining keypoints. Never annealed."""

    Params = HeatmapLossParams
    annealed = False

    def remove_nans(
        self, targets: torch.Tensor, predictions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N, h, w)`` -> ``(N_valid, h, w)``: keep maps whose target is not all zero
        (uniform targets of unlabelled-but-visible keypoints are kept) and not NaN."""
        h, w = targets.shape[-2:]
        flat_targets = targets.reshape(-1, h * w)
        valid = torch.isfinite(flat_targets).all(dim=1) & (flat_targets.abs().sum(dim=1) > 0)
        return targets.reshape(-1, h, w)[valid], predictions.reshape(-1, h, w)[valid]

    def forward(
        self, *, heatmaps_targ: torch.Tensor, heatmaps_pred: torch.Tensor,
        stage: Stage | None = None,
    ) -> tuple[torch.Tensor, LogList]:
        targets, predictions = self.remove_nans(heatmaps_targ, heatmaps_pred)
        elementwise = self.compute_loss(targets, predictions)
        scalar = self.reduce_loss(elementwise, method="mean")
        return self.weight * scalar, self.log_loss(scalar, stage)


class HeatmapMSELoss(HeatmapLoss):
    """Squared error per pixel times ``h * w`` (so the mean over pixels becomes the per-map
    sum of squared errors, averaged over valid keypoints)."""

    loss_name = "heatmap_mse"

    def compute_loss(self, targets: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        h, w = targets.shape[-2:]
        return (targets - predictions) ** 2 * (h * w)


#: added to both maps before the divergences so that a zero in the prediction where the target
#: has mass gives a large finite value instead of ``inf`` (as Lightning Pose)
_DIVERGENCE_FLOOR = 1e-10


class HeatmapKLLoss(HeatmapLoss):
    """``KL(target || pred) = sum_pix t (log t - log p)`` per valid keypoint map (kornia)."""

    loss_name = "heatmap_kl"

    def compute_loss(self, targets: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        """``(N_valid, h, w)`` maps -> ``(N_valid,)`` divergences in nats."""
        return kl_div_loss_2d(
            predictions.unsqueeze(0) + _DIVERGENCE_FLOOR,
            targets.unsqueeze(0) + _DIVERGENCE_FLOOR,
            reduction="none",
        )[0]


class HeatmapJSLoss(HeatmapLoss):
    """Jensen-Shannon divergence ``KL(t || m) / 2 + KL(p || m) / 2``, ``m = (t + p) / 2``, per
    valid keypoint map (kornia); symmetric and bounded by ``ln 2``."""

    loss_name = "heatmap_js"

    def compute_loss(self, targets: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        """``(N_valid, h, w)`` maps -> ``(N_valid,)`` divergences in nats."""
        return js_div_loss_2d(
            predictions.unsqueeze(0) + _DIVERGENCE_FLOOR,
            targets.unsqueeze(0) + _DIVERGENCE_FLOOR,
            reduction="none",
        )[0]
