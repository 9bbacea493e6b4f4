"""Supervised heatmap losses: compare predicted and target heatmaps of labelled keypoints."""

from __future__ import annotations

from typing import Any

import torch

from mvcore.losses.base import LogList, Loss, LossParams, Stage


class HeatmapLossParams(LossParams):
    log_weight: float | None = 0.0


class HeatmapLoss(Loss):
    """Shared pipeline: drop keypoints without a label (all-zero target map), compare maps,
    average over the remaining keypoints. Never annealed."""

    Params = HeatmapLossParams
    annealed = False

    def __init__(self, log_weight: float = 0.0, **kwargs: Any) -> None:
        kwargs.pop("epsilon", None)  # heatmap losses are not epsilon-insensitive
        super().__init__(log_weight=log_weight, epsilon=0.0, **kwargs)

    def remove_nans(
        self, targets: torch.Tensor, predictions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N, h, w)`` -> ``(N_valid, h, w)``: keep maps whose target is not all zero
        (uniform targets of unlabelled-but-visible keypoints are kept) and not NaN."""
        h, w = targets.shape[-2:]
        flat_targets = targets.reshape(-1, h * w)
        valid = torch.isfinite(flat_targets).all(dim=1) & (flat_targets.abs().sum(dim=1) > 0)
        return targets.reshape(-1, h, w)[valid], predictions.reshape(-1, h, w)[valid]

    def __call__(
        self,
        heatmaps_targ: torch.Tensor,
        heatmaps_pred: torch.Tensor,
        stage: Stage | None = None,
        **kwargs: Any,
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
